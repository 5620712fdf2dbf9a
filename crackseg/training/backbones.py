"""Phase 2 contract: what a backbone returns and the optional attributes the pipeline reads (torch).

A backbone returns crack logits ``[B,1,H,W]``, or a ``dict`` of named logit
maps with the main map under ``"out"``. Optional module attributes:

``input_mean`` / ``input_std``
    per-channel normalisation of RGB in [0, 1] (default: ImageNet statistics).
``size_multiple``
    inputs are padded to a multiple of this and cropped back (default 1: no padding).
``fixed_input_size``
    the model only accepts this square size (e.g. 518); images are resized to it.
``loss_weights``
    default weights of named outputs for the loss (default ``{"out": 1.0}``).
``checkpoint_state_dict()`` / ``load_checkpoint_state_dict(sd)``
    what a checkpoint holds (default: the full ``state_dict``), e.g. only adapters.
``forward_train(x, keys)``
    used for training instead of ``forward`` when present (``keys``: one cache key
    per image or ``None`` when the image was augmented), e.g. for feature caching.
``note`` / ``placeholder``
    see :mod:`crackseg.plugins.hookspecs`.
"""

from __future__ import annotations

from typing import Any

import torch

from crackseg.base.image_stats import IMAGENET_MEAN, IMAGENET_STD


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


def output_problem(outs: dict[str, Any], batch: int, height: int, width: int) -> str:
    """What is wrong with a backbone's outputs for a ``[batch, 3, height, width]`` input (empty when nothing is)."""
    for key, t in outs.items():
        if not isinstance(t, torch.Tensor):
            return f"output {key!r} is {type(t).__name__}, not a tensor"
        if t.ndim != 4 or t.shape[0] != batch or t.shape[1] != 1 or tuple(t.shape[-2:]) != (height, width):
            return (f"output {key!r} has shape {list(t.shape)} for {batch} images of {width}x{height}; "
                    f"expected [{batch}, 1, {height}, {width}] (crack logits: one channel at the input's size)")
        if not t.is_floating_point():
            return f"output {key!r} is {t.dtype}, not a floating-point tensor"
    return ""


def input_stats(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model's input normalisation ``(mean, std)`` (ImageNet statistics by default)."""
    return tuple(getattr(model, "input_mean", IMAGENET_MEAN)), tuple(getattr(model, "input_std", IMAGENET_STD))


def loss_weights(model: torch.nn.Module) -> dict[str, float]:
    """Weights of the model's named outputs for the loss (``{"out": 1.0}`` by default)."""
    return dict(getattr(model, "loss_weights", None) or {"out": 1.0})


def size_multiple(model: torch.nn.Module) -> int:
    """Inputs are padded to a multiple of this (1: any size)."""
    return int(getattr(model, "size_multiple", 1) or 1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``[B,C,H,W]`` at the bottom/right to a multiple of ``multiple``; returns (x, H, W) to crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, h, w
