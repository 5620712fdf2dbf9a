"""Baseline crack-segmentation backbones of the CrackCLIP paper's Table 3.

=================  =============================================  ===========
name               model                                          parameters
=================  =============================================  ===========
``unet-original``  Ronneberger et al. 2015 U-Net, padded convs    31,031,745
``deepcrack-liu``  DeepCrack1, Liu et al. 2019 (DeepSegmentor)    14,720,389
``deepcrack-zou``  DeepCrack2, Zou et al. 2019 (SegNet-based)     30,905,011
``oed``            König et al. 2019 (approximation, no code)      8,464,325
=================  =============================================  ===========

All start from random weights; ``pretrained_weights`` names a local state-dict
file to initialise from (for the two DeepCrack models a torchvision VGG16 /
VGG16-BN state dict also works). Nothing is ever downloaded. Each accepts any
input size (padded internally to ``size_multiple`` and cropped back).

Training defaults (``train=``) come from the original papers or their public
code; where a paper does not say, the value is marked as chosen here:

* ``unet-original``: SGD, momentum 0.99 and batch 1 (paper); lr 1e-3, 50
  epochs, 512 px (not given in the paper; chosen). Loss: BCE (the paper's
  two-class softmax cross-entropy; its border weight map is not reproduced).
* ``deepcrack-liu``: SGD lr 1e-4, momentum 0.9, weight decay 2e-4, batch 1,
  256 px, lr ×0.1 every 40 epochs, 700 epochs (DeepSegmentor's scripts and
  options). Loss: focal (α 1, γ 2) on each side map with weights
  0.5/0.75/1.0/0.75/0.5 plus the fused map with weight 1.
* ``deepcrack-zou``: Adam lr 1e-3, no weight decay, batch 8, 512 px, 500
  epochs (qinnzou/DeepCrack ``config.py``). Loss: BCE on the fused map and the
  five side maps, equally weighted.
* ``oed``: no public code; SGD lr 1e-3, momentum 0.9, weight decay 1e-5,
  288 px, BCE + Dice, batch 8, 100 epochs, taken from the same authors' later
  public code (DSP 2021) or chosen here — unverified for the ICIP 2019 model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import crackseg
from crackseg import ConfigError

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch",)
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[baselines]'"

__all__ = [
    "UNetOriginalParams",
    "DeepCrackLiuParams",
    "DeepCrackZouParams",
    "OEDParams",
    "TRAIN_DEFAULTS",
    "register_backbones",
]


@dataclass
class UNetOriginalParams:
    """Parameters of ``unet-original`` (Ronneberger et al. 2015, padded convolutions)."""

    #: number of input image channels
    in_channels: int = 3
    #: channels of the first stage (doubled at each of the 4 poolings: 64 … 1024)
    base_channels: int = 64
    #: dropout probability at the end of the contracting path (paper: drop-out there)
    dropout: float = 0.5
    #: local state-dict file to initialise from; None = random (He) initialisation
    pretrained_weights: str | None = field(default=None, metadata={"path": "file"})


@dataclass
class DeepCrackLiuParams:
    """Parameters of ``deepcrack-liu`` (DeepCrack1, Liu et al. 2019)."""

    in_channels: int = 3
    #: VGG16 width of the first stage (ngf): 64/128/256/512/512
    base_channels: int = 64
    #: local state-dict file (this model's or torchvision VGG16-BN); None = random init
    pretrained_weights: str | None = field(default=None, metadata={"path": "file"})


@dataclass
class DeepCrackZouParams:
    """Parameters of ``deepcrack-zou`` (DeepCrack2, Zou et al. 2019)."""

    in_channels: int = 3
    #: VGG16 width of the first stage: 64/128/256/512/512
    base_channels: int = 64
    #: channels of each fuse module's 3×3 conv
    fuse_channels: int = 64
    #: local state-dict file (this model's or torchvision VGG16); None = random init
    pretrained_weights: str | None = field(default=None, metadata={"path": "file"})


@dataclass
class OEDParams:
    """Parameters of ``oed`` (approximation of König et al. 2019; no public code)."""

    in_channels: int = 3
    #: channels of the first residual block (doubled at each pooling: 32 … 512)
    base_channels: int = 32
    #: number of poolings (inputs are padded to a multiple of 2**depth)
    depth: int = 4
    #: local state-dict file to initialise from; None = random (He) initialisation
    pretrained_weights: str | None = field(default=None, metadata={"path": "file"})


#: training defaults per backbone (keys understood by the trainer)
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet-original": {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.99, "weight_decay": 0.0,
        "epochs": 50, "batch_size": 1, "image_size": 512, "lr_step": 0, "lr_gamma": 0.1,
    },
    "deepcrack-liu": {
        "optimizer": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 2e-4,
        "epochs": 700, "batch_size": 1, "image_size": 256, "lr_step": 40, "lr_gamma": 0.1,
    },
    "deepcrack-zou": {
        "optimizer": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0,
        "epochs": 500, "batch_size": 8, "image_size": 512, "lr_step": 0, "lr_gamma": 0.1,
    },
    "oed": {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-5,
        "epochs": 100, "batch_size": 8, "image_size": 288, "lr_step": 0, "lr_gamma": 0.1,
    },
}


def _check_positive(name: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"backbone {name!r}: parameter {key!r} must be >= 1, got {value}")


def _finish(model: Any, pretrained_weights: str | None) -> Any:
    if pretrained_weights:
        model.load_pretrained(pretrained_weights)
    return model


def build_unet_original(
    in_channels: int, base_channels: int, dropout: float, pretrained_weights: str | None
) -> Any:
    """Ronneberger et al. 2015 U-Net with padded convolutions (one crack logit)."""
    _check_positive("unet-original", in_channels=in_channels, base_channels=base_channels)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"backbone 'unet-original': parameter 'dropout' must be in [0, 1), got {dropout}")
    from .unet_original import UNetOriginal

    return _finish(UNetOriginal(in_channels, base_channels, dropout), pretrained_weights)


def build_deepcrack_liu(in_channels: int, base_channels: int, pretrained_weights: str | None) -> Any:
    """DeepCrack1 (Liu et al. 2019): VGG16-BN with five side outputs and a fused map."""
    _check_positive("deepcrack-liu", in_channels=in_channels, base_channels=base_channels)
    from .deepcrack_liu import DeepCrackLiu

    return _finish(DeepCrackLiu(in_channels, base_channels), pretrained_weights)


def build_deepcrack_zou(
    in_channels: int, base_channels: int, fuse_channels: int, pretrained_weights: str | None
) -> Any:
    """DeepCrack2 (Zou et al. 2019): SegNet encoder-decoder with five fuse modules."""
    _check_positive("deepcrack-zou", in_channels=in_channels, base_channels=base_channels, fuse_channels=fuse_channels)
    from .deepcrack_zou import DeepCrackZou

    return _finish(DeepCrackZou(in_channels, base_channels, fuse_channels), pretrained_weights)


def build_oed(in_channels: int, base_channels: int, depth: int, pretrained_weights: str | None) -> Any:
    """OED approximation: residual U-Net with attention-gated skips (König et al. 2019; no public code)."""
    _check_positive("oed", in_channels=in_channels, base_channels=base_channels, depth=depth)
    if depth > 6:
        raise ConfigError(f"backbone 'oed': parameter 'depth' must be between 1 and 6, got {depth}")
    from .oed import OED

    return _finish(OED(in_channels, base_channels, depth), pretrained_weights)




@crackseg.hookimpl
def register_backbones(register):
    """Register unet-original, deepcrack-liu, deepcrack-zou and oed."""
    register(
        "unet-original", build_unet_original, params=UNetOriginalParams,
        description="U-Net (Ronneberger 2015, padded convs, 31.0M params)",
        train=dict(TRAIN_DEFAULTS["unet-original"]), loss="bce",
    )
    register(
        "deepcrack-liu", build_deepcrack_liu, params=DeepCrackLiuParams,
        description="DeepCrack1 (Liu 2019): VGG16-BN, 5 side outputs + fused (14.7M params)",
        train=dict(TRAIN_DEFAULTS["deepcrack-liu"]), loss="focal",
    )
    register(
        "deepcrack-zou", build_deepcrack_zou, params=DeepCrackZouParams,
        description="DeepCrack2 (Zou 2019): SegNet with 5 fuse modules (30.9M params)",
        train=dict(TRAIN_DEFAULTS["deepcrack-zou"]), loss="bce",
    )
    register(
        "oed", build_oed, params=OEDParams,
        description="OED approximation (König 2019; no public code): residual attention U-Net (8.5M params)",
        train=dict(TRAIN_DEFAULTS["oed"]), loss="bce+dice",
    )
