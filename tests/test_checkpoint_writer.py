"""Checkpoints written in the background: a snapshot the training cannot change, one write at a time,
errors raised in the training thread, and kill -9 during a background write still resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import REPO, make_plugin_site, run_cli  # noqa: E402
from crackseg.training.checkpoints import CheckpointWriter, snapshot  # noqa: E402
from test_run import THIRD_PARTY  # noqa: E402


def test_a_snapshot_does_not_change_when_training_does():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    history = [{"epoch": 1}]
    payload = {"model": {"w": w.detach()}, "optimizer": opt.state_dict(), "history": history}
    frozen = snapshot(payload)
    before = (frozen["model"]["w"].clone(), frozen["optimizer"]["state"][0]["exp_avg"].clone())
    opt.step()  # moves w and the moments in place
    history.append({"epoch": 2})
    assert not torch.equal(w.detach(), before[0])
    assert torch.equal(frozen["model"]["w"], before[0])
    assert torch.equal(frozen["optimizer"]["state"][0]["exp_avg"], before[1])
    assert frozen["history"] == [{"epoch": 1}]


def test_writes_happen_in_the_background_one_at_a_time_and_in_order(tmp_path, monkeypatch):
    import crackseg.training.checkpoints as ck

    gate = threading.Event()
    order: list[int] = []
    real_save = ck._save

    def slow_save(path, payload):
        gate.wait(10)
        order.append(payload["epoch"])
        real_save(path, payload)

    monkeypatch.setattr(ck, "_save", slow_save)
    writer = CheckpointWriter()
    path = tmp_path / "checkpoint.pt"
    writer.write(path, {"epoch": 1, "w": torch.zeros(2)})
    assert writer.busy and not path.exists()  # write() returned while the save waits
    gate.set()
    writer.write(path, {"epoch": 2, "w": torch.ones(2)})  # waits for epoch 1 first
    writer.wait()
    assert order == [1, 2] and not writer.busy
    assert torch.load(path, weights_only=True)["epoch"] == 2


def test_a_failed_background_write_is_raised_by_the_next_call(tmp_path, monkeypatch):
    import crackseg.training.checkpoints as ck
    from crackseg.base.errors import StorageError

    def full(path, payload):
        raise StorageError(f"{path}: no space left on device; free some space and rerun", str(path), 28)

    monkeypatch.setattr(ck, "_save", full)
    writer = CheckpointWriter()
    writer.write(tmp_path / "c.pt", {"epoch": 1})
    with pytest.raises(StorageError, match="no space left"):
        writer.write(tmp_path / "c.pt", {"epoch": 2})
    writer.wait()  # reported once


SLOW_SECOND_WRITE = """
import sys, threading, time, torch
real = torch.save
def save(obj, f, *a, **k):
    real(obj, f, *a, **k)
    if isinstance(obj, dict) and obj.get("epoch") == 2 and threading.current_thread().name == "crackseg-checkpoint":
        print("SLOW-WRITE", file=sys.stderr, flush=True)
        time.sleep(600)  # killed in here: the temporary file is written, not yet renamed
