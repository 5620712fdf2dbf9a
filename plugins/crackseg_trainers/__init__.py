"""crackseg's built-in training methods: ``supervised`` (the default) and ``cac``.

This module only registers; the trainers' modules (torch) are imported when one is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import crackseg
from crackseg import ConfigError

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch",)
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[baselines]', or [cam], [clip], [all]"


@dataclass
class CACParams:
    """Parameters of ``cac`` (Confidence-Aware Co-training, Liang et al. 2024)."""

    #: top fraction of each label map that is high-confidence crack (the code's 5 %)
    high_fraction: float = 0.05
    #: top fraction that is foreground; the low-confidence band is foreground minus high-confidence (15 %)
    foreground_fraction: float = 0.15
    #: weight of the loss on batch A (high-confidence labels)
    weight_a: float = 0.7
    #: weight of the look-ahead loss on batch B (the low-confidence band)
    weight_b: float = 0.3
    #: learning rate of the virtual step (null: train.lr, as the code)
    inner_lr: float | None = None
    #: do not differentiate through the virtual step's gradient (cheaper; not the code's)
    first_order: bool = False
    #: output whose sigmoid updates the label maps (null: side5 when the backbone has it, else out)
    update_output: str | None = None
    #: reproduce the public code's bug: the fused term of the look-ahead loss reuses batch A's prediction
    fused_bug: bool = False

    def __post_init__(self) -> None:
        """Ranges, checked wherever the settings are read (run, config show, compare)."""
        if not 0.0 < self.high_fraction < self.foreground_fraction < 1.0:
            raise ConfigError(f"trainer 'cac': need 0 < high_fraction < foreground_fraction < 1 (got high_fraction "
                              f"{self.high_fraction}, foreground_fraction {self.foreground_fraction})")
        if self.weight_a < 0 or self.weight_b < 0 or self.weight_a + self.weight_b == 0:
            raise ConfigError("trainer 'cac': weight_a and weight_b must be >= 0 and not both 0")
        if self.inner_lr is not None and self.inner_lr <= 0:
            raise ConfigError(f"trainer 'cac': inner_lr must be positive (got {self.inner_lr})")


#: the public CAC code's recipe (DeepSegmentor options): SGD 1e-3, momentum 0.9, weight decay 2e-4,
#: StepLR(10, 0.1), 30 + 10 epochs, batch 4, 256 px, flips
CAC_TRAIN = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 2e-4, "lr_step": 10,
             "lr_gamma": 0.1, "epochs": 40, "batch_size": 4, "image_size": 256, "augment": ["flip"],
             "mosaic_p": 0.0}


def _supervised() -> Any:
    from .supervised import SupervisedTrainer

    return SupervisedTrainer()


def _cac(**params: Any) -> Any:
    from .cac import CacTrainer

    CACParams(**params)  # the range checks, for callers that bypass the schema
    return CacTrainer(**params)


@crackseg.hookimpl
def register_trainers(register: Any) -> None:
    register("supervised", _supervised, description="plain training on the binary pseudo-labels (the default)",
             default=True)
    register("cac", _cac, params=CACParams, train=dict(CAC_TRAIN),
             description="confidence-aware co-training with label refinement (CAC, Liang et al. 2024)")
