"""DeepCrack1: Liu, Yao, Lu, Xie & Li, Neurocomputing 338 (2019), as in DeepSegmentor's ``DeepCrackNet``.

VGG16 body with batch norm: 13 × (3×3 conv without bias → BN → ReLU) in
stages of 2/2/3/3/3 convs with 64/128/256/512/512 channels, 2×2 max-pooling
between stages. A 1×1 conv (no bias) at the end of each stage gives a side
map; sides 2–5 are upsampled bilinearly (``align_corners=True``) to the input
size; a 1×1 conv (no bias) over the five side maps gives the fused map.
Xavier-normal init with gain 0.02, BN weights N(1, 0.02) (DeepSegmentor's
``init_net``). 14,720,389 parameters with ``base_channels=64``.

Returns ``{"side1", ..., "side5", "out"}`` logits, all ``[B,1,H,W]``.
Input normalised to [-1, 1] (mean 0.5, std 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_input, crop_outputs, load_pretrained, pad_to_multiple

#: convs per VGG16 stage
STAGES = (2, 2, 3, 3, 3)


def _stage(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        conv = nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False)
        layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(True)]
    return nn.Sequential(*layers)


class DeepCrackLiu(nn.Module):
    """DeepCrack (Liu et al. 2019): VGG16-BN with five side outputs and a fused map."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)
    size_multiple = 16
    output_names = ("side1", "side2", "side3", "side4", "side5", "out")
    loss_weights = {"side1": 0.5, "side2": 0.75, "side3": 1.0, "side4": 0.75, "side5": 0.5, "out": 1.0}

    def __init__(self, in_channels: int = 3, base_channels: int = 64) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1:
            raise ValueError("in_channels and base_channels must be >= 1")
        self.in_channels = in_channels
        b = base_channels
        widths = (b, 2 * b, 4 * b, 8 * b, 8 * b)
        cins = (in_channels,) + widths[:-1]
        self.stages = nn.ModuleList([_stage(ci, co, n) for ci, co, n in zip(cins, widths, STAGES)])
        self.sides = nn.ModuleList([nn.Conv2d(co, 1, 1, bias=False) for co in widths])
        self.fuse = nn.Conv2d(5, 1, 1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self._init_weights()

    def _init_weights(self, gain: float = 0.02) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, gain)
                nn.init.zeros_(m.bias)

    def vgg_encoder_layers(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 13 (conv, BN) pairs in VGG16 order (for loading torchvision VGG16-BN weights)."""
        out = []
        for stage in self.stages:
            mods = list(stage)
            out += [(mods[i], mods[i + 1]) for i in range(0, len(mods), 3)]
        return out

    def load_pretrained(self, path: str) -> None:
        """Initialise from a local DeepCrackLiu or torchvision VGG16(-BN) state dict."""
        load_pretrained(self, path, "deepcrack-liu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, "deepcrack-liu")
        x, size = pad_to_multiple(x, self.size_multiple)
        h, w = x.shape[-2:]
        sides = []
        for i, (stage, side) in enumerate(zip(self.stages, self.sides)):
            x = stage(x if i == 0 else self.pool(x))
            s = side(x)
            if i > 0:
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=True)
            sides.append(s)
        fused = self.fuse(torch.cat(sides, dim=1))
        return crop_outputs(dict(zip(self.output_names, sides + [fused])), size)