torch.save = save
import crackseg
crackseg.main(sys.argv[1:])
"""


def test_kill_during_a_background_write_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    env = make_plugin_site(tmp_path / "site", "crackseg_tiny", THIRD_PARTY, "crackseg-tiny", entry_point="tiny")
    args = ["run", "--backbone", "tiny", "--data", "synthetic", "--device", "cpu",
            "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=32",
            "--set", "train.batch_size=2", "--set", "train.epochs=4", "--set", "predict.overlays=0",
            "--set", "train.checkpoint_every_s=0"]  # a checkpoint after every epoch: epoch 2's is the one killed
    whole = tmp_path / "whole"
    r = run_cli(*args, "--quiet", "--out", str(whole), env=env)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "killed"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SECOND_WRITE, *args, "--out", str(out)], cwd=REPO,
                                env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            text = log.read_text(errors="replace")
            if "SLOW-WRITE" in text and "epoch 2/4" in text:
                break
            time.sleep(0.05)
        text = log.read_text(errors="replace")
        assert proc.poll() is None, text
        # the epoch-2 line comes after write() returned: training went on while the file was being written
        assert "SLOW-WRITE" in text and "epoch 2/4" in text, text
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    temporaries = list(out.glob(".checkpoint.pt.*.tmp.pt"))
    assert temporaries, sorted(p.name for p in out.iterdir())  # what the kill left
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the previous one, whole

    r = run_cli(*args, "--quiet", "--out", str(out), "--resume", env=env)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in temporaries)
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, whole))
    for key in ("ods", "ois", "ap", "ods_threshold", "epochs_done"):
        assert got[key] == want[key], key
    assert [h["loss"] for h in got["history"]] == [h["loss"] for h in want["history"]]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 4 and ck["done"]


def test_the_last_checkpoint_is_on_disk_when_fit_returns(tmp_path):
    """model.pt is made from checkpoint.pt right after training: the final write is never left in flight."""
    env = make_plugin_site(tmp_path / "site", "crackseg_tiny", THIRD_PARTY, "crackseg-tiny", entry_point="tiny")
    out = tmp_path / "run"
    r = run_cli("run", "--backbone", "tiny", "--data", "synthetic", "--device", "cpu", "--quiet",
                "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=32",
                "--set", "train.batch_size=2", "--set", "train.epochs=3", "--set", "predict.overlays=0",
                "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    model = torch.load(out / "model.pt", weights_only=True)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["done"] and ckpt["epoch"] == 3 and model["epoch"] == 3
    assert all(torch.equal(model["model"][k], ckpt["model"][k]) for k in ckpt["model"])
    assert not list(Path(out).glob(".*.tmp*"))


def _engine(tmp_path, every_s):
    from crackseg.base.distributed import DistEnv
    from crackseg.training.engine import Engine, EngineSettings

    model = torch.nn.Linear(2, 1)
    return Engine(model, EngineSettings(device="cpu", env=DistEnv(), checkpoint_path=tmp_path / "checkpoint.pt",
                                        epochs=5, checkpoint_every_s=every_s, quiet=True)), model


def _train(engine, model, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in epochs:
        loss = model(torch.ones(4, 2)).pow(2).mean()
        engine.backward_step(loss, opt, images=4)
        engine.end_epoch(epoch, {"loss": float(loss.detach())}, opt)


def test_checkpoints_held_back_by_the_interval_are_written_when_training_stops(tmp_path, monkeypatch):
    """``train.checkpoint_every_s``: fast epochs are not each written; what stops training (the last epoch, the end
    of ``epochs(limit)``, Ctrl-C or an error: ``close()``) still finds the last finished epoch on disk."""
    import crackseg.training.checkpoints as ck

    written: list[int] = []
    real = ck._save
    monkeypatch.setattr(ck, "_save", lambda path, payload: (written.append(payload["epoch"]), real(path, payload)))
    path = tmp_path / "checkpoint.pt"

    engine, model = _engine(tmp_path, 3600)
    _train(engine, model, engine.epochs(limit=2))  # a trainer that trains 2 epochs now, more later
    assert written == [2] and torch.load(path, weights_only=True)["epoch"] == 2

    written.clear()
    path.unlink()
    engine, model = _engine(tmp_path, 3600)
    it = engine.epochs()
    _train(engine, model, (next(it) for _ in range(3)))  # 3 epochs, then Ctrl-C / an error in the 4th
    assert written == [] and not path.exists()  # held back: 3 fast epochs within the hour
    engine.close()  # what the runner's `finally` calls
    assert written == [3] and torch.load(path, weights_only=True)["epoch"] == 3

    written.clear()
    engine, model = _engine(tmp_path, 3600)
    _train(engine, model, engine.epochs())  # to the end: only the last epoch is written
    assert written == [5] and torch.load(path, weights_only=True)["done"]

    written.clear()
    engine, model = _engine(tmp_path, 0)  # 0: after every epoch
    _train(engine, model, engine.epochs())
    assert written == [1, 2, 3, 4, 5]


def test_a_resume_may_change_the_checkpoint_interval():
    from crackseg.config.run_config import diff_configs, resolve_config

    a = resolve_config([{"out": "x"}])
    b = resolve_config([{"out": "x", "train": {"checkpoint_every_s": 0, "num_workers": 0}}])
    c = resolve_config([{"out": "x", "train": {"lr": 0.5}}])
    assert diff_configs(a, b) == [] and diff_configs(a, c) == ["train.lr"]
