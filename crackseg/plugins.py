"""The plugin manager: entry-point loading and the registries it fills.

This module holds the only global state in crackseg: one
:class:`pluggy.PluginManager` and the registries built from it, created on
first use. Plugins (built-in ones included) are found through the entry-point
group ``crackseg``. Each is imported on its own: a plugin that fails to import,
implements a misspelled hook or whose hook raises is reported in one line on
stderr, naming the distribution and the error, and everything else keeps working.

``CRACKSEG_LOAD_PLUGINS=a,b`` loads only the named plugins (entry-point or
distribution names); an empty value loads none.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import CracksegError
from .registry import KINDS, Entry, Registry

ENTRY_POINT_GROUP = "crackseg"

#: hook name → registry kind
_HOOK_KIND: dict[str, str] = {
    "register_labelers": "labelers",
    "register_backbones": "backbones",
    "register_prompt_sets": "prompts",
    "register_losses": "losses",
    "register_datasets": "datasets",
}


@dataclass
class PluginInfo:
    """What ``crackseg plugins`` shows about one loaded plugin."""

    name: str
    distribution: str = ""
    version: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


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
        allowed = _allowed_plugins()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is isolated
                self._problem(ep.name, dist, version, f"failed to import: {_one_line(exc)}")
                continue
            self.add_plugin(module, ep.name, distribution=dist, version=version)

    def add_plugin(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> bool:
        """Register a plugin object/module; reject it if a hook name is misspelled."""
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:
            self._problem(name, distribution, version, f"rejected: {_one_line(exc)}")
            return False
        unknown = [h for h in _hookimpl_names(plugin) if not _is_spec(self.pm, h)]
        if unknown:
            self.pm.unregister(name=name)
            known = ", ".join(sorted(_HOOK_KIND) + ["register_commands"])
            self._problem(
                name, distribution, version,
                f"rejected: unknown hook {unknown[0]!r} (known hooks: {known})",
            )
            return False
        self.info[name] = PluginInfo(name=name, distribution=distribution, version=version)
        self._filled = False
        return True

    def _problem(self, name: str, dist: str, version: str, msg: str) -> None:
        who = f"plugin {name!r}" + (f" (distribution {dist} {version})" if dist else "")
        line = f"crackseg: warning: {who} {msg}"
        self.problems.append(line)
        self.info[name] = PluginInfo(name=name, distribution=dist, version=version, error=msg)
        print(line, file=sys.stderr)

    # -- registries -------------------------------------------------------------
    def fill_registries(self) -> None:
        """Call every ``register_*`` hook, one plugin at a time."""
        if self._filled:
            return
        self.registries = {k: Registry(k) for k in KINDS}
        for hook_name, kind in _HOOK_KIND.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():  # registration order: first wins
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                registered: list[Entry] = []
                register = _make_register(kind, plugin_name, registered)
                try:
                    impl.function(register=register)
                    for entry in registered:
                        self.registries[kind].add(entry)
                except CracksegError as exc:
                    # duplicate names and the like: a clear one-line report
                    self._hook_failed(plugin_name, hook_name, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - isolate broken plugins
                    self._hook_failed(plugin_name, hook_name, exc)
                    continue
                info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
                info.registered.setdefault(kind, []).extend(e.name for e in registered)
        self._filled = True

    def _hook_failed(self, plugin_name: str, hook_name: str, exc: BaseException) -> None:
        info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
        dist = f" (distribution {info.distribution} {info.version})" if info.distribution else ""
        line = f"crackseg: warning: plugin {plugin_name!r}{dist} hook {hook_name} failed: {_one_line(exc)}"
        self.problems.append(line)
        info.error = f"{hook_name} failed: {_one_line(exc)}"
        print(line, file=sys.stderr)

    def add_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.register_commands.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or "?"
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                self._hook_failed(plugin_name, "register_commands", exc)


def _is_spec(pm: pluggy.PluginManager, hook_name: str) -> bool:
    return getattr(getattr(pm.hook, hook_name), "spec", None) is not None


def _hookimpl_names(plugin: Any) -> list[str]:
    return [
        attr for attr in dir(plugin)
        if callable(getattr(plugin, attr, None)) and hasattr(getattr(plugin, attr), "crackseg_impl")
    ]


def _make_register(kind: str, plugin_name: str, sink: list[Entry]) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        params: type | None = None,
        description: str = "",
        **extras: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise CracksegError(f"plugin {plugin_name!r} registered a {kind[:-1]} without a name")
        if not callable(factory):
            raise CracksegError(f"plugin {plugin_name!r}: factory of {name!r} is not callable")
        if not description:
            description = (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
        sink.append(Entry(kind, name, factory, params, description, plugin_name, dict(extras)))

    return register


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("CRACKSEG_LOAD_PLUGINS")
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, with entry points loaded and registries filled."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
        _manager.load_entry_points()
    _manager.fill_registries()
    return _manager


def reset_manager() -> None:
    """Forget the manager (tests; after installing a plugin in-process)."""
    global _manager
    _manager = None


def registry(kind: str) -> Registry:
    return get_manager().registries[kind]
