"""DeepCrack2: Zou, Zhang, Li, Qi, Wang & Wang, IEEE TIP 28 (2019), as in ``qinnzou/DeepCrack``.

SegNet-style encoder–decoder. Encoder: VGG16 convolutions (3×3 with bias,
ReLU, no batch norm) in stages [64,64] [128,128] [256×3] [512×3] [512×3], each
followed by 2×2 max-pooling that keeps its indices. Decoder: max-unpooling
with those indices, then convs 512-512-512, 512-512-256, 256-256-128,
128-64, 64-64. Five fuse modules: concatenate the encoder stage output (before
pooling) with the decoder output of the same scale, upsample bilinearly to the
input size (×16/8/4/2/1), 3×3 conv + ReLU to 64 channels, 3×3 conv to one
logit. A final 3×3 conv maps the five side logits to the fused map.
30,905,011 parameters with ``base_channels=64``. PyTorch default init.

Returns ``{"side1", ..., "side5", "out"}`` logits (``side1`` = full-resolution
fuse module, ``side5`` = deepest). Input RGB in [0, 1], no normalisation.
Memory-heavy: the deepest fuse module convolves 1024 channels at full size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_input, crop_outputs, load_pretrained, pad_to_multiple


def _conv_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


def _seq(widths: list[int]) -> nn.Sequential:
    """3×3 conv + ReLU layers through ``widths[0] → widths[1] → ...``."""
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += _conv_relu(cin, cout)
    return nn.Sequential(*layers)


class _Fuse(nn.Module):
    """Concat encoder + decoder maps → upsample to full size → ConvReLU(→fuse_ch) → conv(→1)."""

    def __init__(self, cin: int, fuse_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_relu(cin, fuse_channels))
        self.out = nn.Conv2d(fuse_channels, 1, 3, padding=1)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = torch.cat([enc, dec], dim=1)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out(self.conv(x))


class DeepCrackZou(nn.Module):
    """DeepCrack (Zou et al. 2019): SegNet encoder–decoder with five fuse modules."""

    input_mean = (0.0, 0.0, 0.0)
    input_std = (1.0, 1.0, 1.0)
    size_multiple = 32
    output_names = ("side1", "side2", "side3", "side4", "side5", "out")
    loss_weights = {"side1": 1.0, "side2": 1.0, "side3": 1.0, "side4": 1.0, "side5": 1.0, "out": 1.0}

    def __init__(self, in_channels: int = 3, base_channels: int = 64, fuse_channels: int = 64) -> None:
        super().__init__()
        if min(in_channels, base_channels, fuse_channels) < 1:
            raise ValueError("in_channels, base_channels and fuse_channels must be >= 1")
        self.in_channels = in_channels
        b = base_channels
        self.down = nn.ModuleList([
            _seq([in_channels, b, b]),
            _seq([b, 2 * b, 2 * b]),
            _seq([2 * b, 4 * b, 4 * b, 4 * b]),
            _seq([4 * b, 8 * b, 8 * b, 8 * b]),
            _seq([8 * b, 8 * b, 8 * b, 8 * b]),
        ])
        # decoder, shallowest first (up1 … up5)
        self.up = nn.ModuleList([
            _seq([b, b, b]),
            _seq([2 * b, 2 * b, b]),
            _seq([4 * b, 4 * b, 4 * b, 2 * b]),
            _seq([8 * b, 8 * b, 8 * b, 4 * b]),
            _seq([8 * b, 8 * b, 8 * b, 8 * b]),
        ])
        enc = (b, 2 * b, 4 * b, 8 * b, 8 * b)
        dec = (b, b, 2 * b, 4 * b, 8 * b)
        self.fuses = nn.ModuleList([_Fuse(e + d, fuse_channels) for e, d in zip(enc, dec)])
        self.final = nn.Conv2d(5, 1, 3, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)

    def vgg_encoder_layers(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """The 13 encoder convs in VGG16 order (for loading torchvision VGG16 weights)."""
        return [(m, None) for stage in self.down for m in stage if isinstance(m, nn.Conv2d)]

    def load_pretrained(self, path: str) -> None:
        """Initialise from a local DeepCrackZou or torchvision VGG16 state dict."""
        load_pretrained(self, path, "deepcrack-zou")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, "deepcrack-zou")
        x, size = pad_to_multiple(x, self.size_multiple)
        full = (int(x.shape[-2]), int(x.shape[-1]))
        enc, idx, shapes = [], [], []
        for stage in self.down:
            x = stage(x)
            enc.append(x)
            shapes.append(x.shape[-2:])
            x, i = self.pool(x)
            idx.append(i)
        dec: list[torch.Tensor] = [x] * 5
        for level in reversed(range(5)):
            x = self.unpool(x, idx[level], output_size=shapes[level])
            x = self.up[level](x)
            dec[level] = x
        sides = [fuse(e, d, full) for fuse, e, d in zip(self.fuses, enc, dec)]
        fused = self.final(torch.cat(sides[::-1], dim=1))  # reference order: fuse5 … fuse1
        return crop_outputs(dict(zip(self.output_names, sides + [fused])), size)
