"""Built-in losses: ``bce``, ``dice``, ``focal``, ``edge``.

Each takes logits ``[B,1,H,W]`` and a target in {0,1}; combine them in a config
as ``loss: focal+dice+edge`` (the CrackCLIP paper's total; its released code
omits ``edge``).
"""

from __future__ import annotations

from dataclasses import dataclass

import crackseg

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch",)
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[baselines]', or [cam], [clip], [all]"


@dataclass
class BCEParams:
    """Binary cross-entropy on logits."""

    pos_weight: float = 1.0


@dataclass
class DiceParams:
    """Dice per image, 1 − mean over the batch."""

    #: the paper's formula (Σp² + Σy²) instead of the authors' plain sums
    squared: bool = False
    smooth: float = 1.0


@dataclass
class FocalParams:
    """Focal loss on the two-class softmax, as in the CrackCLIP authors' code."""

    gamma: float = 2.0
    #: weight of the crack class (background gets 1 − alpha); None = 1 for both (authors' default)
    alpha: float | None = None


@dataclass
class EdgeParams:
    """Edge loss: E = 3×3 dilation − erosion of the label; 1 − Σp·E / ΣE per image."""

    alpha: float = 1.0


def _bce(pos_weight: float):
    from .impl import bce_loss

    return bce_loss(pos_weight)


def _dice(squared: bool, smooth: float):
    from .impl import dice_loss

    return dice_loss(squared, smooth)


def _focal(gamma: float, alpha: float | None):
    from .impl import focal_loss

    return focal_loss(gamma, alpha)


def _edge(alpha: float):
    from .impl import edge_loss

    return edge_loss(alpha)


@crackseg.hookimpl
def register_losses(register):
    # bce + dice is the loss of backbones that declare none
    register("bce", _bce, params=BCEParams, description="binary cross-entropy on logits", default=True)
    register("dice", _dice, params=DiceParams, description="dice loss (authors' plain sums; squared: paper formula)",
             default=True)
    register("focal", _focal, params=FocalParams, description="focal loss, gamma 2, on the 2-class softmax")
    register("edge", _edge, params=EdgeParams,
             description="CrackCLIP edge loss on the label's 3x3 morphological gradient")
