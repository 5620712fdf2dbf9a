"""U-Net as in Ronneberger, Fischer & Brox (MICCAI 2015), with padded convolutions.

Contracting path: four stages of two 3×3 conv + ReLU (64, 128, 256, 512
channels) each followed by 2×2 max-pooling, a 1024-channel bottleneck of two
3×3 convs, dropout at the end of the contracting path. Expanding path: 2×2
learned up-convolution halving the channels, concatenation with the encoder
map of the same scale, two 3×3 conv + ReLU. A 1×1 conv gives one crack logit.
No batch norm; Gaussian init with std √(2/N) (He). With ``base_channels=64``
and RGB input: 31,031,745 parameters.

Deviation from the paper: convolutions are padded ("same"), so no cropping of
the skip maps and no overlap-tile strategy; the output has the input's size.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import check_input, crop_outputs, load_pretrained, pad_to_multiple


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNetOriginal(nn.Module):
    """Ronneberger et al. 2015 U-Net (padded convolutions, one logit out)."""

    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)
    size_multiple = 16
    loss_weights = {"out": 1.0}

    def __init__(self, in_channels: int = 3, base_channels: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError("in_channels and base_channels must be >= 1 and dropout in [0, 1)")
        self.in_channels = in_channels
        c = [base_channels * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.down = nn.ModuleList([_double_conv(in_channels, c[0])] + [_double_conv(c[i], c[i + 1]) for i in range(3)])
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(c[3], c[4])
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.upconv = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in reversed(range(4))])
        self.up = nn.ModuleList([_double_conv(2 * c[i], c[i]) for i in reversed(range(4))])
        self.head = nn.Conv2d(c[0], 1, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def load_pretrained(self, path: str) -> None:
        """Initialise from a local state-dict file."""
        load_pretrained(self, path, "unet-original")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, "unet-original")
        x, size = pad_to_multiple(x, self.size_multiple)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips)):
            x = block(torch.cat([skip, upconv(x)], dim=1))
        return crop_outputs(self.head(x), size)
