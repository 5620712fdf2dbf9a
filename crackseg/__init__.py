"""crackseg: weakly supervised crack segmentation, assembled from plugins.

Public API::

    import crackseg
    model = crackseg.create_backbone("unet", encoder="resnet18")
    crackseg.list_plugins("backbones", "deepcrack*")

Heavy dependencies (torch, open_clip, ...) are imported only by the
components that need them, so ``import crackseg`` stays light.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ConfigError, CracksegError, DataError, UnknownPluginError
from .hookspecs import hookimpl
from .registry import KINDS, Entry

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "create_backbone",
    "create_labeler",
    "create_loss",
    "create_prompt_set",
    "create_dataset",
    "create",
    "get_entry",
    "list_plugins",
    "validate_params",
    "CracksegError",
    "ConfigError",
    "DataError",
    "UnknownPluginError",
]

_ALIASES = {
    "labeler": "labelers",
    "backbone": "backbones",
    "prompt": "prompts",
    "prompt_sets": "prompts",
    "loss": "losses",
    "dataset": "datasets",
}


def _kind(kind: str) -> str:
    k = _ALIASES.get(kind, kind)
    if k not in KINDS:
        raise CracksegError(f"unknown plugin kind {kind!r} (choose from {', '.join(KINDS)})")
    return k


def get_entry(kind: str, name: str) -> Entry:
    """The registry entry of ``name`` (unknown name → UnknownPluginError with suggestions)."""
    from .plugins import registry

    return registry(_kind(kind)).get(name)


def validate_params(entry: Entry, params: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    """Check ``params`` against the entry's dataclass schema; return all parameters with defaults."""
    from . import schema

    if entry.params is None:
        if params:
            raise ConfigError(
                f"{path or entry.name!r} takes no parameters, got: {', '.join(sorted(params))}"
            )
        return {}
    obj = schema.build(entry.params, params, path or entry.name)
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def create(kind: str, name: str, **params: Any) -> Any:
    """Build a registered component: ``create("backbones", "unet", encoder="resnet18")``."""
    entry = get_entry(kind, name)
    return entry.factory(**validate_params(entry, params))


def create_backbone(name: str, **params: Any) -> Any:
    """A segmentation backbone (``torch.nn.Module``) by name."""
    return create("backbones", name, **params)


def create_labeler(name: str, **params: Any) -> Any:
    """A pseudo-labeler by name."""
    return create("labelers", name, **params)


def create_loss(name: str, **params: Any) -> Any:
    """A loss by name; ``"focal+dice+0.5*edge"`` builds a weighted sum."""
    if any(c in name for c in "+*"):
        from .losses import parse_loss

        return parse_loss(name, params)
    return create("losses", name, **params)


def create_prompt_set(name: str, **params: Any) -> Any:
    """A prompt set by name, or from a YAML file path."""
    if name.endswith((".yaml", ".yml")):
        from .prompts import load_prompt_file

        return load_prompt_file(name, **params)
    return create("prompts", name, **params)


def create_dataset(name: str, **params: Any) -> Any:
    """A dataset by name (``folder`` needs ``root=...``)."""
    return create("datasets", name, **params)


def list_plugins(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of ``kind`` matching the shell-style ``pattern``."""
    from .plugins import registry

    return registry(_kind(kind)).names(pattern)
