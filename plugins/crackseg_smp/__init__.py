"""Backbones from segmentation-models-pytorch: ``unet`` and ``smp-<architecture>``.

``unet`` is smp's ``Unet`` with a ``resnet34`` encoder and one output class
(24,436,369 parameters). Every other smp architecture is available as
``smp-<name>`` (``smp-unetplusplus``, ``smp-deeplabv3plus``, ``smp-fpn``, ...)
with the same parameters. Encoders start from random weights unless
``encoder_weights`` names a local file (e.g. ImageNet weights you have);
nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import crackseg

#: registered name suffix → smp class name
ARCHITECTURES: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "manet": "MAnet",
    "linknet": "Linknet",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
    "pan": "PAN",
    "upernet": "UPerNet",
    "segformer": "Segformer",
}

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch", "segmentation_models_pytorch")
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[baselines]'"


@dataclass
class SMPParams:
    """Parameters of every smp backbone."""

    #: encoder name as smp knows it (resnet18, resnet34, efficientnet-b0, ...)
    encoder: str = "resnet34"
    #: local file with encoder weights (a state dict); None = random initialisation
    encoder_weights: str | None = field(default=None, metadata={"path": "file"})
    #: encoder depth (3-5)
    encoder_depth: int = 5
    in_channels: int = 3


def _factory(arch: str):
    def build(encoder: str, encoder_weights: str | None, encoder_depth: int, in_channels: int):
        from .model import build_smp

        return build_smp(ARCHITECTURES[arch], encoder, encoder_weights, encoder_depth, in_channels)

    build.__doc__ = f"segmentation-models-pytorch {ARCHITECTURES[arch]}"
    return build


@crackseg.hookimpl
def register_backbones(register):
    register(
        "unet", _factory("unet"), params=SMPParams,
        description="U-Net (segmentation-models-pytorch, resnet34 encoder, random init)",
        loss="bce+dice", default=True,  # no paper fixes its training settings: crackseg's defaults
    )
    for key, cls in ARCHITECTURES.items():
        register(
            f"smp-{key}", _factory(key), params=SMPParams,
            description=f"segmentation-models-pytorch {cls}", loss="bce+dice",
        )
