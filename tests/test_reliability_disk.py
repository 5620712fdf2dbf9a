"""A full disk, a used-up quota, a read-only or forbidden output folder: one line naming the file, exit 2.

Every command that writes is run in this process (``run_main``) with its writes refused the way the
kernel refuses them: for a full disk the writer really writes into ``/dev/full`` (a device that is
always full: ``open().write`` gets ENOSPC, ``torch.save`` its zip writer's RuntimeError), for a
read-only or forbidden folder ``mkdir`` and the temporary file of the atomic write fail with EROFS /
EACCES naming them, as ``mkdir`` and ``mkstemp`` do. No root, no real small file system needed.
Files written before the failure stay as they were; ``run --resume`` goes on once there is space.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_main

torch = pytest.importorskip("torch")

import crackseg  # noqa: E402
import crackseg.base.io as io_mod  # noqa: E402

DEV_FULL = Path("/dev/full")
#: why the full-disk tests skip where /dev/full is missing
NEEDS_DEV_FULL = ("needs /dev/full (Linux's always-full device, to fill the disk on purpose); "
                  "run these tests on Linux")
#: a small, fast run (the two-epoch one is the reference of the resume test)
RUN = [
    "--data", "synthetic", "--device", "cpu", "--quiet", "--backbone", "oed", "--set", "backbone.base_channels=8",
    "--set", "data.n_train=6", "--set", "data.n_test=3", "--set", "data.size=64", "--set", "train.batch_size=2",
    "--set", "train.epochs=2", "--set", "predict.overlays=0",
]
WORDS = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
         errno.EACCES: "permission denied"}


def refuse(monkeypatch: pytest.MonkeyPatch, code: int, root: Path,
           which: Callable[[Path], bool] = lambda dest: True) -> None:
    """Writes of files under ``root`` (those ``which`` picks) fail with ``code``, as the kernel fails them.

    ENOSPC: the writer writes into /dev/full. EROFS / EACCES: the temporary file cannot be made, and no
    folder under ``root`` can be made either (the error names them, as mkstemp's and mkdir's do).
    """
    real_write, real_mkdir = io_mod._replace_atomically, os.mkdir

    def inside(p: Path) -> bool:
        p = Path(os.path.abspath(p))
        return p == root or root in p.parents

    def atomic_write(path, writer):
        dest = Path(path)
        if not (inside(dest) and which(dest)):
            return real_write(path, writer)
        if code == errno.ENOSPC and DEV_FULL.exists():
            writer(str(DEV_FULL))
            raise AssertionError("a write into /dev/full went through")
        dest.parent.mkdir(parents=True, exist_ok=True)  # as atomic_write does first: a new folder is refused there
        raise OSError(code, os.strerror(code), str(dest.with_name(f".{dest.name}.k3x9q2b7.tmp{dest.suffix}")))

    def mkdir(path, mode=0o777, *args, **kwargs):
        if code != errno.ENOSPC and inside(Path(path)) and which(Path(path)) and not os.path.exists(path):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, mode, *args, **kwargs)

    monkeypatch.setattr(io_mod, "_replace_atomically", atomic_write)
    monkeypatch.setattr(os, "mkdir", mkdir)


def named(*parts: str) -> Callable[[Path], bool]:
    """Files whose path holds every one of ``parts`` (file or folder names)."""
    return lambda dest: all(p in dest.parts for p in parts)


def one_error_line(r, *words: str) -> str:
    """The command's one error line (exit 2, no traceback; other lines are warnings) holding ``words``."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("crackseg: error:")]
    assert len(errors) == 1 and all(line.startswith("crackseg: warning:") for line in lines if line not in errors), \
        r.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted two-epoch run: its folder and metrics."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    r = run_main("run", *RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture
def finished_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    return out


