"""`crackseg predict` over a batch: a bad photo is listed and skipped (exit 3), --strict stops at it (exit 2),
--recursive mirrors sub-folders, and the one --out rule of predict and measure."""

from __future__ import annotations

import csv
import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import channel_mean_onnx, run_main

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import crackseg.base.io as io_mod  # noqa: E402
import crackseg.prediction.predict_folder as predict_folder  # noqa: E402
from crackseg.base.errors import PluginError  # noqa: E402
from crackseg.base.io import read_gray, write_png  # noqa: E402

BAD_READ = "cannot read image (corrupt or unsupported format)"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny ONNX model (the mean of the three channels) with crackseg's metadata: fast, no torch."""
    return channel_mean_onnx(tmp_path_factory.mktemp("model") / "m.onnx",
                             {"image_size": 32, "predict": {"threshold": 0.5}})


def photo(path: Path, seed: int, shape: tuple[int, int] = (40, 50)) -> Path:
    rng = np.random.default_rng(seed)
    if path.suffix == ".jpg":
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        path.write_bytes(buf.tobytes())
        return path
    return write_png(path, rng.integers(0, 256, (*shape, 3), dtype=np.uint8))


def bad_batch(folder: Path) -> tuple[list[str], list[Path]]:
    """Three good photos, one that is no JPEG at all and one cut short: (good stems, bad paths)."""
    photo(folder / "a.png", 0)
    photo(folder / "c.jpg", 1)
    photo(folder / "e.png", 2, (70, 90))  # several windows
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    whole = photo(folder / "tmp.jpg", 3).read_bytes()
    (folder / "tmp.jpg").unlink()
    (folder / "d.jpg").write_bytes(whole[: len(whole) // 2])  # its header reads; its pixels do not
    return ["a", "c", "e"], [folder / "b.jpg", folder / "d.jpg"]


def outputs(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def failures(out: Path) -> list[dict[str, str]]:
    with (out / "failures.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_corrupt_and_a_truncated_photo_do_not_stop_the_batch(model, tmp_path):
    good, bad = bad_batch(tmp_path / "photos")
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out))
    assert r.returncode == predict_folder.SOME_PHOTOS_FAILED == 3, r.stderr
    assert outputs(out) == sorted([f"{s}.png" for s in good] + [f"prob/{s}.png" for s in good]
                                  + [f"overlay/{s}.png" for s in good] + ["failures.csv", "predict.json"])
    assert failures(out) == [{"path": str(p), "reason": BAD_READ} for p in bad]
    err = r.stderr.splitlines()
    at = err.index(f"crackseg: error: 2 of 5 photos could not be read; the others were written "
                   f"(list: {out / 'failures.csv'}):")
    assert err[at + 1:] == [f"  {p}: {BAD_READ}" for p in bad]
    assert r.stdout.splitlines()[-1] == (f"wrote 3 masks to {out} (probabilities in {out / 'prob'}, overlays in "
                                         f"{out / 'overlay'}); 2 photos failed: {out / 'failures.csv'}")
    done = re.findall(r"(\d+)/(\d+) \[", r.stderr)  # the bar ends full, the failed photo's windows counted
    assert done and done[-1][0] == done[-1][1] and int(done[-1][1]) > 3
    marker = json.loads((out / "predict.json").read_text())
    assert marker["finished"] and (marker["written"], marker["failed"]) == (3, 2)
    # the good masks are the ones a batch without the bad photos gives
    for p in bad:
        p.unlink()
    clean = tmp_path / "clean"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(clean), "-q")
    assert r.returncode == 0, r.stderr
    for s in good:
        assert np.array_equal(read_gray(out / "prob" / f"{s}.png"), read_gray(clean / "prob" / f"{s}.png"))
    # a rerun into the same --out in which every photo is read removes failures.csv
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert not (out / "failures.csv").exists() and "failed" not in r.stdout
    assert json.loads((out / "predict.json").read_text())["failed"] == 0


def test_many_failures_are_summarised_and_all_listed_in_the_file(model, tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "zz.png", 0)
    for i in range(12):
        (photos / f"bad{i:02d}.jpg").write_bytes(b"")
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(photos), "--out", str(out), "-q")
    assert r.returncode == 3
    err = r.stderr.strip().splitlines()
    assert err[0].startswith("crackseg: error: 12 of 13 photos could not be read")
    assert len(err) == 12 and err[-1] == "  ... and 2 more"
    assert all(line.startswith(f"  {photos / 'bad'}") for line in err[1:11])
    assert [row["path"] for row in failures(out)] == [str(photos / f"bad{i:02d}.jpg") for i in range(12)]
    assert (out / "zz.png").is_file()


