"""One flat registry per plugin kind, filled by the ``register_*`` hooks.

Each :class:`Entry` knows its name, factory, parameter schema (a dataclass),
description, the plugin that registered it and that kind's extras. Names are
looked up exactly; an unknown name answers with the closest match and the
available names. An entry whose plugin lacks an installed package stays listed
as *unavailable* so that asking for it says what to install.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crackseg.base.console import quote
from crackseg.base.errors import CracksegError, UnknownComponentError

KINDS: tuple[str, ...] = ("labelers", "backbones", "prompts", "losses", "datasets", "trainers", "loggers")

#: singular noun used in messages, per kind
SINGULAR: dict[str, str] = {
    "labelers": "labeler",
    "backbones": "backbone",
    "prompts": "prompt set",
    "losses": "loss",
    "datasets": "dataset",
    "trainers": "trainer",
    "loggers": "logger",
}

#: the ``register`` extras each kind understands (documented in hookspecs.py and CONTRIBUTING.md)
EXTRAS: dict[str, tuple[str, ...]] = {
    "labelers": ("demo", "default"),
    "backbones": ("train", "loss", "prompt_param", "input_size_param", "default"),
    "prompts": ("opens",),
    "losses": ("default",),
    "datasets": ("opens", "train", "demo", "default"),
    "trainers": ("train", "default"),
    "loggers": ("default",),
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
    #: why the entry cannot be built here (a missing package), empty when it can
    unavailable: str = ""
    #: the distribution (and its version) that installed the plugin; empty for one registered in-process
    distribution: str = ""
    version: str = ""
    #: registered with ``override=True``: it may replace an entry of the same name from an earlier plugin
    override: bool = False

    @property
    def provenance(self) -> dict[str, str]:
        """Which plugin and distribution provide this entry (recorded in checkpoints and metrics)."""
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version}

    def describe_plugin(self) -> str:
        """``plugin 'smp' (distribution crackseg 0.1.0)``."""
        return describe_plugin(self.plugin, self.distribution, self.version)

    def param_defaults(self) -> dict[str, Any]:
        """The default value of every declared parameter."""
        if self.params is None:
            return {}
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.params):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    def opens(self, path: Path, missing_folder: bool = False) -> bool:
        """Whether this entry reads ``path`` (its ``opens`` extra: folders, or files by suffix).

        ``opens={"param": "root", "when": fn}``: only the folders for which ``fn(path)`` is true (a layout
        test); entries with such a test are asked before the ones that read any folder.

        ``missing_folder``: a path that does not exist counts as a folder (so that reading
        it reports the missing folder instead of an unknown name).
        """
        spec = self.extras.get("opens")
        if not spec:
            return False
        suffixes = tuple(s.lower() for s in spec.get("suffixes") or ())
        if suffixes:
            return path.suffix.lower() in suffixes
        if not path.is_dir():
            return missing_folder and not path.exists() and not spec.get("when")
        when = spec.get("when")
        if when is None:
            return True
        try:
            return bool(when(path))
        except Exception:  # noqa: BLE001 - a plugin's layout test that fails reads nothing
            return False


class Registry:
    """Name → :class:`Entry` for one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}")
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    # -- registration -----------------------------------------------------
    def add(self, entry: Entry) -> Entry | None:
        """Add ``entry``; returns the entry it replaced (``override=True``), else None.

        A name that is taken is an error naming both plugins, unless the new entry
        overrides it.
        """
        old = self._entries.get(entry.name)
        if old is not None and not entry.override:
            raise CracksegError(
                f"{SINGULAR[self.kind]} {entry.name!r} is already registered by {old.describe_plugin()}; "
                f"the one of {entry.describe_plugin()} is ignored (rename it, or register it with "
                f"override=True to replace the other)"
            )
        self._entries[entry.name] = entry
        return old

    def entry(self, name: str) -> Entry | None:
        """The entry of ``name``, available or not (None when nothing has that name)."""
        return self._entries.get(name)

    # -- lookup -------------------------------------------------------------
    def get(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownComponentError(unknown_name_message(SINGULAR[self.kind], name, self.names()))
        if entry.unavailable:
            raise CracksegError(f"{SINGULAR[self.kind]} {name!r} is not available: {entry.unavailable}")
        return entry

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names of the available entries matching the shell-style ``pattern``."""
        return sorted(n for n, e in self._entries.items() if not e.unavailable and fnmatch.fnmatchcase(n, pattern))

    def unavailable(self) -> list[Entry]:
        """Entries whose plugin lacks a package, in registration order."""
        return [e for e in self._entries.values() if e.unavailable]

    def defaults(self) -> list[str]:
        """Names of available entries registered with ``default=True``, in registration order."""
        return [n for n, e in self._entries.items() if e.extras.get("default") and not e.unavailable]

    def opener(self, path: Path, missing_folder: bool = False) -> Entry | None:
        """The first available entry whose ``opens`` extra reads ``path``: entries with a layout test
        (``when``) first, each group in registration order."""
        entries = [e for e in self._entries.values() if not e.unavailable]
        ordered = sorted(entries, key=lambda e: not (e.extras.get("opens") or {}).get("when"))
        for e in ordered:
            if e.opens(path, missing_folder):
                return e
        return None

    def __contains__(self, name: object) -> bool:
        e = self._entries.get(name) if isinstance(name, str) else None
        return e is not None and not e.unavailable

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.names())


def describe_plugin(name: str, dist: str = "", version: str = "") -> str:
    """``plugin 'x' (distribution crackseg-x 1.0)``: how messages name a plugin."""
    return f"plugin {name!r}" + (f" (distribution {dist} {version})" if dist else "")


def unknown_name_message(what: str, name: str, available: list[str]) -> str:
    """``unknown backbone 'unett'; did you mean 'unet'? (available: ...)``."""
    msg = f"unknown {what} {quote(name)}"
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" (available: {', '.join(available) if available else 'none'})"
    return msg
