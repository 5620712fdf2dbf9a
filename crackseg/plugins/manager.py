"""The plugin manager: entry-point loading, broken-plugin isolation, and the registries it fills.

Plugins (the built-in ones included) are found through the entry-point group
``crackseg``; the built-in distribution's entry points load first, then every other
distribution's in name order, so what a built-in name means never depends on what
else is installed. Each plugin is imported on its own: one that fails to import,
implements a misspelled hook or whose hook raises is reported in one line on stderr,
naming the distribution and the error, and everything else keeps working (one that
calls ``sys.exit()`` too: anything it raises but KeyboardInterrupt is isolated). A hook
call registers all of its entries or none.

A plugin may declare the packages it needs (``CRACKSEG_REQUIRES = ("torch", ...)``,
import names) and how to get them (``CRACKSEG_INSTALL_HINT``). When one is missing
its components stay registered but *unavailable*: ``crackseg plugins`` says so, and
asking for one of them names the package to install.

``CRACKSEG_LOAD_PLUGINS=a,b`` loads only the named plugins (entry-point or
distribution names); an empty value loads none.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import click
import pluggy

from crackseg.base.console import one_line
from crackseg.base.errors import CracksegError
from crackseg.plugins import hookspecs
from crackseg.plugins.checks import check_registration, unknown_extras
from crackseg.plugins.registry import EXTRAS, KINDS, SINGULAR, Entry, Registry, describe_plugin

ENTRY_POINT_GROUP = "crackseg"
#: the distribution whose entry points are the built-in plugins
BUILTIN_DISTRIBUTION = "crackseg"

#: hook name → registry kind
HOOK_KINDS: dict[str, str] = {
    "register_datasets": "datasets",
    "register_labelers": "labelers",
    "register_backbones": "backbones",
    "register_prompt_sets": "prompts",
    "register_losses": "losses",
    "register_trainers": "trainers",
    "register_loggers": "loggers",
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
    #: registration problems (one line each; also printed as warnings)
    warnings: list[str] = field(default_factory=list)
    #: entries refused because their name was taken ("backbone 'unet' (taken by plugin 'smp' ...)")
    rejected: list[str] = field(default_factory=list)
    #: entries of other plugins this one replaced with override=True
    overrides: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``plugin 'smp' (distribution crackseg 0.1.0)``."""
        return describe_plugin(self.name, self.distribution, self.version)

    def to_json(self) -> dict[str, Any]:
        """What ``crackseg plugins --json`` prints for this plugin."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "registered": self.registered, "commands": self.commands, "error": self.error,
                "missing": self.missing, "warnings": self.warnings, "rejected": self.rejected,
                "overrides": self.overrides}


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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - any import failure is isolated, sys.exit() included
                self._problem(ep.name, dist, version, f"failed to import: {_failure(exc)}")
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
            known = [*HOOK_KINDS, "register_commands"]
            close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self._problem(name, distribution, version,
                          f"rejected: unknown hook {unknown[0]!r}{hint} (known hooks: {', '.join(known)})")
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
        line = f"crackseg: warning: {describe_plugin(name, dist, version)} {msg}"
        self.problems.append(line)
        self.info[name] = PluginInfo(name=name, distribution=dist, version=version, error=msg)
        print(line, file=sys.stderr)

    # -- registries -------------------------------------------------------------
    def fill_registries(self) -> None:
        """Call every ``register_*`` hook, one plugin at a time (built-ins first).

        A hook call that raises registers nothing. An entry whose name another plugin
        already registered is refused alone (unless it overrides it), so a third party can
        never change what a built-in name means without saying so.
        """
        if self._filled:
            return
        self.registries = {k: Registry(k) for k in KINDS}
        for info in self.info.values():
            info.registered, info.warnings, info.rejected, info.overrides = {}, [], [], []
        for hook_name, kind in HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():  # in load order: built-ins first
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
                registered: list[Entry] = []
                warnings: list[str] = []
                try:
                    with _traced(hook_name, plugin_name, functools.partial(_entry_names, registered)):
                        impl.function(register=_make_register(kind, info, registered, warnings))
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - isolate broken plugins, sys.exit() included
                    self._hook_failed(info, hook_name, exc)
                    continue
                for text in warnings:
                    self._warn(info, text)
                for entry in registered:
                    self._add(kind, info, entry)
        self._filled = True

    def _add(self, kind: str, info: PluginInfo, entry: Entry) -> None:
        registry = self.registries[kind]
        taken = registry.entry(entry.name)
        try:
            registry.add(entry)
        except CracksegError as exc:
            owner = taken.describe_plugin() if taken is not None else "?"
            info.rejected.append(f"{SINGULAR[kind]} {entry.name!r} (taken by {owner})")
            self._warn(info, str(exc), keep=False)
            return
        info.registered.setdefault(kind, []).append(entry.name)
        if taken is not None:
            info.overrides.append(f"{SINGULAR[kind]} {entry.name!r} (was {taken.describe_plugin()})")
            owner_info = self.info.get(taken.plugin)
            if owner_info is not None and entry.name in owner_info.registered.get(kind, []):
                owner_info.registered[kind].remove(entry.name)

    def _warn(self, info: PluginInfo, msg: str, keep: bool = True) -> None:
        """Print a one-line warning naming the plugin; ``keep``: also list it in the plugin's warnings."""
        line = f"crackseg: warning: {info.describe()} {msg}"
        if keep:
            info.warnings.append(msg)
        self.problems.append(line)
        print(line, file=sys.stderr)

    def _hook_failed(self, info: PluginInfo, hook_name: str, exc: BaseException) -> None:
        info.error = f"{hook_name} failed: {_failure(exc)}"
        line = f"crackseg: warning: {info.describe()} hook {info.error}"
        self.problems.append(line)
        print(line, file=sys.stderr)

    def add_commands(self, cli: click.Group) -> None:
        """Let every plugin add its sub-commands to the click group ``cli``; a name that is taken is refused."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or "?"
            info = self.info.setdefault(plugin_name, PluginInfo(name=plugin_name))
            if info.missing:
                continue  # its commands would fail on the missing package
            staging = click.Group(name=cli.name)
            try:
                with _traced("register_commands", plugin_name, functools.partial(_command_names, staging)):
                    impl.function(cli=staging)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - isolate broken plugins, sys.exit() included
                self._hook_failed(info, "register_commands", exc)
                continue
            for name, command in staging.commands.items():
                if name in cli.commands:
                    owner = self.command_owner(name)
                    info.rejected.append(f"command {name!r} (taken by {owner})")
                    self._warn(info, f"command {name!r} is already a command of {owner}; this one is ignored "
                                     f"(rename it)", keep=False)
                    continue
                cli.add_command(command, name)
                info.commands.append(name)

    def command_owner(self, name: str) -> str:
        """Who provides the command ``name``: a plugin (described) or crackseg itself."""
        for info in self.info.values():
            if name in info.commands:
                return info.describe()
        return "crackseg itself"


def _failure(exc: BaseException) -> str:
    """A plugin's failure as one line; ``sys.exit(n)`` says so (``SystemExit: 3`` reads like a bug of ours)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return one_line(exc)


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