# -- the one place that recognises a refused write --------------------------------------------------
@pytest.mark.parametrize("exc, path, want", [
    (OSError(errno.ENOSPC, "No space left on device"), "/o/model.pt", "/o/model.pt: no space left on device"),
    (OSError(errno.ENOSPC, "No space left on device", "/o/.model.pt.ab12cd34.tmp.pt"), None,
     "/o/model.pt: no space left on device"),
    (OSError(errno.EROFS, "Read-only file system", "/o/.m.onnx.123.partial"), None, "/o/m.onnx: read-only"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/new"), "/ro/new/a.png", "/ro/new: read-only"),
    (OSError(errno.EACCES, "Permission denied", "/o/x"), None, "/o/x: permission denied"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), "/o/checkpoint.pt",
     "/o/checkpoint.pt: no space left on device"),
    (RuntimeError("[enforce fail at inline_container.cc:747] . open file failed with strerror: Read-only file "
                  "system"), "/o/c.pt", "/o/c.pt: read-only file system"),
    (RuntimeError("[enforce fail at inline_container.cc:747] . open file failed because of errno 13 on fopen: "
                  "Permission denied, file path: /o/c.pt"), "/o/c.pt", "/o/c.pt: permission denied"),
    (Exception("(sqlite3.OperationalError) database or disk is full\n[SQL: INSERT]"), "/o/s.db",
     "/o/s.db: no space left on device"),
    (Exception("(sqlite3.OperationalError) attempt to write a readonly database"), "/o/s.db",
     "/o/s.db: read-only database"),
])
def test_refused_writes_are_recognised(exc, path, want):
    from crackseg.base.errors import StorageError
    from crackseg.base.storage import storage_error

    got = storage_error(exc, path)
    assert isinstance(got, StorageError) and str(got).startswith(want), got
    assert got.exit_code == 2 and "\n" not in str(got)
    wrapped = ValueError("the exporter failed")
    wrapped.__cause__ = exc
    assert str(storage_error(wrapped, path)) == str(got)  # found where it was raised from, too


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOENT, "No such file or directory", "/o/x"), OSError(errno.EACCES, "Permission denied"),
    RuntimeError("CUDA out of memory"), RuntimeError("basic_ios::clear: iostream error"), ValueError("bad value"),
])
def test_other_errors_are_not_storage_errors(exc):
    from crackseg.base.storage import storage_error

    assert storage_error(exc, None) is None


@pytest.mark.skipif(not DEV_FULL.exists(), reason=NEEDS_DEV_FULL)
@pytest.mark.parametrize("n", [10, 100_000])  # torch's two ways to fail: its stream's error, a short write
def test_torch_save_into_a_full_disk_is_a_storage_error_and_keeps_the_old_file(tmp_path, n):
    from crackseg.base.errors import StorageError
    from crackseg.base.io import atomic_write

    dest = tmp_path / "model.pt"
    dest.write_bytes(b"the earlier model")
    with pytest.raises(StorageError, match=f"^{dest}: no space left on device; free some space and rerun$"):
        atomic_write(dest, lambda tmp: torch.save({"w": torch.zeros(n)}, str(DEV_FULL)))
    assert dest.read_bytes() == b"the earlier model" and sorted(tmp_path.iterdir()) == [dest]


