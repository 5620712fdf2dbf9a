"""torch.distributed on CPU (gloo, 2 processes): same results as one process, resume across sizes, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_plugin_site, run_cli

pytestmark = pytest.mark.distributed

PLUGIN = '''
import os
from dataclasses import dataclass

import crackseg


@dataclass
class TinyParams:
    width: int = 4


def build(width):
    import torch

    class Tiny(torch.nn.Module):
        """No batch norm: per-process statistics would make 1 vs N processes differ."""

        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, width, 3, padding=1)
            self.b = torch.nn.Conv2d(width, 1, 3, padding=1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            die = os.environ.get("TINY_DIE_RANK")
            if self.training and die is not None and os.environ.get("RANK") == die and self.calls == 2:
                os._exit(3)  # simulate a crashed worker
            return self.b(torch.relu(self.a(x)))

    return Tiny()


class DarkSoft:
    """Darkness as a soft map: a labeler whose maps have a confidence band (for cac)."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        import numpy as np
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            g = s.load_image().mean(axis=2)
            soft = np.clip((g.mean() - g) / (3 * g.std() + 1e-6), 0, 1).astype(np.float32)
            out.append(PseudoLabel(soft=soft, binary=soft > 0.5))
        return out

    def fingerprint(self):
        return "dark-soft-v1"


@crackseg.hookimpl
def register_labelers(register):
    register("dist-soft", DarkSoft, description="test labeler")


@crackseg.hookimpl
def register_backbones(register):
    register("dist-tiny", build, params=TinyParams, description="test backbone",
             train={"optimizer": "sgd", "lr": 0.5, "momentum": 0.0, "epochs": 2, "batch_size": 4})