def _make_register(kind: str, info: PluginInfo, sink: list[Entry], warnings: list[str]) -> Callable[..., None]:
    unavailable = f"plugin {info.name!r} {info.missing}" if info.missing else ""

    def register(name: str, factory: Callable[..., Any], params: type | None = None,
                 description: str = "", override: bool = False, **extras: Any) -> None:
        for key in unknown_extras(kind, extras):
            warnings.append(f"{SINGULAR[kind]} {name!r}: unknown register extra {key!r} ignored "
                            f"({SINGULAR[kind]} extras: {', '.join(EXTRAS[kind])}, override)")
            extras.pop(key)
        warnings.extend(check_registration(kind, name, factory, params, extras))
        if not description:
            description = (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
        sink.append(Entry(kind, name, factory, params, description, info.name, dict(extras), unavailable,
                          info.distribution, info.version, bool(override)))

    return register


#: ``CRACKSEG_TRACE_PLUGINS=1``: every hook call is printed on stderr (datasette's switch)
TRACE_ENV = "CRACKSEG_TRACE_PLUGINS"


def _entry_names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def _command_names(group: click.Group) -> list[str]:
    return sorted(group.commands)


@contextlib.contextmanager
def _traced(hook_name: str, plugin_name: str, result: Callable[[], list[str]]) -> Iterator[None]:
    """Print ``crackseg: trace: plugin P: hook(...) -> names (ms)`` around one hook call when tracing is on."""
    if os.environ.get(TRACE_ENV, "") in ("", "0"):
        yield
        return
    start = time.perf_counter()
    outcome = "raised"
    try:
        yield
        outcome = "-> " + (", ".join(result()) or "nothing")
    finally:
        ms = (time.perf_counter() - start) * 1000
        print(f"crackseg: trace: plugin {plugin_name!r}: {hook_name}() {outcome} ({ms:.1f} ms)", file=sys.stderr,
              flush=True)


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get("CRACKSEG_LOAD_PLUGINS")
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}
