"""Construction by name: every component is built from its registry entry and validated parameters.

``create(kind, name, **params)`` is the one way to build a component; the
``create_*`` functions are its typed shorthands. A name that is a path (a folder
for ``--data``, a ``.yaml`` file for ``--prompts``) is built by the entry that
declared it opens such paths (the ``opens`` extra).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crackseg.base import schema
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.plugins import KINDS, SINGULAR, Entry, registry
from crackseg.plugins.blame import blamed, plugin_error

_ALIASES = {
    "labeler": "labelers",
    "backbone": "backbones",
    "prompt": "prompts",
    "prompt_sets": "prompts",
    "loss": "losses",
    "dataset": "datasets",
    "trainer": "trainers",
    "logger": "loggers",
}


def kind_of(kind: str) -> str:
    """The registry kind for ``kind`` or one of its singular aliases."""
    k = _ALIASES.get(kind, kind)
    if k not in KINDS:
        raise CracksegError(f"unknown plugin kind {kind!r} (choose from {', '.join(KINDS)})")
    return k


def get_entry(kind: str, name: str) -> Entry:
    """The registry entry of ``name`` (unknown name → UnknownComponentError with suggestions)."""
    return registry(kind_of(kind)).get(name)


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Registered component names of ``kind`` matching the shell-style ``pattern``."""
    return registry(kind_of(kind)).names(pattern)


#: the 0.1 name of :func:`list_components` (it lists components, not plugins)
list_plugins = list_components


def build_params(entry: Entry, params: dict[str, Any], path: str | None = None) -> Any:
    """The entry's params dataclass built from ``params`` (checked keys and types), or None if it has none.

    A default that does not fit its own type hint is the plugin's mistake, not the user's:
    it is reported as a :class:`~crackseg.base.errors.PluginError` naming the plugin.
    """
    if entry.params is None:
        if params:
            where = f"config key {path!r}: " if path else ""
            raise ConfigError(f"{where}{SINGULAR[entry.kind]} {entry.name!r} takes no parameters "
                              f"(got: {', '.join(sorted(params))})")
        return None
    obj = schema.build(entry.params, params, path or entry.name)
    hints = typing.get_type_hints(entry.params)
    for f in dataclasses.fields(obj):
        if f.name not in params:
            default = getattr(obj, f.name)
            try:
                schema.coerce(hints[f.name], schema.to_dict(default), f.name)
            except ConfigError:
                raise plugin_error(entry.kind, entry.name,
                                   f"the default of parameter {f.name!r} is {default!r}, which is not "
                                   f"{schema.describe_type(hints[f.name])}; set {f.name} explicitly or fix "
                                   f"the plugin") from None
    return obj


def validate_params(entry: Entry, params: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    """Check ``params`` against the entry's schema; return every parameter with defaults, as plain data."""
    obj = build_params(entry, params, path)
    if obj is None:
        return {}
    return {f.name: schema.to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def create(kind: str, name: str, **params: Any) -> Any:
    """Build a registered component: ``create("backbones", "unet", encoder="resnet18")``.

    The factory receives every parameter with its default filled in; a parameter typed
    as a dataclass (a nested section) arrives as that dataclass.
    """
    return instantiate(get_entry(kind, name), params)


def create_from_section(kind: str, section: Mapping[str, Any], own: tuple[str, ...] = ("name",),
                        path: str | None = None) -> Any:
    """Build the component a config section describes: ``{"name": ..., <its params>}``.

    Keys in ``own`` are the section's own settings, not the component's parameters (a ``data``
    section's splits and limits); ``path`` names the section in messages (``"data"``). Every
    section of a config is built through here, so a failing factory always names its plugin.
    """
    name = str(section["name"])
    params = {k: v for k, v in section.items() if k not in own}
    return instantiate(get_entry(kind, name), params, path)


def instantiate(entry: Entry, params: dict[str, Any], path: str | None = None) -> Any:
    """Call the entry's factory with ``params`` validated (``path`` names them in messages).

    An unexpected exception of the factory is one :class:`~crackseg.base.errors.PluginError`
    line naming the plugin.
    """
    obj = build_params(entry, params, path)
    kwargs = {} if obj is None else {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    with blamed(entry.kind, entry.name, "building it"):
        return entry.factory(**kwargs)


def path_params(entry: Entry) -> dict[str, str]:
    """Parameters the entry declares as paths (``field(metadata={"path": "folder" | "file"})``) → that kind."""
    if entry.params is None:
        return {}
    return {f.name: str(f.metadata["path"]) for f in dataclasses.fields(entry.params) if f.metadata.get("path")}


def default_name(kind: str) -> str:
    """The component a run uses when it names none of ``kind`` (the first ``default=True`` entry)."""
    k = kind_of(kind)
    reg = registry(k)
    names = reg.defaults()
    if not names:
        what = SINGULAR[k]
        missing = [e for e in reg.unavailable() if e.extras.get("default")]
        if missing:
            raise ConfigError(f"no {what} given, and the default {what} {missing[0].name!r} is not available: "
                              f"{missing[0].unavailable}")
        raise ConfigError(f"no {what} given and no installed plugin offers a default {what}; "
                          f"name one (crackseg list {k})")
    return names[0]


def path_section(kind: str, value: str) -> dict[str, Any] | None:
    """``{"name": entry, param: value}`` when ``value`` is a path that an entry of ``kind`` opens, else None.

    A value written like a path (with a ``/``, or starting with ``.`` or ``~``) that does not
    exist goes to a folder reader, which then names the missing folder.
    """
    k = kind_of(kind)
    if value in registry(k):
        return None
    p = Path(value).expanduser()
    entry = registry(k).opener(p, missing_folder="/" in value or value.startswith((".", "~")))
    if entry is None:
        return None
    return {"name": entry.name, entry.extras["opens"]["param"]: str(p.resolve()) if p.exists() else value}
