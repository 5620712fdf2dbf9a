"""End to end: `crackseg run`, resume, predict, evaluate, bad input, a third-party plugin.

Commands run in this process (``run_main``) unless a test needs a process of its own:
an installed plugin (entry points), a signal, or the absence of torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO, make_plugin_site, run_cli, run_main

TINY = [
    "--data", "synthetic", "--device", "cpu", "--quiet",
    "--set", "data.n_train=6", "--set", "data.n_test=3", "--set", "data.size=64",
    "--set", "train.batch_size=2", "--set", "backbone.encoder=resnet18", "--set", "predict.overlays=2",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    r = run_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, r


def test_run_writes_a_complete_run_folder(tiny_run):
    out, r = tiny_run
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "results.md", "prf.tsv"):
        assert (out / name).is_file(), name
    import crackseg

    stems = [s.stem for s in crackseg.create_dataset("synthetic", n_train=6, n_test=3, size=64).samples("test")]
    assert sorted(p.stem for p in (out / "predictions").glob("*.png")) == sorted(stems) and len(stems) == 3
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert len(list((out / "labels").glob("*.png"))) == 6
    m = json.loads((out / "metrics.json").read_text())
    for k in ("ods", "ois", "ap"):
        assert 0.0 <= m[k] <= 1.0
    assert m["n"] == 3 and m["epochs_done"] == 1
    assert "| fsv | unet | synthetic |" in r.stdout  # the table is printed
    # nothing half-written is left behind
    assert not list(out.rglob("*.tmp*"))


def test_rerun_without_resume_is_refused(tiny_run):
    out, _ = tiny_run
    r = run_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--resume" in r.stderr


def test_resume_with_changed_config_is_refused(tiny_run):
    out, _ = tiny_run
    r = run_main("run", *TINY, "--set", "train.epochs=3", "--out", str(out), "--resume")
    assert r.returncode == 2 and "train.epochs" in r.stderr


def test_resume_of_finished_run_reproduces_metrics(tiny_run):
    out, _ = tiny_run
    before = json.loads((out / "metrics.json").read_text())
    r = run_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    after = json.loads((out / "metrics.json").read_text())
    assert after["ods"] == pytest.approx(before["ods"]) and after["ap"] == pytest.approx(before["ap"])


def test_evaluate_matches_run_metrics(tiny_run, tmp_path):
    out, _ = tiny_run
    import crackseg

    gt = tmp_path / "gt"
    ds = crackseg.create_dataset("synthetic", n_train=6, n_test=3, size=64)
    from crackseg.base.io import write_png

    for s in ds.samples("test"):
        write_png(gt / f"{s.stem}.png", s.mask())
    r = run_main("evaluate", str(out / "predictions"), str(gt), "--json", "--prf", str(tmp_path / "prf.tsv"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    m = json.loads((out / "metrics.json").read_text())
    assert got["ods"] == pytest.approx(m["ods"], abs=1e-12) and got["n"] == 3


def test_predict_large_photo_with_tiles(tiny_run, tmp_path):
    out, _ = tiny_run
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (300, 410, 3), dtype=np.uint8)
    from crackseg.base.io import write_png

    write_png(tmp_path / "in" / "photo.png", img)
    r = run_main("predict", str(out), str(tmp_path / "in"), "--out", str(tmp_path / "pred"), "--quiet")
    assert r.returncode == 0, r.stderr
    from crackseg.base.io import read_gray

    mask = read_gray(tmp_path / "pred" / "photo.png")
    prob = read_gray(tmp_path / "pred" / "prob" / "photo.png")
    assert mask.shape == (300, 410) and prob.shape == (300, 410)
    assert set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "pred" / "overlay" / "photo.png").is_file()


def test_predictor_tiles_equal_single_window_when_image_fits():
    import torch

    from crackseg.prediction.predictor import Predictor

    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = Predictor(model, 64, "cpu", mode="resize").predict_many([img])[0]
    b = Predictor(model, 64, "cpu", mode="tile").predict_many([img])[0]
    assert np.allclose(a, b, atol=1e-6)
    # a larger image is covered completely by overlapping tiles
    big = np.random.default_rng(2).integers(0, 255, (150, 130, 3), dtype=np.uint8)
    c = Predictor(model, 64, "cpu", mode="tile").predict_many([big])[0]
    with torch.no_grad():
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (torch.from_numpy(big).permute(2, 0, 1)[None].float() / 255 - mean) / std
        full = torch.sigmoid(model(x))[0, 0].numpy()
    inner = (slice(2, -2), slice(2, -2))  # a 3x3 conv only differs at tile borders (padding)
    assert c.shape == (150, 130)
    assert np.abs(c - full)[inner].mean() < 0.01


def test_interrupted_run_resumes(tmp_path):
    """Ctrl-C in the middle of training leaves a resumable checkpoint; --resume finishes the run.

    150 epochs of a two-layer CNN on 4 images take seconds, so the interruption always lands
    in the middle: the first checkpoint is asserted to be unfinished.
    """
    env = make_plugin_site(tmp_path / "site", "crackseg_tiny", THIRD_PARTY, "crackseg-tiny", entry_point="tiny")
    out = tmp_path / "run"
    args = ["run", "--backbone", "tiny", "--data", "synthetic", "--device", "cpu", "--quiet",
            "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=32",
            "--set", "train.batch_size=2", "--set", "train.epochs=150", "--set", "predict.overlays=0",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "crackseg", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoint.pt"
    history = out / "history.csv"  # an epoch is finished (its checkpoint may be held back: train.checkpoint_every_s)
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err, err
    import torch

    first = torch.load(ckpt, weights_only=True)
    assert not first["done"] and 1 <= first["epoch"] < 150  # interrupted in the middle
    assert not (out / "metrics.json").exists()
    r = run_cli(*args, "--resume", env=env)
    assert r.returncode == 0, r.stderr
    final = torch.load(ckpt, weights_only=True)
    assert final["epoch"] == 150 and final["done"]
    # the resumed run kept the history written before the interruption
    assert final["history"][: first["epoch"]] == first["history"]
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == 150


def test_bad_inputs_are_one_line_errors(tmp_path):
    # a missing data folder
    r = run_main("run", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o1"))
    assert r.returncode == 2 and "dataset folder not found" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # an unknown plugin name
    r = run_main("run", "--backbone", "unett", "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "did you mean 'unet'" in r.stderr
    # a bad --set value
    r = run_main("run", "--set", "train.epochs=many", "--out", str(tmp_path / "o3"))
    assert r.returncode == 2 and "train.epochs" in r.stderr
    # a corrupt image
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    from crackseg.base.io import write_png

    for i in range(4):
        write_png(root / "images" / f"ok{i}.png", np.full((32, 32, 3), 120, np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        mask[10:12, :] = 255
        write_png(root / "masks" / f"ok{i}.png", mask)
    (root / "images" / "ok0.png").write_bytes(b"not a png at all")
    r = run_main("run", "--data", str(root), "--device", "cpu", "--quiet", "--out", str(tmp_path / "o4"),
                "--set", "train.epochs=1", "--set", "backbone.encoder=resnet18", "--set", "data.test_fraction=0.5")
    assert r.returncode == 2, r.stderr
    assert "ok0.png" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_evaluate_does_not_import_torch(tmp_path):
    from crackseg.base.io import write_png

    for d in ("p", "g"):
        write_png(tmp_path / d / "a.png", np.zeros((8, 8), np.uint8))
    code = textwrap.dedent(f"""
        import sys
        from crackseg.cli import main
        try:
            main(["evaluate", {str(tmp_path / 'p')!r}, {str(tmp_path / 'g')!r}, "--json"])
        except SystemExit:
            pass
        print("TORCH" if "torch" in sys.modules else "NO-TORCH")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.strip().endswith("NO-TORCH"), r.stdout + r.stderr