'''

ARGS = ["--backbone", "dist-tiny", "--data", "synthetic", "--device", "cpu", "--quiet", "--loss", "bce+dice",
        "--set", "data.n_train=8", "--set", "data.n_test=4", "--set", "data.size=32"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = make_plugin_site(tmp_path_factory.mktemp("site"), "crackseg_disttiny", PLUGIN)
    return {**e, "CRACKSEG_DIST_TIMEOUT": "60"}


def torchrun(nproc: int, args: list[str], env: dict[str, str], timeout: int = 300):
    """``torchrun --standalone`` on this checkout; on failure ``stderr`` starts with each rank's own stderr."""
    with tempfile.TemporaryDirectory() as logs:
        r = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
             "--log-dir", logs, "--tee", "2", "-m", "crackseg", *args],
            capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, timeout=timeout,
        )
        if r.returncode:  # torchrun's own report buries the ranks' messages: put them first
            ranks = sorted(Path(logs).glob("**/attempt_*/*/stderr.log"))
            r.stderr = "".join(f"--- rank {p.parent.name} stderr (tail) ---\n{p.read_text()[-1500:]}\n"
                               for p in ranks) + "--- torchrun ---\n" + r.stderr[-600:]
    return r


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, env):
    base = tmp_path_factory.mktemp("dist")
    r1 = run_cli("run", *ARGS, "--out", str(base / "one"), env=env)
    assert r1.returncode == 0, r1.stderr
    r2 = torchrun(2, ["run", *ARGS, "--out", str(base / "two")], env)
    assert r2.returncode == 0, r2.stderr
    return base / "one", base / "two"


def test_two_processes_train_the_same_weights_as_one(one_and_two):
    one, two = one_and_two
    a = torch.load(one / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(two / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        # same global batch -> same gradients up to float summation order
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    # training really happened (the comparison is not vacuous), and the logged
    # losses, averaged over all ranks, agree
    h1 = json.loads((one / "metrics.json").read_text())["history"]
    h2 = json.loads((two / "metrics.json").read_text())["history"]
    assert len(h1) == len(h2) == 2 and h1[-1]["loss"] < h1[0]["loss"]
    for e1, e2 in zip(h1, h2):
        assert e2["loss"] == pytest.approx(e1["loss"], rel=1e-4)


def test_metrics_are_computed_once_over_all_images(one_and_two):
    one, two = one_and_two
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert m1["n"] == m2["n"] == 4
    assert m2["ods"] == pytest.approx(m1["ods"], abs=1e-3)


def test_sharded_prediction_writes_what_one_process_writes(one_and_two, env, tmp_path):
    _, two = one_and_two
    # re-predict the 2-process run with 1 process (a finished run only predicts again)
    single = tmp_path / "single"
    import shutil

    shutil.copytree(two, single)
    shutil.rmtree(single / "predictions")
    r = run_cli("run", *ARGS, "--out", str(single), "--resume", env=env)
    assert r.returncode == 0, r.stderr
    names2 = sorted(p.name for p in (two / "predictions").glob("*.png"))
    names1 = sorted(p.name for p in (single / "predictions").glob("*.png"))
    assert names1 == names2 and len(names1) == 4
    for n in names1:
        assert (two / "predictions" / n).read_bytes() == (single / "predictions" / n).read_bytes(), n
    m2 = json.loads((two / "metrics.json").read_text())
    m1 = json.loads((single / "metrics.json").read_text())
    for k in ("ods", "ois", "ap", "n"):
        assert m1[k] == m2[k], k


def test_two_process_checkpoint_resumes_on_one(env, tmp_path):
    out = tmp_path / "run"
    args = ["run", *ARGS, "--set", "train.epochs=6", "--set", "data.n_train=32", "--out", str(out),
            "--set", "train.checkpoint_every_s=0"]  # a checkpoint after every epoch: the kill lands mid-run
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "crackseg", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env}, cwd=REPO,
        start_new_session=True,
    )
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert ckpt.exists()
    first = torch.load(ckpt, weights_only=True)
    r = run_cli(*args, "--resume", env=env)
    assert r.returncode == 0, r.stderr
    final = torch.load(ckpt, weights_only=True)
    assert final["epoch"] == 6 and final["done"]
    assert final["history"][: first["epoch"]] == first["history"]


def test_cac_on_two_processes_equals_one(env, tmp_path):
    """The co-training step (virtual step, look-ahead, label maps) on 2 gloo processes = 1 process."""
    args = ["run", *ARGS, "--labeler", "dist-soft", "--trainer", "cac", "--set", "train.epochs=2",
            "--set", "train.lr=0.05", "--set", "train.image_size=32", "--set", "train.augment=[]"]
    r1 = run_cli(*args, "--out", str(tmp_path / "one"), env=env)
    assert r1.returncode == 0, r1.stderr
    r2 = torchrun(2, [*args, "--out", str(tmp_path / "two")], env)
    assert r2.returncode == 0, r2.stderr
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert a["trainer"] == b["trainer"] == {"maps_epoch": 2}
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k
    first = [h["loss"] for h in a["history"]]
    assert [h["loss"] for h in b["history"]] == pytest.approx(first, rel=1e-4)
    from crackseg.base.io import read_gray

    maps = sorted((tmp_path / "one" / "trainer" / "maps" / "e002").glob("*.png"))
    assert len(maps) == 8
    for m in maps:  # the refined labels, written by both ranks, agree with one process's
        other = read_gray(tmp_path / "two" / "trainer" / "maps" / "e002" / m.name)
        assert np.abs(read_gray(m).astype(int) - other.astype(int)).max() <= 1, m.name


def test_killed_rank_gives_a_clear_error(env, tmp_path):
    t0 = time.time()
    r = run_cli("run", *ARGS, "--nproc", "2", "--out", str(tmp_path / "dead"), env={**env, "TINY_DIE_RANK": "1"},
                timeout=240)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("crackseg: error: 2-process run failed") and "--resume" in last
    assert time.time() - t0 < 200


def test_patch_classifier_trains_data_parallel(env, tmp_path):
    """`train-classifier` under torchrun: DDP over 2 ranks, rank 0 writes the checkpoint and metrics."""
    out = tmp_path / "clf"
    r = torchrun(2, ["train-classifier", "--data", "synthetic", "--out", str(out), "--arch", "resnet18",
                     "--epochs", "1", "--device", "cpu", "--quiet", "--set", "classifier.patch_size=32",
                     "--set", "classifier.stride=32", "--set", "classifier.batch_size=8",
                     "--set", "classifier.max_patches_per_epoch=64"], env)
    assert r.returncode == 0, r.stderr
    assert (out / "classifier.pt").is_file()
    metrics = json.loads((out / "classifier.metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1"} <= set(metrics)
    assert r.stdout.count("classifier:") == 1  # one report, from rank 0


def test_run_with_cam_labeler_on_two_processes(env, tmp_path):
    out = tmp_path / "run"
    r = torchrun(2, ["run", *ARGS, "--labeler", "gradcam", "--out", str(out), "--set", "train.epochs=1",
                     "--set", "labeler.classifier.arch=resnet18", "--set", "labeler.classifier.patch_size=32",
                     "--set", "labeler.classifier.stride=32", "--set", "labeler.classifier.epochs=1",
                     "--set", "labeler.classifier.max_patches_per_epoch=64"], env)
    assert r.returncode == 0, r.stderr
    assert len(list((out / "labels").glob("*.png"))) == 8
    assert json.loads((out / "metrics.json").read_text())["n"] == 4


def test_a_worker_ends_with_its_status_after_the_exit_handlers(tmp_path):
    """end_worker: exit handlers run and output is flushed first, then the status is the process's."""
    script = (
        "import atexit, sys\n"
        "from crackseg.base.distributed import end_worker\n"
        f"atexit.register(lambda: open({str(tmp_path / 'handler-ran')!r}, 'w').write('yes'))\n"
        "sys.stdout.write('unflushed line')\n"
        "end_worker(3)\n"
        "print('not reached')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 3
    assert r.stdout == "unflushed line"
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_the_cli_ends_a_worker_that_joined_a_process_group_through_end_worker(monkeypatch, capsys):
    """A user error in a torchrun worker still gives its one line and status 2, through end_worker."""
    from crackseg import cli

    ended: list[int] = []

    def fake_end(status: int):
        ended.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(cli, "joined_a_process_group", lambda: True)
    monkeypatch.setattr(cli, "end_worker", fake_end)
    with pytest.raises(SystemExit):
        cli.main(["run", "--backbone", "no-such-backbone", "--data", "synthetic"])
    assert ended == [2]
    assert capsys.readouterr().err.startswith("crackseg: error:")
    ended.clear()
    with pytest.raises(SystemExit):
        cli.main(["plugins", "--json"])
    assert ended == [0]