def test_a_full_disk_in_a_plugins_code_is_not_the_plugins_fault():
    from crackseg.base.errors import PluginError, StorageError
    from crackseg.plugins.blame import blamed

    with pytest.raises(StorageError, match="^/o/x.png: no space left on device"):
        with blamed("backbones", "", "forward()"):
            raise OSError(errno.ENOSPC, "No space left on device", "/o/.x.png.ab12cd34.tmp.png")
    with pytest.raises(StorageError, match="^cannot write a file: no space left on device"):
        with blamed("trainers", "", "fit()"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    with pytest.raises(PluginError):  # a plugin's own bug still names it
        with blamed("trainers", "", "fit()"):
            raise RuntimeError("shapes do not match")


# -- crackseg run ----------------------------------------------------------------------------------
@pytest.mark.skipif(not DEV_FULL.exists(), reason=NEEDS_DEV_FULL)
def test_a_full_disk_at_a_checkpoint_then_resume_gives_the_uninterrupted_run(finished, tmp_path, monkeypatch):
    out = tmp_path / "run"
    writes = []

    def second_checkpoint(dest: Path) -> bool:  # the disk fills when epoch 2's checkpoint is written
        writes.append(dest.name) if dest.name == "checkpoint.pt" else None
        return dest.name == "checkpoint.pt" and len(writes) == 2

    with monkeypatch.context() as m:
        refuse(m, errno.ENOSPC, out, second_checkpoint)
        r = run_main("run", *RUN, "--set", "train.checkpoint_every_s=0", "--out", str(out))  # every epoch's
    line = one_error_line(r, f"{out / 'checkpoint.pt'}: no space left on device", "rerun with --resume")
    assert "trainer" not in line and "fit()" not in line and "inline_container" not in line
    first = torch.load(out / "checkpoint.pt", weights_only=True)  # epoch 1's checkpoint, intact
    assert first["epoch"] == 1 and not first["done"]
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists() and no_temporaries(out)
    # space freed: --resume finishes the run as if nothing had happened
    r = run_main("run", *RUN, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    straight, metrics = finished
    resumed = json.loads((out / "metrics.json").read_text())
    for key in ("ods", "ois", "ap", "ods_threshold", "epochs_done"):
        assert resumed.get(key) == pytest.approx(metrics.get(key), nan_ok=True), key
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert b["history"] == a["history"]  # the same losses, epoch by epoch
    assert all(torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-5) for k in a["model"])


@pytest.mark.parametrize("which, culprit", [
    (named("model.pt"), "model.pt"),
    (named("predictions"), "predictions/"),
    (named("metrics.json"), "metrics.json"),
])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_refused_output_of_a_run_is_one_line_and_keeps_the_earlier_file(finished_copy, monkeypatch, which,
                                                                           culprit, code):
    out = finished_copy
    before = snapshot(out)
    with monkeypatch.context() as m:
        refuse(m, code, out, which)
        r = run_main("run", *RUN, "--out", str(out), "--resume")  # a finished run: predicts and scores again
    line = one_error_line(r, f"{out}/{culprit}", WORDS[code])
    assert ("rerun with --resume" in line) == (code == errno.ENOSPC)
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before and which(out / k)} == \
        {k: v for k, v in before.items() if which(out / k)}  # the earlier files, byte for byte
    assert no_temporaries(out)


