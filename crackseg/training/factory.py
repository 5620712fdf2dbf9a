"""Phase-2 components by name: backbones, losses, trainers, prompt sets and loggers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from crackseg.base.console import first_line
from crackseg.base.errors import CracksegError, UnknownComponentError
from crackseg.plugins.factory import create, path_section
from crackseg.training.contract import Trainer

if TYPE_CHECKING:  # pragma: no cover
    import torch


def create_backbone(name: str, **params: Any) -> Any:
    """A segmentation backbone (``torch.nn.Module``) by name."""
    return create("backbones", name, **params)


def create_loss(name: str, **params: Any) -> Any:
    """A loss by name; ``"focal+dice+0.5*edge"`` builds a weighted sum (params keyed by term)."""
    if any(c in name for c in "+*"):
        from crackseg.training.losses import parse_loss

        return parse_loss(name, params)
    return create("losses", name, **params)


def create_prompt_set(name: str, **params: Any) -> Any:
    """A prompt set by name, or from a file that a prompt-set plugin opens (e.g. ``my.yaml``)."""
    section = path_section("prompts", name)
    if section is not None:
        return create("prompts", section.pop("name"), **section, **params)
    return create("prompts", name, **params)


def create_trainer(name: str, **params: Any) -> Trainer:
    """A training method by name."""
    return create("trainers", name, **params)


def create_logger(name: str, **params: Any) -> Any:
    """A training logger by name."""
    return create("loggers", name, **params)


def load_model(source: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the backbone recorded in a checkpoint (run folder or file) and load its weights."""
    from crackseg.training.checkpoints import find_checkpoint, load_checkpoint, load_model_state

    ckpt = load_checkpoint(find_checkpoint(source))
    spec = ckpt["backbone"]
    try:
        model = create_backbone(spec["name"], **dict(spec.get("params") or {}))
    except UnknownComponentError:
        dist = spec.get("distribution")
        if not dist:
            raise
        raise CracksegError(f"{source}: backbone {spec['name']!r} comes from {dist} {spec.get('version', '')} "
                            f"(plugin {spec.get('plugin', '?')!r}), which is not installed; install it "
                            f"(pip install {dist}) to use this checkpoint") from None
    try:
        load_model_state(model, ckpt["model"])
    except RuntimeError as exc:
        raise CracksegError(f"{source}: checkpoint does not fit backbone {spec['name']!r}: "
                            f"{first_line(exc, with_type=False)}") from None
    return model, ckpt
