"""Loss implementations (torch). See the package docstring.

Every loss takes an optional ``weight`` ([B,1,H,W], 0 = ignore the pixel): pixel losses
average ``weight · loss`` over all pixels (so a batch split over processes averages back to
the same number); dice and edge weight the sums they are made of.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Loss(torch.nn.Module):
    name = "loss"

    def extra_repr(self) -> str:
        return self.name


class BCELoss(_Loss):
    name = "bce"

    def __init__(self, pos_weight: float) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        pw = None if self.pos_weight == 1.0 else logits.new_tensor(self.pos_weight)
        if weight is None:
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        return (per_pixel * weight).mean()


class DiceLoss(_Loss):
    name = "dice"

    def __init__(self, squared: bool, smooth: float) -> None:
        super().__init__()
        self.squared, self.smooth = squared, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        p = torch.sigmoid(logits).flatten(1)
        y = target.flatten(1)
        if weight is not None:
            p, y = p * weight.flatten(1), y * weight.flatten(1)
        inter = (p * y).sum(1)
        if self.squared:
            denom = (p * p).sum(1) + (y * y).sum(1)
        else:
            denom = p.sum(1) + y.sum(1)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - dice.mean()


class FocalLoss(_Loss):
    """The authors' FocalLoss on the two-class softmax [1−p, p], p = sigmoid(logit).

    One-hot clamped to [1e-5, 1−1e-5]; pt = Σ onehot·probs + 1e-5;
    loss = −α_c (1−pt)^γ log pt, mean over pixels.
    """

    name = "focal"

    def __init__(self, gamma: float, alpha: float | None) -> None:
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        p1 = torch.sigmoid(logits.float())
        y = target.float()
        eps = 1e-5
        oh1 = y.clamp(eps, 1 - eps)
        oh0 = (1 - y).clamp(eps, 1 - eps)
        pt = oh0 * (1 - p1) + oh1 * p1 + eps
        loss = -((1 - pt) ** self.gamma) * torch.log(pt)
        if self.alpha is not None:
            loss = loss * (self.alpha * y + (1 - self.alpha) * (1 - y))
        if weight is not None:
            loss = loss * weight
        return loss.mean()


def morphological_gradient(label: torch.Tensor) -> torch.Tensor:
    """3×3 dilation − 3×3 erosion of a binary ``[B,1,H,W]`` label (cv2 semantics at the borders)."""
    dil = F.max_pool2d(label, 3, stride=1, padding=1)
    # cv2.erode treats the border as +inf (no erosion from outside the image)
    ero = -F.max_pool2d(F.pad(-label, (1, 1, 1, 1), value=-1.0), 3, stride=1)
    return (dil - ero).clamp_(0, 1)


class EdgeLoss(_Loss):
    name = "edge"

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            edge = morphological_gradient(target.float())
            if weight is not None:
                edge = edge * weight
        p = torch.sigmoid(logits.float())
        num = (p * edge).flatten(1).sum(1)
        den = edge.flatten(1).sum(1) + 1e-8
        return (1 - self.alpha * num / den).mean()


def bce_loss(pos_weight: float) -> BCELoss:
    return BCELoss(pos_weight)


def dice_loss(squared: bool, smooth: float) -> DiceLoss:
    return DiceLoss(squared, smooth)


def focal_loss(gamma: float, alpha: float | None) -> FocalLoss:
    return FocalLoss(gamma, alpha)


def edge_loss(alpha: float) -> EdgeLoss:
    return EdgeLoss(alpha)
