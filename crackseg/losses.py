"""Combining losses: weighted sums (``"focal+dice+0.5*edge"``) and deep supervision.

Individual losses are plugins (``register_losses``); each maps
``(logits [B,1,H,W], target [B,1,H,W] in {0,1}) -> scalar``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .components import get_entry, instantiate
from .config import parse_terms
from .errors import ConfigError
from .plugins.blame import blamed, plugin_error

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class WeightedSum(torch.nn.Module):
    """Σ wᵢ·lossᵢ(logits, target)."""

    def __init__(self, terms: list[tuple[float, str, LossFn]]) -> None:
        super().__init__()
        self.terms = terms

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for w, name, fn in self.terms:
            with blamed("losses", name, "computing the loss"):
                value = fn(logits, target)
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

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        missing = [k for k in self.weights if k not in outputs]
        if missing:
            raise ConfigError(
                f"loss_weights names outputs the backbone does not return: {', '.join(missing)} "
                f"(it returns: {', '.join(outputs)})"
            )
        total = target.new_zeros(())
        for k, w in self.weights.items():
            total = total + w * self.loss(outputs[k].float(), target)
        return total