def test_a_batch_in_which_every_photo_fails_exits_3_and_can_be_rerun(model, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q")
    assert r.returncode == 3 and "1 of 1 photo could not be read (list:" in r.stderr
    assert r.stdout.splitlines()[-1].startswith("wrote 0 masks to")
    assert sorted(p.name for p in out.iterdir()) == ["failures.csv", "predict.json"]
    photo(tmp_path / "photos" / "x.jpg", 0)  # fixed
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q")
    assert r.returncode == 0 and (out / "x.png").is_file() and not (out / "failures.csv").exists()


def test_the_python_api_returns_what_was_written_and_what_failed(model, tmp_path):
    good, bad = bad_batch(tmp_path / "photos")
    res = predict_folder.predict_paths(model, [str(tmp_path / "photos")], tmp_path / "out", quiet=True)
    assert [p.name for p in res.written] == [f"{s}.png" for s in good]
    assert [p.stem for p in res.sources] == good
    assert [(f.path, f.reason) for f in res.failed] == [(p, BAD_READ) for p in bad]
    assert res.failures_file == tmp_path / "out" / "failures.csv"


@pytest.mark.parametrize("which", ["b.jpg", "d.jpg"])
def test_strict_stops_at_the_first_bad_photo(model, tmp_path, which):
    bad_batch(tmp_path / "photos")
    (tmp_path / "photos" / ({"b.jpg": "d.jpg", "d.jpg": "b.jpg"}[which])).unlink()  # one bad photo left
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q", "--strict")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"crackseg: error: {tmp_path / 'photos' / which}: {BAD_READ}"]
    assert not (out / "failures.csv").exists() and not (out / "e.png").exists()  # e comes after the bad one
    if which == "b.jpg":  # its header is unreadable: nothing is predicted at all, as before
        assert not out.exists()


def test_predict_help_documents_the_exit_statuses(tmp_path):
    r = run_main("predict", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "3 some photos could not be read (OUT/failures.csv); the others were written" in text
    assert "2 a mistake in the input: nothing predicted (with --strict: a bad photo)" in text
    assert "--recursive" in text and "--strict" in text


# -- sub-folders ---------------------------------------------------------------------------------------------
def nested(root: Path) -> dict[str, Path]:
    """Photos called ``a`` at three levels, plus one in a hidden folder (skipped)."""
    found = {rel: photo(root / rel, i) for i, rel in enumerate(["a.png", "s1/a.jpg", "s1/s2/a.png", "s3/a.png"])}
    photo(root / ".cache" / "h.png", 9)
    (root / "empty-sub").mkdir()
    return found


def test_recursive_mirrors_sub_folders_under_out(model, tmp_path):
    found = nested(tmp_path / "photos")
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q", "--recursive")
    assert r.returncode == 0, r.stderr
    expected = {Path(rel).with_suffix(".png").as_posix() for rel in found}
    masks = {o for o in outputs(out) if Path(o).parent.name not in ("prob", "overlay") and o.endswith(".png")}
    assert masks == expected
    assert r.stdout.splitlines()[-1] == f"wrote 4 masks to {out} and 3 sub-folders of it (each with its prob/ and " \
                                        f"overlay/)"
    for i, (rel, src) in enumerate(found.items()):  # each output is its own photo's: as predicting it alone
        alone = tmp_path / "alone" / str(i)
        assert run_main("predict", str(model), str(src), "--out", str(alone), "-q").returncode == 0
        sub = Path(rel).parent
        assert np.array_equal(read_gray(out / sub / "prob" / "a.png"), read_gray(alone / "prob" / "a.png")), rel
        assert (out / sub / "overlay" / "a.png").is_file()
    assert not (out / ".cache").exists() and not (out / "empty-sub").exists()
    # the output folder inside the input is not read as photos by a rerun, nor are other predict outputs
    inner = tmp_path / "photos" / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(inner), "-q", "--recursive")
    assert r.returncode == 0, r.stderr
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(inner), "-q", "--recursive")
    assert r.returncode == 0, r.stderr
    assert not (inner / "masks").exists() and "wrote 4 masks" in r.stdout
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "m3"), "-q", "--recursive")
    assert r.returncode == 0 and f"{inner}: an earlier crackseg predict output (predict.json); skipped" in r.stderr


