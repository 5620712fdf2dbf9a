"""Backbone output conventions (torch).

A backbone returns crack logits ``[B,1,H,W]``, or a ``dict`` of named logit
maps with the main map under ``"out"``. Optional module attributes that the
pipeline reads:

``input_mean`` / ``input_std``
    per-channel normalisation of RGB in [0, 1] (default: ImageNet statistics).
``size_multiple``
    inputs are padded to a multiple of this and cropped back (default 32).
``fixed_input_size``
    the model only accepts this square size (e.g. CrackCLIP's 518); images are resized.
``loss_weights``
    default weights of named outputs for the loss (default ``{"out": 1.0}``).
``checkpoint_state_dict()`` / ``load_checkpoint_state_dict(sd)``
    what a checkpoint holds (default: the full ``state_dict``), e.g. only adapters.
``forward_train(x, keys)``
    used for training instead of ``forward`` when present (``keys``: one cache key
    per image or ``None`` when the image was augmented), e.g. for feature caching.
"""

from __future__ import annotations

from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_outputs(out: Any) -> dict[str, torch.Tensor]:
    """Normalise a backbone's return value to ``{"out": logits, ...}``."""
    if isinstance(out, torch.Tensor):
        return {"out": out}
    if isinstance(out, dict) and "out" in out:
        return out
    if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
        # (side1, ..., fused): the last map is the main one
        named = {f"side{i + 1}": t for i, t in enumerate(out[:-1])}
        named["out"] = out[-1]
        return named
    raise TypeError(
        "a backbone must return a [B,1,H,W] logits tensor or a dict with an 'out' entry, "
        f"got {type(out).__name__}"
    )


def input_stats(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(getattr(model, "input_mean", IMAGENET_MEAN)), tuple(getattr(model, "input_std", IMAGENET_STD))


def loss_weights(model: torch.nn.Module) -> dict[str, float]:
    return dict(getattr(model, "loss_weights", None) or {"out": 1.0})


def checkpoint_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    fn = getattr(model, "checkpoint_state_dict", None)
    sd = fn() if callable(fn) else model.state_dict()
    return {k: v.detach().cpu() for k, v in sd.items()}


def load_checkpoint_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    fn = getattr(model, "load_checkpoint_state_dict", None)
    if callable(fn):
        fn(state)
    else:
        model.load_state_dict(state)
