"""OED: an approximation of König, Jenkins, Barrie, Mannion & Morison (ICIP 2019).

"A convolutional neural network for pavement surface crack segmentation using
residual connections and attention gating". **No public code exists** for
this network; it is rebuilt here from the paper-level description (a fully
convolutional U-Net with residual connections inside the convolution blocks
and attention gates between encoder and decoder). Layer widths, depth,
normalisation and the exact gate form are this implementation's choices and
are unverified against the original:

* encoder: ``depth + 1`` residual blocks (3×3 conv-BN-ReLU, 3×3 conv-BN, plus
  identity or 1×1 conv-BN shortcut, ReLU) with ``base_channels × 2^i``
  channels (32 … 512 by default), 2×2 max-pooling between them;
* decoder: 2×2 transposed conv halving the channels, an Oktay et al. (2018)
  additive attention gate on the skip (the coarser decoder map is the gating
  signal: θ = 2×2/stride-2 conv of the skip, φ = 1×1 conv of the gate,
  ψ = sigmoid(1×1 conv(ReLU(θ + φ))), upsampled and multiplied with the skip,
  then a 1×1 conv-BN), concatenation, a residual block;
* a 1×1 conv to one logit.

With the defaults (``base_channels=32``, ``depth=4``, RGB) it has 8,464,325
parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_input, crop_outputs, load_pretrained, pad_to_multiple


class ResidualBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual (identity or 1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = (
            nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): weights the skip map ``x`` by a gate ``g`` at half resolution."""

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(x_channels, inter_channels, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(g_channels, inter_channels, 1)
        self.psi = nn.Conv2d(inter_channels, 1, 1)
        self.out = nn.Sequential(nn.Conv2d(x_channels, x_channels, 1), nn.BatchNorm2d(x_channels))

    def attention(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The attention coefficients ``[B,1,H,W]`` in (0, 1) at the skip's resolution."""
        theta = self.theta(x)
        phi = self.phi(g)
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(self.attention(x, g) * x)


class OED(nn.Module):
    """Residual U-Net with attention-gated skips (approximation of König et al., ICIP 2019)."""

    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)
    loss_weights = {"out": 1.0}

    def __init__(self, in_channels: int = 3, base_channels: int = 32, depth: int = 4) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or not 1 <= depth <= 6:
            raise ValueError("in_channels and base_channels must be >= 1 and depth in 1..6")
        self.in_channels = in_channels
        self.size_multiple = 2**depth
        c = [base_channels * 2**i for i in range(depth + 1)]
        blocks = [ResidualBlock(in_channels, c[0])] + [ResidualBlock(c[i], c[i + 1]) for i in range(depth)]
        self.encoder = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        levels = list(reversed(range(depth)))
        self.upconv = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in levels])
        self.gates = nn.ModuleList([AttentionGate(c[i], c[i + 1], max(c[i] // 2, 1)) for i in levels])
        self.decoder = nn.ModuleList([ResidualBlock(2 * c[i], c[i]) for i in levels])
        self.head = nn.Conv2d(c[0], 1, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def load_pretrained(self, path: str) -> None:
        """Initialise from a local OED state dict."""
        load_pretrained(self, path, "oed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, "oed")
        x, size = pad_to_multiple(x, self.size_multiple)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upconv, gate, block, skip in zip(self.upconv, self.gates, self.decoder, reversed(skips)):
            x = block(torch.cat([gate(skip, x), upconv(x)], dim=1))
        return crop_outputs(self.head(x), size)