def test_evaluate_names_missing_files(tmp_path):
    from crackseg.base.io import write_png

    write_png(tmp_path / "p" / "a.png", np.zeros((8, 8), np.uint8))
    write_png(tmp_path / "g" / "b.png", np.zeros((8, 8), np.uint8))
    r = run_main("evaluate", str(tmp_path / "p"), str(tmp_path / "g"))
    assert r.returncode == 2
    assert "have no prediction: b" in r.stderr and "have no ground truth: a" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


THIRD_PARTY = '''
from dataclasses import dataclass

import crackseg


@dataclass
class TinyParams:
    width: int = 4


def build_tiny(width):
    import torch

    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(width, 1, 3, padding=1))


class DarkLabeler:
    """Pixels darker than the image mean minus two standard deviations."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        import numpy as np
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            g = s.load_image().mean(axis=2)
            soft = np.clip((g.mean() - g) / (4 * g.std() + 1e-6), 0, 1).astype(np.float32)
            out.append(PseudoLabel(soft=soft, binary=g < g.mean() - 2 * g.std()))
        return out

    def fingerprint(self):
        return "dark-v1"


@crackseg.hookimpl
def register_backbones(register):
    register("tiny", build_tiny, params=TinyParams, description="two-layer CNN")


@crackseg.hookimpl
def register_labelers(register):
    register("dark", DarkLabeler, description="dark pixels")
'''


