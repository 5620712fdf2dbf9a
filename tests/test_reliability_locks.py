"""One process at a time in a run folder, a label folder, a study; dead writers' temporaries removed; any OS.

A *holder* is a separate Python process that takes a target's lock the way a run does
(:func:`crackseg.base.locks.hold`) and keeps it until told to go: the command under test then
meets a busy target deterministically, without racing two trainings.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_main

TINY = [
    "--data", "synthetic", "--device", "cpu", "--quiet",
    "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=32",
    "--set", "train.batch_size=2", "--set", "train.epochs=1", "--set", "backbone.encoder=resnet18",
    "--set", "predict.overlays=0",
]

HOLDER = textwrap.dedent("""
    import sys, time
    from crackseg.base.locks import hold
    target, seconds = sys.argv[1], float(sys.argv[2])
    with hold(target, "a run"):
        print("held", flush=True)
        if seconds < 0:
            sys.stdin.readline()  # until the test closes stdin
        else:
            time.sleep(seconds)
""")


class Holder:
    """A process holding ``target``'s lock (until :meth:`release`, or for ``seconds``)."""

    def __init__(self, target: Path, seconds: float = -1):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), str(seconds)], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_into_a_folder_another_run_holds_is_refused_naming_it(tmp_path, resume):
    out = tmp_path / "runs" / "x"
    with Holder(out) as holder:
        r = run_main("run", *TINY, "--out", str(out), *(["--resume"] if resume else []))
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"PID {holder.pid}" in line and "a run is in progress" in line and "--wait" in line, line
    # the way out is never --resume (that would send the user into the concurrent case)
    assert "pass --resume" not in line
    assert not out.exists()  # nothing was written into the other run's folder


def test_wait_queues_behind_the_other_run_then_runs(tmp_path):
    out = tmp_path / "x"
    with Holder(out, seconds=2):
        r = run_main("run", *TINY, "--out", str(out), "--wait")
    assert r.returncode == 0, r.stderr
    assert "waiting for it to finish" in r.stderr
    assert (out / "metrics.json").is_file()
    # the lock's owner record went with the run; the lock file itself stays (tiny, hidden)
    assert not (tmp_path / ".x.lock.owner").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".x.lock"]


def test_two_real_runs_into_one_folder_never_mix(tmp_path):
    """The probe of the issue: seed 0 and seed 1 (another lr) into one folder at the same time.

    Whichever starts second is refused in one line (busy, or the folder already holds the
    finished run); the folder holds exactly the winner's config, history and metrics.
    """
    out = tmp_path / "x"
    cmds = [["run", *TINY, "--seed", "0", "--out", str(out)],
            ["run", *TINY, "--seed", "1", "--set", "train.lr=0.01", "--out", str(out)]]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-m", "crackseg", *c], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, e) for p, _, e in results]
    winner = 0 if results[0][0].returncode == 0 else 1
    loser_err = results[1 - winner][2]
    line = one_line(loser_err)
    assert "in progress" in line or "already holds a run" in line, line
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["seed"] == winner
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 1 and len(metrics["history"]) == 1
    assert "| synthetic |" in results[winner][1]  # the winner printed its table; the loser printed nothing
    assert results[1 - winner][1] == ""


def test_label_into_a_folder_another_label_holds_is_refused(tmp_path):
    out = tmp_path / "labels"
    args = ["label", "--labeler", "fsv", "--data", "synthetic", "--set", "data.n_train=3", "--set", "data.size=32",
            "--out", str(out), "--quiet"]
    with Holder(out) as holder:
        r = run_main(*args)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"PID {holder.pid}" in line and "--wait" in line and "--resume" not in line, line
    assert not out.exists()
    # free again: it labels
    r = run_main(*args)
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.png"))) == 3


def test_tune_on_a_study_another_tune_holds_is_refused(tmp_path):
    study = tmp_path / "s.db"
    args = ["tune", "--labeler", "ridge", "--data", "synthetic", "--set", "data.n_train=3", "--set",
            "data.size=48", "--annotated", "2", "--trials", "1", "--out", str(tmp_path / "t.yaml"),
            "--study", str(study), "--quiet"]
    pytest.importorskip("optuna")
    with Holder(study) as holder:
        r = run_main(*args)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"PID {holder.pid}" in line and "tuning study" in line and "--study" in line, line
    assert "corrupt" not in line
    assert not study.exists() and not (tmp_path / "t.yaml").exists()


def _temporaries(folder: Path) -> list[Path]:
    """Temporaries as :func:`crackseg.base.io.atomic_write` names them, as a kill -9 mid-write leaves them."""
    made = [folder / ".checkpoint.pt.k3_x9q2a.tmp.pt", folder / "labels" / ".keys" / ".a.key.0abcdefg.tmp.key",
            folder / ".metrics.json.zz9_zz9z.tmp.json"]
    for p in made:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * 1000)
    return made


def test_resume_removes_what_killed_writers_left_and_nothing_else(tmp_path):
    out = tmp_path / "x"
    r = run_main("run", *TINY, "--out", str(out))
    assert r.returncode == 0, r.stderr
    litter = _temporaries(out)
    keep = [out / ".notes.txt", out / "labels" / "my.tmp.png", out / ".a.b.tmp"]
    for p in keep:
        p.write_text("the user's")
    r = run_main("run", *TINY, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in litter)
    assert all(p.read_text() == "the user's" for p in keep)


def test_label_removes_dead_writers_temporaries(tmp_path):
    out = tmp_path / "labels"
    stale = out / ".keys" / ".s0.key.abcdefgh.tmp.key"
    stale.parent.mkdir(parents=True)
    stale.write_text("half")
    r = run_main("label", "--labeler", "fsv", "--data", "synthetic", "--set", "data.n_train=2", "--set",
                 "data.size=32", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert not stale.exists()


def test_a_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    from crackseg.base.errors import CracksegError
    from crackseg.base.locks import hold, is_held

    target = tmp_path / "t"
    with hold(target, "a run") as took:
        assert took and is_held(target)
        with hold(target, "a run") as again:  # a compare cell's run inside the cell's lock
            assert not again
        assert is_held(target)
        code = "from crackseg.base.locks import hold\nimport sys\nwith hold(sys.argv[1], 'a run'): pass"
        r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=REPO)
        assert r.returncode != 0 and "CracksegError" in r.stderr and f"PID {os.getpid()}" in r.stderr
    assert not is_held(target)
    with pytest.raises(CracksegError):  # and a failed acquisition leaves nothing held
        with Holder(target):
            with hold(target, "a run"):
                pass
    assert not is_held(target)


def test_the_core_imports_and_locks_without_fcntl(tmp_path):
    """Windows has no fcntl: the core must import and lock without it (filelock's fallback)."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["fcntl"] = None  # import fcntl now raises ImportError
        import crackseg
        from crackseg.base.locks import hold
        import crackseg.apps.runner, crackseg.apps.label, crackseg.apps.tune_setup, crackseg.cli
        with hold({str(tmp_path / 'x')!r}, "a run") as took:
            assert took
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


POSIX_ONLY = {"fcntl", "termios", "pwd", "grp", "resource", "posix"}


def test_no_posix_only_module_is_imported_by_crackseg_or_its_plugins():
    bad = []
    for root in ("crackseg", "plugins"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                bad += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in POSIX_ONLY]
    assert not bad


def test_help_of_run_label_tune_offers_wait():
    for cmd in ("run", "label", "tune"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "--wait" in r.stdout, cmd