def test_recursive_keeps_the_rules_that_still_apply(model, tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "s1" / "a.png", 0)
    photo(photos / "s1" / "a.jpg", 1)  # same folder, same name: refused, as in a flat folder
    r = run_main("predict", str(model), str(photos), "--out", str(tmp_path / "o"), "-q", "--recursive")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "share the stem 'a'" in r.stderr
    (photos / "s1" / "a.jpg").unlink()
    photo(photos / "s1" / "prob" / "x.png", 2)  # would mix with s1's probability maps
    r = run_main("predict", str(model), str(photos), "--out", str(tmp_path / "o"), "-q", "--recursive")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{photos / 's1' / 'prob'}: a sub-folder named like predict's own output folders" in r.stderr
    assert not (tmp_path / "o").exists()
    (photos / "s1" / "prob" / "x.png").unlink()
    photo(tmp_path / "more" / "s1" / "a.png", 3)  # two input folders with the same sub-folder and name
    r = run_main("predict", str(model), str(photos), str(tmp_path / "more"), "--out", str(tmp_path / "o"), "-q",
                 "--recursive")
    assert r.returncode == 2 and "share the name 'a'" in r.stderr and not (tmp_path / "o").exists()


def test_without_recursive_sub_folders_with_images_are_named_in_one_line(model, tmp_path):
    nested(tmp_path / "photos")
    out = tmp_path / "masks"
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [f"crackseg: warning: {tmp_path / 'photos'}: 2 sub-folders with images "
                                             f"ignored (s1, s3); pass --recursive to predict them too"]
    assert outputs(out) == ["a.png", "overlay/a.png", "predict.json", "prob/a.png"]
    r = run_main("predict", str(model), str(tmp_path / "photos" / "s1" / "s2"), "--out", str(tmp_path / "o2"), "-q")
    assert r.returncode == 0 and r.stderr == ""  # no sub-folders with images: nothing to say


# -- what is not the photo's fault still stops the batch -----------------------------------------------------
def test_a_full_disk_stops_the_batch(model, tmp_path, monkeypatch):
    bad_batch(tmp_path / "photos")
    out = tmp_path / "masks"
    real = io_mod._replace_atomically

    def full_at_c(path, writer):
        if Path(path) == out / "c.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, writer)

    monkeypatch.setattr(io_mod, "_replace_atomically", full_at_c)
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"crackseg: error: {out / 'c.png'}: no space left on device; free some "
                                             f"space and rerun"]
    assert (out / "a.png").is_file() and not (out / "e.png").exists() and not (out / "failures.csv").exists()


def test_a_plugin_or_model_error_stops_the_batch(model, tmp_path, monkeypatch):
    bad_batch(tmp_path / "photos")
    real = predict_folder.predict_one
    calls: list[Path] = []

    def broken_on_the_second(predictor, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise PluginError("backbone 'x' (plugin 'p', p 1.0) raised ValueError: boom")
        return real(predictor, path, *args, **kwargs)

    monkeypatch.setattr(predict_folder, "predict_one", broken_on_the_second)
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "masks"), "-q")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "crackseg: error: backbone 'x' (plugin 'p', p 1.0) raised ValueError: boom"]
    assert len(calls) == 2 and not (tmp_path / "masks" / "failures.csv").exists()
    calls.clear()

    def bug(predictor, path, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(predict_folder, "predict_one", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "masks2"), "-q")