def test_third_party_plugin_works_in_run(tmp_path):
    env = make_plugin_site(tmp_path / "site", "crackseg_tiny", THIRD_PARTY, "crackseg-tiny", entry_point="tiny")
    r = run_cli("plugins", env=env)
    assert "tiny (crackseg-tiny 0.1.0)" in r.stdout and "labelers: dark" in r.stdout
    r = run_cli("run", "--labeler", "dark", "--backbone", "tiny", *TINY[:4], "--quiet",
                "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=48",
                "--set", "train.epochs=1", "--out", str(tmp_path / "run"), env=env)
    assert r.returncode == 0, r.stderr
    assert "| dark | tiny | synthetic |" in r.stdout


def test_cam_location_with_crackclip_end_to_end(tmp_path):
    """The paper's pipeline through the CLI, with a tiny random-init CLIP (no weights can be downloaded)."""
    tiny = {"embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 16, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    cfg = tmp_path / "tiny-clip.json"
    cfg.write_text(json.dumps(tiny))
    out = tmp_path / "run"
    r = run_main("run", "--labeler", "cam-location", "--backbone", "crackclip", "--prompts", "generic",
                "--data", "synthetic", "--device", "cpu", "--quiet", "--out", str(out),
                "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=64",
                "--set", f"backbone.model={cfg}", "--set", "backbone.image_size=64",
                "--set", "backbone.layers=[1,2,3,4]", "--set", "backbone.random_init=true",
                "--set", "labeler.classifier.arch=resnet18", "--set", "labeler.classifier.patch_size=32",
                "--set", "labeler.classifier.stride=32", "--set", "labeler.classifier.epochs=1",
                "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    assert "RANDOM weights" in r.stderr  # the loud warning
    assert "| cam-location | crackclip | synthetic |" in r.stdout and "random-init CLIP" in r.stdout
    ck = __import__("torch").load(out / "checkpoint.pt", weights_only=True)
    assert ck["model"] and all(k.startswith("adapters") for k in ck["model"])  # adapters only
    assert (out / "labeler" / "classifier" / "classifier.pt").is_file()
    assert len(list((out / "labels").glob("*.png"))) == 4


def test_missing_clip_weights_fail_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    r = run_main("run", "--backbone", "crackclip", "--out", str(out))
    assert r.returncode == 2 and "needs CLIP weights" in r.stderr
    assert not out.exists()  # nothing half-made: the next attempt needs no --resume


def test_predict_and_run_measure(tiny_run, tmp_path):
    """`predict --measure` measures the masks it wrote; `run --measure` measures a run's predictions."""
    pytest.importorskip("skan")
    out, _ = tiny_run
    import crackseg

    ds = crackseg.create_dataset("synthetic", n_train=1, n_test=2, size=64)
    from crackseg.base.io import write_png

    for s in ds.samples("test"):
        write_png(tmp_path / "in" / f"{s.stem}.png", s.load_image())
    r = run_main("predict", str(out), str(tmp_path / "in"), "--out", str(tmp_path / "pred"), "--quiet",
                 "--measure", "--px-per-mm", "2", "--min-area", "0", "--threshold", "0.0")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "pred" / "measurements" / "measurements.json").read_text())
    assert data["unit"] == "mm" and [i["image"] for i in data["images"]] == sorted(s.stem for s in ds.samples("test"))
    assert "cracks in 2 images" in r.stdout
    r = run_main("predict", str(out), str(tmp_path / "in"), "--out", str(tmp_path / "p2"), "--measure",
                 "--px-per-mm", "-1")
    assert r.returncode == 2 and "--px-per-mm" in r.stderr and not (tmp_path / "p2").exists()
    # run --measure on a finished run: the run is reused, its predictions are measured
    r = run_main("run", *TINY, "--set", "train.epochs=1", "--out", str(out), "--resume", "--measure")
    assert r.returncode == 0, r.stderr
    assert (out / "measurements" / "instances.csv").is_file()
