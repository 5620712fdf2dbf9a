"""Core built-in plugins checked with the public contract tests."""

from __future__ import annotations

import pytest
import torch

import crackseg
from conftest import require_pinned
from crackseg.testing import BackboneContract, LabelerContract, LossContract


class TestUnet(BackboneContract):
    name = "unet"
    params = {"encoder": "resnet18"}


class TestSmpFPN(BackboneContract):
    name = "smp-fpn"
    params = {"encoder": "resnet18"}


class TestFSV(LabelerContract):
    name = "fsv"


class TestBCE(LossContract):
    name = "bce"


class TestDice(LossContract):
    name = "dice"


class TestDiceSquared(LossContract):
    name = "dice"
    params = {"squared": True}


class TestFocal(LossContract):
    name = "focal"


class TestEdge(LossContract):
    name = "edge"
    prefers_the_label = False  # it rewards the 2-px band around the label boundary


def test_unet_resnet34_parameter_count():
    require_pinned("segmentation-models-pytorch")  # the count is the pinned smp release's
    m = crackseg.create_backbone("unet")
    assert sum(p.numel() for p in m.parameters()) == 24_436_369


def test_unknown_smp_encoder():
    with pytest.raises(crackseg.ConfigError, match="unknown smp encoder 'resnet35'; did you mean"):
        crackseg.create_backbone("unet", encoder="resnet35")


def test_fsv_returns_the_mask():
    from crackseg.testing import tiny_crack_samples

    s = tiny_crack_samples(1)[0]
    pl = crackseg.create_labeler("fsv").label([s], None)[0]
    assert (pl.binary == s.mask()).all()


def test_dice_plain_vs_squared():
    logits = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere
    y = torch.zeros(1, 1, 4, 4)
    y[..., :2, :] = 1
    plain = crackseg.create_loss("dice", smooth=0.0)(logits, y)
    squared = crackseg.create_loss("dice", squared=True, smooth=0.0)(logits, y)
    # plain: 2*4/(8+8) = .5 -> loss .5; squared: 2*4/(4+8) = 2/3 -> loss 1/3
    assert float(plain) == pytest.approx(0.5)
    assert float(squared) == pytest.approx(1 / 3)


def test_focal_matches_two_class_softmax_formula():
    logits = torch.tensor([[[[2.0, -1.0]]]])
    y = torch.tensor([[[[1.0, 0.0]]]])
    got = float(crackseg.create_loss("focal")(logits, y))
    p = torch.sigmoid(logits)[0, 0, 0]
    a, b = torch.stack([p[0], 1 - p[1]]), torch.stack([1 - p[0], p[1]])
    pt = a + 1e-5 - 1e-5 * a + 1e-5 * b
    want = float((-(1 - pt) ** 2 * torch.log(pt)).mean())
    assert got == pytest.approx(want, rel=1e-5)


def test_edge_loss_band_and_value():
    from crackseg_losses.impl import morphological_gradient

    y = torch.zeros(1, 1, 9, 9)
    y[..., 3:6, 3:6] = 1
    e = morphological_gradient(y)
    # 3x3 square: dilation 5x5 (25) minus erosion 1x1 (1) = 24 edge pixels
    assert int(e.sum()) == 24 and e[0, 0, 4, 4] == 0
    perfect = (e * 2 - 1) * 20
    assert float(crackseg.create_loss("edge")(perfect, y)) == pytest.approx(0.0, abs=1e-6)


def test_weighted_sum_parsing():
    from crackseg.training.losses import parse_terms

    assert parse_terms("focal+0.5*edge+2e-1*dice") == [(1.0, "focal"), (0.5, "edge"), (0.2, "dice")]
    with pytest.raises(crackseg.ConfigError, match="cannot parse term"):
        parse_terms("focal+*")
    loss = crackseg.create_loss("bce+2*dice")
    x, y = torch.randn(1, 1, 8, 8), (torch.rand(1, 1, 8, 8) > 0.5).float()
    want = crackseg.create_loss("bce")(x, y) + 2 * crackseg.create_loss("dice")(x, y)
    assert float(loss(x, y)) == pytest.approx(float(want), rel=1e-6)