def test_a_full_disk_while_labelling_and_a_read_only_out_are_one_line(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        refuse(m, errno.ENOSPC, out, named("labels"))
        r = run_main("run", *RUN, "--out", str(out))
    one_error_line(r, f"{out}/labels/", "no space left on device")
    ro = tmp_path / "ro"
    ro.mkdir()
    with monkeypatch.context() as m:
        refuse(m, errno.EROFS, ro)
        r = run_main("run", *RUN, "--out", str(ro / "run"))
    one_error_line(r, f"{ro / 'run'}: read-only file system")


# -- the other commands ----------------------------------------------------------------------------------
def test_predict(finished, tmp_path, monkeypatch):
    run_dir, _ = finished
    photos = tmp_path / "photos"
    for s in crackseg.create_dataset("synthetic", n_train=1, n_test=2, size=64).samples("test"):
        crackseg.write_png(photos / f"{s.stem}.png", s.load_image())
    out = tmp_path / "pred"
    with monkeypatch.context() as m:
        refuse(m, errno.ENOSPC, out)
        r = run_main("predict", str(run_dir), str(photos), "--out", str(out), "--device", "cpu", "-q")
    one_error_line(r, f"{out}/", ".png: no space left on device")
    with monkeypatch.context() as m:
        refuse(m, errno.EROFS, tmp_path / "ro")
        r = run_main("predict", str(run_dir), str(photos), "--out", str(tmp_path / "ro" / "pred"), "-q")
    one_error_line(r, f"{tmp_path / 'ro'}", "read-only file system")


@pytest.mark.skipif(not DEV_FULL.exists(), reason=NEEDS_DEV_FULL)
def test_export_on_a_full_disk_is_no_export_failure(finished, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run_dir, _ = finished
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the earlier export")
    real_export = torch.onnx.export

    def into_a_full_disk(model, args, f, **kwargs):
        return real_export(model, args, str(DEV_FULL), **kwargs)

    monkeypatch.setattr(torch.onnx, "export", into_a_full_disk)
    r = run_main("export", str(run_dir), "--out", str(out))
    line = one_error_line(r, f"{out}: no space left on device")
    assert "cannot be exported" not in line
    assert out.read_bytes() == b"the earlier export" and sorted(tmp_path.iterdir()) == [out]


def test_export_into_a_read_only_folder(finished, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ro = tmp_path / "ro"
    refuse(monkeypatch, errno.EROFS, ro)
    r = run_main("export", str(finished[0]), "--out", str(ro / "model.onnx"))
    assert "cannot be exported" not in one_error_line(r, str(ro), "read-only file system")


@pytest.mark.parametrize("where, text, words", [
    ("load_study", "database or disk is full", "no space left on device"),
    ("create_study", "attempt to write a readonly database", "read-only database"),
])
def test_tune_study_on_a_full_or_read_only_disk(tmp_path, monkeypatch, where, text, words):
    optuna = pytest.importorskip("optuna")
    import sqlite3

    from sqlalchemy.exc import OperationalError

    real = getattr(optuna, where)

    def refused(*args, **kwargs):
        if where == "create_study":
            real(*args, **kwargs)  # the file exists; writing the study into it fails
        raise OperationalError("INSERT INTO studies ...", {}, sqlite3.OperationalError(text))

    def no_study_yet(*args, **kwargs):
        raise KeyError("no such study")

    if where == "load_study":
        monkeypatch.setattr(optuna, "load_study", refused)
    else:
        monkeypatch.setattr(optuna, "load_study", no_study_yet)
        monkeypatch.setattr(optuna, "create_study", refused)
    out = tmp_path / "tuned.yaml"
    r = run_main("tune", "--labeler", "ridge", "--data", "synthetic", "--set", "data.n_train=4",
                 "--set", "data.n_test=1", "--set", "data.size=48", "--annotated", "2", "--trials", "1",
                 "--out", str(out), "--device", "cpu", "--quiet")
    line = one_error_line(r, f"{out}.study.db: {words}")
    assert "--study NEW.db" not in line and not out.exists()


def test_label(tmp_path, monkeypatch):
    out = tmp_path / "labels"
    refuse(monkeypatch, errno.ENOSPC, out)
    r = run_main("label", "--labeler", "fsv", "--data", "synthetic", "--set", "data.n_train=2",
                 "--set", "data.size=48", "--out", str(out), "--device", "cpu", "--quiet")
    one_error_line(r, f"{out}/", "no space left on device")


def test_report_keeps_the_earlier_page(finished, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("the earlier page")
    refuse(monkeypatch, errno.EROFS, tmp_path, named("report.html"))
    r = run_main("report", str(finished[0]), "--out", str(out), "--gallery", "0", "--no-measure", "--quiet")
    one_error_line(r, f"{out}: read-only file system")
    assert out.read_text() == "the earlier page"


def test_measure(finished, tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    out = tmp_path / "m"
    refuse(monkeypatch, errno.ENOSPC, tmp_path)
    r = run_main("measure", str(finished[0]), "--out", str(out), "--quiet")
    one_error_line(r, f"{out}/", "no space left on device")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_new_plugin(tmp_path, monkeypatch, code):
    refuse(monkeypatch, code, tmp_path)
    r = run_main("new-plugin", "demo", "--out", str(tmp_path))
    one_error_line(r, f"{tmp_path / 'crackseg-demo'}", WORDS[code])


def test_compare(tmp_path, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text("""
name: tiny
shared:
  device: cpu
  data: {name: synthetic, n_train: 2, n_test: 2, size: 32}
tests:
  - {id: syn, label: Synthetic, run_test: true}
default_preset: small
presets:
  small: {caption: "tiny"}
tables:
  - id: main
    title: Main
    rows:
      - {id: a, label: A, labeler: fsv, backbone: oed}
""")
    runs = tmp_path / "runs"
    refuse(monkeypatch, errno.EROFS, runs)
    r = run_main("compare", str(grid), "--out", str(runs), "--quiet")
    one_error_line(r, str(runs), "read-only file system")


@pytest.mark.skipif(not DEV_FULL.exists(), reason=NEEDS_DEV_FULL)
def test_train_classifier(tmp_path, monkeypatch):
    commands = pytest.importorskip("crackseg_cam.commands")
    data = crackseg.create_dataset("synthetic", n_train=3, n_test=1, size=64)
    monkeypatch.setattr(commands, "resolve_dataset", lambda name: data)
    out = tmp_path / "clf"
    refuse(monkeypatch, errno.ENOSPC, out, named("classifier.pt"))
    r = run_main("train-classifier", "--data", "synthetic", "--out", str(out), "--arch", "resnet18", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--set", "classifier.patch_size=32", "--set", "stride=32",
                 "--set", "max_patches_per_epoch=8", "--set", "augment=none")
    line = one_error_line(r, f"{out / 'classifier.pt'}: no space left on device")
    assert "fit()" not in line and "plugin" not in line