# -- one --out rule for predict and measure ------------------------------------------------------------------
def test_predict_out_is_new_empty_or_its_own(model, tmp_path):
    photo(tmp_path / "photos" / "a.png", 0)
    args = ["predict", str(model), str(tmp_path / "photos"), "-q", "--out"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "b.png").write_bytes(b"keep me too")
    r = run_main(*args, str(mine))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"crackseg: error: --out {mine}: holds other files (b.png and 1 more), not an earlier crackseg predict output "
        f"(no predict.json); choose a new or empty folder"]
    assert sorted(p.name for p in mine.iterdir()) == ["b.png", "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"")  # hidden files do not count
    assert run_main(*args, str(empty)).returncode == 0 and (empty / "a.png").is_file()
    assert run_main(*args, str(empty)).returncode == 0  # its own earlier output
    legacy = tmp_path / "legacy"  # what predict wrote before it wrote predict.json
    for sub in ("", "prob/", "overlay/"):
        write_png(legacy / f"{sub}a.png", np.zeros((4, 4), np.uint8))
    assert run_main(*args, str(legacy)).returncode == 0 and (legacy / "predict.json").is_file()


def test_predict_measure_checks_its_measurements_folder_before_predicting(model, tmp_path):
    pytest.importorskip("skan")
    photo(tmp_path / "photos" / "a.png", 0)
    out = tmp_path / "masks"
    (out / "measurements").mkdir(parents=True)
    (out / "measurements" / "x.txt").write_text("mine")
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q", "--measure")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"--out {out / 'measurements'}: holds other files (x.txt)" in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == ["measurements", "x.txt"]


def test_predict_measure_reruns_and_measures_each_sub_folder(model, tmp_path):
    pytest.importorskip("skan")
    nested(tmp_path / "photos")
    (tmp_path / "photos" / "bad.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "masks"
    args = ["predict", str(model), str(tmp_path / "photos"), "--out", str(out), "-q", "--measure", "--threshold",
            "0.3", "--min-area", "0"]
    for _ in range(2):  # a rerun into the same --out replaces the measurements
        r = run_main(*args)
        assert r.returncode == 3, r.stderr
        assert f"wrote {out / 'measurements' / 'instances.csv'}" in r.stdout
        assert [i["image"] for i in json.loads((out / "measurements" / "measurements.json").read_text())["images"]] \
            == ["a"]
    r = run_main(*args, "--recursive")
    assert r.returncode == 3, r.stderr
    assert "in each of the 4 folders of masks under" in r.stdout
    for sub in ("", "s1", "s1/s2", "s3"):
        data = json.loads((out / sub / "measurements" / "measurements.json").read_text())
        assert [i["image"] for i in data["images"]] == ["a"], sub


def test_measure_out_is_new_empty_or_its_own(tmp_path):
    pytest.importorskip("skan")
    masks = tmp_path / "masks"
    m = np.zeros((32, 32), np.uint8)
    m[10:14, 4:28] = 255
    write_png(masks / "m.png", m)
    args = ["measure", str(masks), "-q", "--out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_main(*args, str(empty))
    assert r.returncode == 0, r.stderr
    assert (empty / "measurements.json").is_file()
    assert run_main(*args, str(empty)).returncode == 0  # its own earlier output is replaced
    for occupied, first in [(masks, "m.png"), (tmp_path / "photos", "a.jpg")]:
        occupied.mkdir(exist_ok=True)
        (occupied / first).touch()
        before = sorted(p.name for p in occupied.iterdir())
        r = run_main(*args, str(occupied))
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            f"crackseg: error: --out {occupied}: holds other files ({first}), not an earlier crackseg measure output "
            f"(no measurements.json); choose a new or empty folder"]
        assert sorted(p.name for p in occupied.iterdir()) == before
