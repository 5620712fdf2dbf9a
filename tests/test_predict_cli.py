"""`crackseg predict`: the run's ODS threshold by default, the weights-only model.pt, a progress bar in windows."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import run_main

torch = pytest.importorskip("torch")

import crackseg  # noqa: E402
from crackseg.base.errors import CracksegError  # noqa: E402
from crackseg.base.io import read_gray, write_png  # noqa: E402
from crackseg.base.maps import crack_mask  # noqa: E402
from crackseg.prediction.windows import WindowPredictor  # noqa: E402
from crackseg.training.checkpoints import CHECKPOINT_FILE, MODEL_FILE, TRAINING_STATE, find_checkpoint, write_model_file  # noqa: E402
from crackseg.training.factory import load_model  # noqa: E402

#: a small, fast run whose ODS threshold (0.61 with this seed) is not the default predict.threshold 0.5
RUN = [
    "--data", "synthetic", "--device", "cpu", "--quiet", "--backbone", "oed", "--set", "backbone.base_channels=8",
    "--set", "data.n_train=6", "--set", "data.n_test=3", "--set", "data.size=64", "--set", "train.batch_size=2",
    "--set", "train.epochs=1", "--set", "predict.overlays=0",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "oed"
    r = run_main("run", *RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The run's own test photos (their predictions are in the run folder) and one large photo that is tiled."""
    folder = tmp_path_factory.mktemp("photos")
    for s in crackseg.create_dataset("synthetic", n_train=6, n_test=3, size=64).samples("test"):
        write_png(folder / f"{s.stem}.png", s.load_image())
    write_png(folder / "large.png", np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    return folder


def masks_and_probs(out):
    stems = sorted(p.stem for p in out.glob("*.png"))
    return {s: (read_gray(out / f"{s}.png") > 0, read_gray(out / "prob" / f"{s}.png")) for s in stems}


def test_a_finished_run_keeps_its_weights_alone_in_model_pt(run_dir):
    model, ckpt = run_dir / MODEL_FILE, run_dir / CHECKPOINT_FILE
    assert model.is_file() and ckpt.is_file()
    assert model.stat().st_size <= ckpt.stat().st_size
    slim = torch.load(model, weights_only=True)
    full = torch.load(ckpt, weights_only=True)
    # a finished checkpoint keeps no optimizer state (nothing is left to resume); model.pt no training state at all
    assert full["done"] and full["optimizer"] is None and not set(TRAINING_STATE) & set(slim)
    assert slim["done"] and slim["step"] == full["step"] and slim["backbone"] == full["backbone"]
    assert all(torch.equal(slim["model"][k], full["model"][k]) for k in full["model"])
    assert find_checkpoint(run_dir) == model  # what predict / export / evaluate load
    load_model(run_dir)
    assert not list(run_dir.glob("*.tmp*")) and not list(run_dir.glob(".*partial"))


def test_predict_defaults_to_the_runs_ods_threshold(run_dir, photos, tmp_path):
    ods = json.loads((run_dir / "metrics.json").read_text())["ods_threshold"]
    assert ods != 0.5
    r = run_main("predict", str(run_dir), str(photos), "--out", str(tmp_path / "pred"), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == (f"threshold {ods:.2f} (the run's ODS threshold, metrics.json); "
                                        f"--threshold to change")
    got = masks_and_probs(tmp_path / "pred")
    assert len(got) == 4
    for stem, (mask, prob) in got.items():
        assert np.array_equal(mask, crack_mask(prob, ods)), stem
    assert any(not np.array_equal(mask, crack_mask(prob, 0.5)) for mask, prob in got.values())
    for stem, (_, prob) in got.items():  # the same model as the run's own predictions
        if stem != "large":
            ref = read_gray(run_dir / "predictions" / f"{stem}.png")
            assert np.abs(prob.astype(int) - ref.astype(int)).max() <= 1


def test_threshold_option_overrides_and_is_checked(run_dir, photos, tmp_path):
    r = run_main("predict", str(run_dir), str(photos), "--out", str(tmp_path / "pred"), "-q", "--threshold", "0.2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "threshold 0.20 (--threshold)"
    for stem, (mask, prob) in masks_and_probs(tmp_path / "pred").items():
        assert np.array_equal(mask, crack_mask(prob, 0.2)), stem
    r = run_main("predict", str(run_dir), str(photos), "--out", str(tmp_path / "bad"), "-q", "--threshold", "1.5")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--threshold 1.5" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_predict_from_model_pt_alone(run_dir, photos, tmp_path):
    """A bare model.pt uses its saved predict.threshold; a run folder without checkpoint.pt still predicts."""
    shutil.copy(run_dir / MODEL_FILE, tmp_path / "model.pt")
    r = run_main("predict", str(tmp_path / "model.pt"), str(photos), "--out", str(tmp_path / "pred"), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == ("threshold 0.50 (predict.threshold saved in the checkpoint); "
                                        "--threshold to change")
    for stem, (mask, prob) in masks_and_probs(tmp_path / "pred").items():
        assert np.array_equal(mask, crack_mask(prob, 0.5)), stem
    slim = tmp_path / "slim-run"
    slim.mkdir()
    for name in ("config.yaml", "metrics.json", MODEL_FILE):
        shutil.copy(run_dir / name, slim / name)
    r = run_main("predict", str(slim), str(photos), "--out", str(tmp_path / "pred2"), "-q")
    assert r.returncode == 0, r.stderr
    assert "the run's ODS threshold" in r.stdout.splitlines()[0]
    a, b = masks_and_probs(tmp_path / "pred"), masks_and_probs(tmp_path / "pred2")
    assert all(np.array_equal(a[s][1], b[s][1]) for s in a)  # same weights, same probabilities


def test_a_run_without_an_ods_threshold_falls_back_to_predict_threshold(run_dir, tmp_path):
    from crackseg.prediction.thresholds import choose_threshold

    slim = tmp_path / "run"
    slim.mkdir()
    assert choose_threshold(slim, None, {"threshold": 0.4})[0] == 0.4  # not evaluated yet
    (slim / "metrics.json").write_text(json.dumps({"ods": None, "ods_threshold": None}))
    t, why = choose_threshold(slim, None, {"threshold": 0.4})
    assert t == 0.4 and "no ODS threshold" in why
    (slim / "metrics.json").write_text("{not json")
    with pytest.raises(CracksegError, match="unreadable"):
        choose_threshold(slim, None, {})


def test_resume_of_a_finished_run_still_reads_checkpoint_pt(run_dir):
    before = json.loads((run_dir / "metrics.json").read_text())
    r = run_main("run", *RUN, "--out", str(run_dir), "--resume")
    assert r.returncode == 0, r.stderr
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["ods"] == pytest.approx(before["ods"]) and after["ods_threshold"] == before["ods_threshold"]
    assert "optimizer" in torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert find_checkpoint(run_dir) == run_dir / MODEL_FILE


def test_find_checkpoint_prefers_a_fresh_model_pt(tmp_path):
    ckpt = tmp_path / CHECKPOINT_FILE
    torch.save({"format": 2, "model": {"w": torch.zeros(3)}, "optimizer": {"state": {}}, "trainer": {}}, ckpt)
    assert find_checkpoint(tmp_path) == ckpt
    model = write_model_file(ckpt)
    assert model == tmp_path / MODEL_FILE and find_checkpoint(tmp_path) == model
    assert set(torch.load(model, weights_only=True)) == {"format", "model"}
    os.utime(ckpt, ns=(model.stat().st_mtime_ns + 10**9,) * 2)  # training went on after model.pt
    assert find_checkpoint(tmp_path) == ckpt
    ckpt.unlink()
    assert find_checkpoint(tmp_path) == model
    assert write_model_file(ckpt) is None
    model.unlink()
    with pytest.raises(CracksegError, match="no checkpoint found"):
        find_checkpoint(tmp_path)


class _Counting(WindowPredictor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = 0

    def forward_batch(self, batch):
        self.seen += len(batch)
        return np.zeros(batch.shape[:3], np.float32)


@pytest.mark.parametrize("mode", ["auto", "resize", "tile"])
def test_progress_counts_every_window(mode):
    images = [np.zeros(shape + (3,), np.uint8) for shape in [(50, 60), (64, 64), (200, 300), (130, 40), (500, 90)]]
    p = _Counting(64, batch_size=3, mode=mode, overlap=0.25)
    steps: list[int] = []
    probs = p.predict_many(images, progress=steps.append)
    assert [q.shape for q in probs] == [im.shape[:2] for im in images]
    expected = sum(p.window_count(im.shape[:2]) for im in images)
    assert sum(steps) == p.seen == expected
    assert max(steps) <= 3 and (expected > len(images)) == (mode != "resize")


def test_progress_bar_counts_windows_of_a_large_photo(run_dir, tmp_path):
    write_png(tmp_path / "in" / "large.png", np.zeros((200, 300, 3), np.uint8))
    r = run_main("predict", str(run_dir), str(tmp_path / "in"), "--out", str(tmp_path / "pred"))
    assert r.returncode == 0, r.stderr
    done = re.findall(r"(\d+)/(\d+) \[", r.stderr)
    assert done and done[-1][0] == done[-1][1] and int(done[-1][1]) > 1  # one photo, many windows
    assert "window" in r.stderr and "image 1/1" in r.stderr
    r = run_main("predict", str(run_dir), str(tmp_path / "in"), "--out", str(tmp_path / "q"), "-q")
    assert r.returncode == 0 and r.stderr == ""


def test_batch_size_option_sets_the_windows_per_forward_pass(run_dir, tmp_path, monkeypatch):
    """``--batch-size N``: at most N windows per forward pass (1: the least memory), the same masks."""
    from crackseg.prediction.predictor import Predictor

    sizes: list[int] = []
    original = Predictor.forward_batch

    def recording(self, batch):
        sizes.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(Predictor, "forward_batch", recording)
    write_png(tmp_path / "in" / "large.png", np.random.default_rng(1).integers(0, 256, (200, 300, 3), np.uint8))
    outs = {}
    for n in ("1", "3"):
        sizes.clear()
        outs[n] = tmp_path / f"b{n}"
        r = run_main("predict", str(run_dir), str(tmp_path / "in"), "--out", str(outs[n]), "--batch-size", n, "-q")
        assert r.returncode == 0, r.stderr
        assert max(sizes) == int(n) and len(sizes) > 3  # the photo is tiled into many windows
    one, three = masks_and_probs(outs["1"])["large"], masks_and_probs(outs["3"])["large"]
    assert np.abs(one[1].astype(int) - three[1].astype(int)).max() <= 1  # float rounding at most
    assert np.mean(one[0] != three[0]) < 1e-3
    r = run_main("predict", str(run_dir), str(tmp_path / "in"), "--out", str(tmp_path / "b0"), "--batch-size", "0")
    assert r.returncode == 2 and "--batch-size" in r.stderr and "Traceback" not in r.stderr
