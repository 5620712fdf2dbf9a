"""One flat registry per plugin kind (labelers, backbones, prompt sets, losses, datasets).

Each :class:`Entry` knows its name, factory, parameter schema (a dataclass),
description and the plugin that registered it. Names are looked up exactly;
an unknown name answers with the closest match and the available names.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import CracksegError, UnknownPluginError

KINDS: tuple[str, ...] = ("labelers", "backbones", "prompts", "losses", "datasets")

#: singular noun used in messages, per kind
SINGULAR: dict[str, str] = {
    "labelers": "labeler",
    "backbones": "backbone",
    "prompts": "prompt set",
    "losses": "loss",
    "datasets": "dataset",
}


@dataclass(frozen=True)
class Entry:
    """A registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type | None = None
    description: str = ""
    plugin: str = "?"
    #: kind-specific extras, e.g. ``train`` defaults for a backbone
    extras: dict[str, Any] = field(default_factory=dict)

    def param_defaults(self) -> dict[str, Any]:
        """The default value of every declared parameter."""
        if self.params is None:
            return {}
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.params):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return out


class Registry:
    """Name → :class:`Entry` for one kind."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}")
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    # -- registration -----------------------------------------------------
    def add(self, entry: Entry) -> None:
        old = self._entries.get(entry.name)
        if old is not None:
            raise CracksegError(
                f"{SINGULAR[self.kind]} {entry.name!r} is registered twice: by plugin "
                f"{old.plugin!r} and by plugin {entry.plugin!r}; uninstall one or set "
                f"CRACKSEG_LOAD_PLUGINS"
            )
        self._entries[entry.name] = entry

    # -- lookup -------------------------------------------------------------
    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownPluginError(unknown_name_message(SINGULAR[self.kind], name, self.names())) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


def unknown_name_message(what: str, name: str, available: list[str]) -> str:
    """``unknown backbone 'unett'; did you mean 'unet'? (available: ...)``."""
    msg = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" (available: {', '.join(available) if available else 'none'})"
    return msg
