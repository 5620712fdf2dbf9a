"""The plugin system: hook specifications, registries and the process-wide manager.

This package holds the only global state in crackseg: one :class:`PluginManager`
(entry points loaded, registries filled) created on first use.
"""

from __future__ import annotations

from crackseg.plugins.hookspecs import Register, hookimpl, hookspec
from crackseg.plugins.manager import PluginInfo, PluginManager
from crackseg.plugins.registry import EXTRAS, KINDS, SINGULAR, Entry, Registry

__all__ = [
    "EXTRAS", "KINDS", "SINGULAR", "Entry", "PluginInfo", "PluginManager", "Register", "Registry",
    "get_manager", "hookimpl", "hookspec", "registry", "reset_manager",
]

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
    """The registry of ``kind`` (``labelers``, ``backbones``, ``prompts``, ``losses``, ``datasets``)."""
    return get_manager().registries[kind]
