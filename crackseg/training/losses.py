"""Combining losses: weighted sums (``"a+0.5*b"``) and deep supervision.

Individual losses are plugins (``register_losses``); each maps
``(logits [B,1,H,W], target [B,1,H,W] in {0,1}) -> scalar``. A loss that also accepts
``weight=`` (per-pixel weights ``[B,1,H,W]``, 0 = ignore the pixel) can be masked: trainers
that learn from part of a label (CAC) need that.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from crackseg.base.errors import ConfigError
from crackseg.config.run_config import parse_terms
from crackseg.plugins.blame import blamed, plugin_error
from crackseg.plugins.factory import get_entry, instantiate

#: ``loss(logits, target)``, optionally ``loss(logits, target, weight=w)``
LossFn = Callable[..., torch.Tensor]


class WeightedSum(torch.nn.Module):
    """Σ wᵢ·lossᵢ(logits, target[, weight])."""

    def __init__(self, terms: list[tuple[float, str, LossFn]]) -> None:
        super().__init__()
        self.terms = terms

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        total = logits.new_zeros(())
        for w, name, fn in self.terms:
            if weight is not None and not accepts_weight(fn):
                raise plugin_error("losses", name, "takes no per-pixel weight= (a masked loss needs one; "
                                                   "choose a loss that does)")
            with blamed("losses", name, "computing the loss"):
                value = fn(logits, target) if weight is None else fn(logits, target, weight=weight)
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise plugin_error("losses", name, f"returned {shape}, not a scalar tensor")
            if not torch.isfinite(value) and torch.isfinite(logits).all():
                raise plugin_error("losses", name, f"returned {value.item()} for finite logits")
            total = total + w * value
        return total

    def __repr__(self) -> str:
        return "+".join(f"{w:g}*{n}" for w, n, _ in self.terms)


def parse_loss(spec: str, params: Mapping[str, Any] | None = None) -> WeightedSum:
    """Build ``spec`` from registered losses; ``params[name]`` holds each term's parameters."""
    params = dict(params or {})
    terms = []
    for w, name in parse_terms(spec):
        sub = params.pop(name, {}) or {}
        if not isinstance(sub, Mapping):
            raise ConfigError(f"config key 'loss_params.{name}' must be a mapping of that loss's parameters")
        terms.append((w, name, instantiate(get_entry("losses", name), dict(sub), f"loss_params.{name}")))
    if params:
        raise ConfigError(
            f"loss_params has keys for losses not in {spec!r}: {', '.join(sorted(params))}"
        )
    return WeightedSum(terms)


class DeepSupervisionLoss(torch.nn.Module):
    """Apply one loss to several named outputs: Σₖ wₖ·loss(outputs[k], target)."""

    def __init__(self, loss: LossFn, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.loss = loss
        self.weights = {k: float(v) for k, v in weights.items() if float(v) != 0.0}
        if not self.weights:
            raise ConfigError("loss_weights: every output weight is zero; nothing to train")

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """Σₖ wₖ·loss(outputs[k], target) (``weight``: per-pixel weights, passed to the loss)."""
        missing = [k for k in self.weights if k not in outputs]
        if missing:
            raise ConfigError(
                f"loss_weights names outputs the backbone does not return: {', '.join(missing)} "
                f"(it returns: {', '.join(outputs)})"
            )
        total = target.new_zeros(())
        for k, w in self.weights.items():
            if weight is None:
                total = total + w * self.loss(outputs[k].float(), target)
            else:
                total = total + w * self.loss(outputs[k].float(), target, weight=weight)
        return total


def accepts_weight(loss: Any) -> bool:
    """Whether ``loss(logits, target, weight=...)`` is accepted (a maskable loss)."""
    fn = loss.forward if isinstance(loss, torch.nn.Module) else loss
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "weight" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
