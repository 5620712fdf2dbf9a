"""Baseline backbones (plugin ``crackseg_baselines``): counts, shapes, gradients, weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import crackseg
from crackseg.base.errors import ConfigError, CracksegError

torch.set_num_threads(1)

#: reference parameter counts (derived from the public code / the paper)
EXPECTED_PARAMS = {
    "unet-original": 31_031_745,
    "deepcrack-liu": 14_720_389,
    "deepcrack-zou": 30_905_011,
    "oed": 8_464_325,
}
NAMES = sorted(EXPECTED_PARAMS)
SIDE_NAMES = {"side1", "side2", "side3", "side4", "side5", "out"}
#: small variants for the gradient / round-trip tests
TINY = {
    "unet-original": {"base_channels": 4},
    "deepcrack-liu": {"base_channels": 4},
    "deepcrack-zou": {"base_channels": 4, "fuse_channels": 4},
    "oed": {"base_channels": 4},
}


def _maps(out) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else {"out": out}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_defaults(name: str) -> None:
    entry = crackseg.get_entry("backbones", name)
    assert entry.plugin == "baselines"
    train = entry.extras["train"]
    assert train["optimizer"] in ("adam", "sgd", "adamw")
    assert {"lr", "epochs", "batch_size", "image_size"} <= set(train)
    assert isinstance(entry.extras["loss"], str) and entry.extras["loss"]
    assert entry.param_defaults()["pretrained_weights"] is None


@pytest.mark.parametrize("name", NAMES)
def test_exact_parameter_count_and_forward_any_size(name: str) -> None:
    model = crackseg.create_backbone(name).eval()
    assert _n_params(model) == EXPECTED_PARAMS[name]
    with torch.no_grad():
        out = _maps(model(torch.randn(1, 3, 37, 53)))
    assert "out" in out
    for key, t in out.items():
        assert t.shape == (1, 1, 37, 53), key
        assert torch.isfinite(t).all(), key


def test_paper_specifics() -> None:
    assert crackseg.get_entry("backbones", "deepcrack-liu").extras["loss"] == "focal"
    assert crackseg.get_entry("backbones", "deepcrack-zou").extras["loss"] == "bce"
    m = crackseg.create_backbone("deepcrack-liu", base_channels=2)
    assert tuple(m.input_mean) == (.5, .5, .5) and tuple(m.input_std) == (.5, .5, .5)
    assert m.loss_weights == {"side1": .5, "side2": .75, "side3": 1.0, "side4": .75, "side5": .5, "out": 1.0}
    z = crackseg.create_backbone("deepcrack-zou", base_channels=2, fuse_channels=2)
    assert set(z.loss_weights) == SIDE_NAMES and all(w == 1.0 for w in z.loss_weights.values())
    assert tuple(z.input_mean) == (0, 0, 0) and tuple(z.input_std) == (1, 1, 1)
    # DeepCrack1: conv without bias everywhere (BN carries the shift)
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    # DeepCrack2: VGG convs with bias and no batch norm
    assert not any(isinstance(c, nn.BatchNorm2d) for c in z.modules())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(36, 52), (5, 7)])
def test_backward_finite_grads(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = crackseg.create_backbone(name, **TINY[name]).train()
    assert model.size_multiple in (16, 32)
    out = _maps(model(torch.randn(2, 3, *size)))
    for t in out.values():
        assert t.shape == (2, 1, *size)
    target = (torch.rand(2, 1, *size) > 0.8).float()
    loss = sum(nn.functional.binary_cross_entropy_with_logits(t, target) for t in out.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", ["deepcrack-liu", "deepcrack-zou"])
def test_named_side_outputs(name: str) -> None:
    model = crackseg.create_backbone(name, **TINY[name]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 33, 40))
    assert isinstance(out, dict) and set(out) == SIDE_NAMES
    assert set(out) == set(model.loss_weights)  # every output is weighted in the loss
    # the side maps are distinct maps, not copies of the fused one
    assert not torch.equal(out["side1"], out["out"])
    assert not torch.equal(out["side1"], out["side5"])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str, tmp_path) -> None:
    torch.manual_seed(1)
    a = crackseg.create_backbone(name, **TINY[name])
    # perturb BN statistics so that the round trip has to carry the buffers too
    a.train()
    with torch.no_grad():
        a(torch.randn(2, 3, 32, 32))
    a.eval()
    path = tmp_path / "w.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(2)
    fresh = crackseg.create_backbone(name, **TINY[name]).eval()
    b = crackseg.create_backbone(name, **TINY[name], pretrained_weights=str(path)).eval()
    c = crackseg.create_backbone(name, **TINY[name]).eval()
    c.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        oa, ob, oc, of = (_maps(m(x)) for m in (a, b, c, fresh))
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
        assert torch.equal(oa[k], oc[k]), k
    assert not torch.equal(oa["out"], of["out"])


def test_pretrained_weights_errors(tmp_path) -> None:
    with pytest.raises(CracksegError, match="does not exist"):
        crackseg.create_backbone("oed", base_channels=2, pretrained_weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CracksegError, match="cannot read"):
        crackseg.create_backbone("oed", base_channels=2, pretrained_weights=str(junk))
    other = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(CracksegError, match="no tensor"):
        crackseg.create_backbone("unet-original", base_channels=2, pretrained_weights=str(other))
    wide = tmp_path / "wide.pt"
    torch.save(crackseg.create_backbone("oed", base_channels=4).state_dict(), wide)
    with pytest.raises(CracksegError, match="base_channels"):
        crackseg.create_backbone("oed", base_channels=2, pretrained_weights=str(wide))


@pytest.mark.parametrize("name,bn", [("deepcrack-liu", True), ("deepcrack-zou", False)])
def test_vgg_weights_initialise_encoder(name: str, bn: bool, tmp_path) -> None:
    from torchvision.models.vgg import make_layers

    b = 4
    cfg = [b, b, "M", 2 * b, 2 * b, "M"] + [4 * b] * 3 + ["M"] + [8 * b] * 3 + ["M"] + [8 * b] * 3 + ["M"]
    vgg = nn.Module()
    vgg.features = make_layers(cfg, batch_norm=bn)
    torch.manual_seed(3)
    for p in vgg.parameters():
        nn.init.normal_(p)
    for mod in vgg.features:
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_()
    path = tmp_path / "vgg.pt"
    torch.save(vgg.state_dict(), path)
    params = {"base_channels": b, "fuse_channels": 4} if name == "deepcrack-zou" else {"base_channels": b}
    model = crackseg.create_backbone(name, **params, pretrained_weights=str(path))
    src = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    dst = [conv for conv, _ in model.vgg_encoder_layers()]
    assert len(src) == len(dst) == 13
    for s, d in zip(src, dst):
        assert torch.equal(s.weight, d.weight)
    if bn:
        src_bn = [m for m in vgg.features if isinstance(m, nn.BatchNorm2d)]
        conv0, bn0 = model.vgg_encoder_layers()[0]
        # the dropped conv bias is folded into the BN running mean
        assert torch.allclose(bn0.running_mean, src_bn[0].running_mean - src[0].bias)
        assert torch.equal(bn0.weight, src_bn[0].weight)


def test_bad_input_and_parameters() -> None:
    model = crackseg.create_backbone("oed", base_channels=2)
    with pytest.raises(CracksegError, match="input channels"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(CracksegError, match=r"\[B,3,H,W\]"):
        model(torch.randn(3, 16, 16))
    with pytest.raises(ConfigError, match="base_channels"):
        crackseg.create_backbone("deepcrack-zou", base_channels=0)
    with pytest.raises(ConfigError, match="dropout"):
        crackseg.create_backbone("unet-original", dropout=1.5)
    with pytest.raises(ConfigError, match="base_chanels|unknown"):
        crackseg.create_backbone("deepcrack-liu", base_chanels=8)


def test_oed_has_residual_blocks_and_attention_gates() -> None:
    from crackseg_baselines.oed import AttentionGate, ResidualBlock

    model = crackseg.create_backbone("oed", base_channels=4, depth=3).eval()
    assert model.size_multiple == 8
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 3
    assert sum(isinstance(m, ResidualBlock) for m in model.modules()) == 4 + 3
    x = torch.randn(1, 4, 16, 16)
    g = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        alpha = gates[-1].attention(x, g)
    assert alpha.shape == (1, 1, 16, 16)
    assert float(alpha.min()) > 0 and float(alpha.max()) < 1


def test_plugin_import_is_light() -> None:
    code = "import sys, crackseg_baselines; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


# -- generic backbone contracts (crackseg.testing) ----------------------------------
from crackseg.testing import BackboneContract  # noqa: E402


class TestUNetOriginalContract(BackboneContract):
    name = "unet-original"
    params = TINY["unet-original"]


class TestDeepCrackLiuContract(BackboneContract):
    name = "deepcrack-liu"
    params = TINY["deepcrack-liu"]


class TestDeepCrackZouContract(BackboneContract):
    name = "deepcrack-zou"
    params = TINY["deepcrack-zou"]


class TestOEDContract(BackboneContract):
    name = "oed"
    params = TINY["oed"]


@pytest.mark.parametrize("name", NAMES)
def test_config_file_resolves(name: str) -> None:
    from pathlib import Path

    from crackseg.config.layers import load_yaml
    from crackseg.config.run_config import resolve_config

    path = Path(__file__).resolve().parents[1] / "configs" / "backbones" / f"{name}.yaml"
    cfg = resolve_config([load_yaml(path), {"data": {"name": "synthetic"}}])
    entry = crackseg.get_entry("backbones", name)
    assert cfg.backbone["name"] == name
    assert cfg.loss == entry.extras["loss"]
    # the documented recipe repeats the model's own output weights
    assert cfg.loss_weights == dict(crackseg.create_backbone(name, **TINY[name]).loss_weights)
    for key, value in entry.extras["train"].items():
        assert getattr(cfg.train, key) == value, key
