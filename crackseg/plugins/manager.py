"""The plugin manager: entry-point loading, broken-plugin isolation, and the registries it fills.

Plugins (the built-in ones included) are found through the entry-point group
``crackseg``; the built-in distribution's entry points load first, then every other
distribution's in name order, so what a built-in name means never depends on what
else is installed. Each plugin is imported on its own: one that fails to import,
implements a misspelled hook or whose hook raises is reported in one line on stderr,
naming the distribution and the error, and everything else keeps working. A hook
call registers all of its entries or none.

A plugin may declare the packages it needs (``CRACKSEG_REQUIRES = ("torch", ...)``,
import names) and how to get them (``CRACKSEG_INSTALL_HINT``). When one is missing
its components stay registered but *unavailable*: ``crackseg plugins`` says so, and
asking for one of them names the package to install.

``CRACKSEG_LOAD_PLUGINS=a,b`` loads only the named plugins (entry-point or
distribution names); an empty value loads none.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from ..errors import CracksegError
from . import hookspecs
from .registry import EXTRAS, KINDS, SINGULAR, Entry, Registry

ENTRY_POINT_GROUP = "crackseg"
#: the distribution whose entry points are the built-in plugins
BUILTIN_DISTRIBUTION = "crackseg"

#: hook name → registry kind
HOOK_KINDS: dict[str, str] = {
    "register_labelers": "labelers",
    "register_backbones": "backbones",
    "register_prompt_sets": "prompts",
    "register_losses": "losses",
    "register_datasets": "datasets",
}


@dataclass
class PluginInfo:
    """What ``crackseg plugins`` shows about one plugin."""

    name: str
    distribution: str = ""
    version: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    #: why the plugin (or one of its hooks) failed; empty when it loaded cleanly
    error: str = ""
    #: packages the plugin needs that are not installed, with the install hint
    missing: str = ""


class PluginManager:
    """pluggy manager plus the registries filled by the ``register_*`` hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("crackseg")
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {k: Registry(k) for k in KINDS}
        self.info: dict[str, PluginInfo] = {}
        self.problems: list[str] = []
        self._filled = False

    # -- loading --------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import and add every allowed entry point of the ``crackseg`` group (built-ins first)."""
        allowed = _allowed_plugins()
        eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

        def order(ep: metadata.EntryPoint) -> tuple[int, str, str]:
            dist = ep.dist.name if ep.dist is not None else ""
            return (0 if dist == BUILTIN_DISTRIBUTION else 1, dist, ep.name)

        for ep in sorted(eps, key=order):
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is isolated
                self._problem(ep.name, dist, version, f"failed to import: {one_line(exc)}")
                continue
            self.add_plugin(module, ep.name, distribution=dist, version=version)

    def add_plugin(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> bool:
        """Register a plugin object/module; reject it if a hook name is misspelled."""
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:
            self._problem(name, distribution, version, f"rejected: {one_line(exc)}")
            return False
        unknown = [h for h in _hookimpl_names(plugin) if not _is_spec(self.pm, h)]
        if unknown:
            self.pm.unregister(name=name)
            known = ", ".join([*HOOK_KINDS, "register_commands"])
            self._problem(name, distribution, version,
                          f"rejected: unknown hook {unknown[0]!r} (known hooks: {known})")
            return False
        self.info[name] = PluginInfo(name=name, distribution=distribution, version=version,
                                     missing=_missing_requirements(plugin))
        self._filled = False
        return True

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin; the registries are rebuilt without it on the next :meth:`fill_registries`."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.info.pop(name, None)
        self._filled = False

    def _problem(self, name: str, dist: str, version: str, msg: str) -> None:
        line = f"crackseg: warning: {describe(name, dist, version)} {msg}"
        self.problems.append(line)
        self.info[name] = PluginInfo(name=name, distribution=dist, version=version, error=msg)
        print(line, file=sys.stderr)

    # -- registries -------------------------------------------------------------
    def fill_registries(self) -> None:
        """Call every ``register_*`` hook, one plugin at a time, all-or-nothing per call."""
        if self._filled:
            return
        self.registries = {k: Registry(k) for k in KINDS}
        for info in self.info.values():
            info.registered = {}
        for hook_name, kind in HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():  # in load order: built-ins first
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
                registered: list[Entry] = []
                register = _make_register(kind, plugin_name, registered, info.missing, self._warn)
                try:
                    impl.function(register=register)
                    _add_all(self.registries[kind], registered)
                except Exception as exc:  # noqa: BLE001 - isolate broken plugins
                    self._hook_failed(plugin_name, hook_name, exc)
                    continue
                info.registered.setdefault(kind, []).extend(e.name for e in registered)
        self._filled = True

    def _warn(self, plugin_name: str, msg: str) -> None:
        info = self.info.get(plugin_name) or PluginInfo(name=plugin_name)
        line = f"crackseg: warning: {describe(plugin_name, info.distribution, info.version)} {msg}"
        self.problems.append(line)
        print(line, file=sys.stderr)

    def _hook_failed(self, plugin_name: str, hook_name: str, exc: BaseException) -> None:
        info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
        info.error = f"{hook_name} failed: {one_line(exc)}"
        self._warn(plugin_name, f"hook {info.error}")

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its sub-commands to the click group ``cli``."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or "?"
            info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
            if info.missing:
                continue  # its commands would fail on the missing package
            before = set(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                self._hook_failed(plugin_name, "register_commands", exc)
                continue
            info.commands.extend(sorted(set(cli.commands) - before))


def _add_all(registry: Registry, entries: list[Entry]) -> None:
    """Add every entry or, when one clashes, none of them."""
    names = [e.name for e in entries]
    for e in entries:
        if e.name in registry._entries or names.count(e.name) > 1:
            registry.add(e)  # raises the clash error before anything was added
    for e in entries:
        registry.add(e)


def _is_spec(pm: pluggy.PluginManager, hook_name: str) -> bool:
    return getattr(getattr(pm.hook, hook_name), "spec", None) is not None


def _hookimpl_names(plugin: Any) -> list[str]:
    return [
        attr for attr in dir(plugin)
        if callable(getattr(plugin, attr, None)) and hasattr(getattr(plugin, attr), "crackseg_impl")
    ]


def _missing_requirements(plugin: Any) -> str:
    """``needs open_clip (pip install ...)`` for packages a plugin declares but the environment lacks."""
    required = getattr(plugin, "CRACKSEG_REQUIRES", ()) or ()
    missing = [m for m in required if importlib.util.find_spec(m) is None]
    if not missing:
        return ""
    hint = getattr(plugin, "CRACKSEG_INSTALL_HINT", "") or f"pip install {' '.join(missing)}"
    return f"needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed ({hint})"


def _make_register(kind: str, plugin_name: str, sink: list[Entry], missing: str,
                   warn: Callable[[str, str], None]) -> Callable[..., None]:
    unavailable = f"plugin {plugin_name!r} {missing}" if missing else ""

    def register(name: str, factory: Callable[..., Any], params: type | None = None,
                 description: str = "", **extras: Any) -> None:
        what = SINGULAR[kind]
        if not isinstance(name, str) or not name:
            raise CracksegError(f"registered a {what} without a name")
        if not callable(factory):
            raise CracksegError(f"factory of {what} {name!r} is not callable")
        for key in [k for k in extras if k not in EXTRAS[kind]]:
            warn(plugin_name, f"{what} {name!r}: unknown register extra {key!r} ignored "
                              f"({what} extras: {', '.join(EXTRAS[kind])})")
            extras.pop(key)
        _check_extras(kind, name, params, extras)
        if not description:
            description = (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
        sink.append(Entry(kind, name, factory, params, description, plugin_name, dict(extras), unavailable))

    return register


def _check_extras(kind: str, name: str, params: type | None, extras: dict[str, Any]) -> None:
    what = f"{SINGULAR[kind]} {name!r}"
    opens = extras.get("opens")
    if opens is not None:
        if not (isinstance(opens, dict) and isinstance(opens.get("param"), str)):
            raise CracksegError(f"{what}: opens= must be a mapping with 'param' (and optional 'suffixes')")
        _check_param(what, params, opens["param"], "opens")
    if extras.get("prompt_param") is not None:
        _check_param(what, params, extras["prompt_param"], "prompt_param")
    if "default" in extras and not isinstance(extras["default"], bool):
        raise CracksegError(f"{what}: default= must be true or false")


def _check_param(what: str, params: type | None, param: Any, extra: str) -> None:
    fields = [f.name for f in dataclasses.fields(params)] if params is not None else []
    if param not in fields:
        raise CracksegError(f"{what}: {extra}={param!r} names no parameter of its params dataclass")


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("CRACKSEG_LOAD_PLUGINS")
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


def describe(name: str, dist: str = "", version: str = "") -> str:
    """``plugin 'x' (distribution crackseg-x 1.0)``: how messages name a plugin."""
    return f"plugin {name!r}" + (f" (distribution {dist} {version})" if dist else "")


def one_line(exc: BaseException) -> str:
    """An exception as one line: ``Type: message`` with whitespace collapsed."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())
