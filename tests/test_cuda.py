"""CUDA checks: skipped on machines without a GPU (CI), run on the device machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import crackseg
from conftest import run_cli

#: why these tests skip on a machine without a GPU
NEEDS_CUDA = ("needs a CUDA GPU (torch.cuda.is_available() is False here): run pytest -m cuda tests/test_cuda.py "
              "on a machine with one and a CUDA build of torch")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)]


def test_run_on_cuda_with_mixed_precision(tmp_path):
    out = tmp_path / "run"
    r = run_cli("run", "--data", "synthetic", "--device", "cuda", "--precision", "16-mixed", "--quiet",
                "--set", "data.n_train=8", "--set", "data.n_test=4", "--set", "data.size=64",
                "--set", "train.epochs=2", "--set", "backbone.encoder=resnet18", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["ods"] <= 1 and m["n"] == 4
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in ck["model"].values())  # checkpoints are device-free


def test_predictions_agree_between_cpu_and_cuda(monkeypatch):
    from crackseg.prediction.predictor import Predictor

    # TF32 convolutions (cuDNN's default) round to ~1e-3; compare full fp32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)

    torch.manual_seed(0)
    model = crackseg.create_backbone("unet", encoder="resnet18").eval()
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    cpu = Predictor(model, 128, "cpu", mode="tile").predict_many([img])[0]
    gpu = Predictor(model, 128, "cuda", mode="tile").predict_many([img])[0]
    assert np.abs(cpu - gpu).max() < 1e-3


def test_gradcam_labeler_on_cuda_matches_cpu(tmp_path):
    from crackseg.labels.contract import LabelContext
    from crackseg.testing import tiny_crack_samples

    samples = tiny_crack_samples(3, 64)
    cfg = {"arch": "resnet18", "patch_size": 32, "stride": 32, "epochs": 1, "batch_size": 8}
    cpu_ctx = LabelContext(device="cpu", work_dir=tmp_path / "c", quiet=True)
    lab = crackseg.create_labeler("gradcam", classifier=cfg)
    lab.prepare(samples, cpu_ctx)
    a = lab.label(samples, cpu_ctx)
    gpu_ctx = LabelContext(device="cuda", work_dir=tmp_path / "c", quiet=True)
    lab2 = crackseg.create_labeler("gradcam", classifier=cfg)
    lab2.prepare(samples, gpu_ctx)  # loads the same classifier
    b = lab2.label(samples, gpu_ctx)
    for x, y in zip(a, b):
        assert np.abs(x.soft - y.soft).max() < 1e-2


def test_crackclip_tiny_on_cuda(tmp_path):
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    m = crackseg.create_backbone("crackclip", model=str(path), image_size=64, layers=[1, 2, 3, 4], random_init=True)
    x = torch.rand(2, 3, 64, 64)
    ref = m.eval()(x)["out"].detach()
    got = m.cuda()(x.cuda())["out"].detach().cpu()
    assert torch.allclose(ref, got, atol=1e-2)
