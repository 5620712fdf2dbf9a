"""Run-time blame: an unexpected exception in a plugin's code becomes one line naming the plugin.

The pipeline wraps every call into a plugin (factories, ``prepare``/``label``, a backbone's
forward pass, a loss) in :func:`blamed`; contract checks on what a plugin returns raise
:func:`plugin_error`. Errors crackseg raises itself (:class:`~crackseg.base.errors.CracksegError`,
bad input) and a lost torch.distributed peer pass through unchanged, and a write the file system refuses
(a full disk, a read-only folder: no plugin's fault) is one :class:`~crackseg.base.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from crackseg.base.console import one_line
from crackseg.base.distributed import is_peer_failure
from crackseg.base.errors import CracksegError, PluginError
from crackseg.base.storage import storage_error
from crackseg.plugins import get_manager
from crackseg.plugins.registry import SINGULAR


def plugin_error(kind: str, name: str, message: str) -> PluginError:
    """``plugin 'x' (distribution d 1.0): backbone 'tiny': <message>`` (``backbone: <message>`` without a name)."""
    if not name:
        return PluginError(f"{SINGULAR[kind]}: {message}")
    entry = get_manager().registries[kind].entry(name)
    who = entry.describe_plugin() if entry is not None else "an unknown plugin"
    return PluginError(f"{who}: {SINGULAR[kind]} {name!r}: {message}")


@contextlib.contextmanager
def blamed(kind: str, name: str, action: str) -> Iterator[None]:
    """Re-raise any unexpected exception of the block as a :class:`PluginError` naming the plugin."""
    try:
        yield
    except CracksegError:
        raise
    except Exception as exc:
        if is_peer_failure(exc):
            raise
        stored = storage_error(exc)
        if stored is not None:
            raise stored from exc
        raise plugin_error(kind, name, f"{action} failed: {one_line(exc)}") from exc
