"""Reliability odds and ends (issue 26, items 6 and 7): plugins that exit, tampered ONNX metadata, 0/1 masks,
widths at the image border, pickled code, non-UTF-8 file names, empty folders, interruptions, unsaid warnings,
OpenCV's own log lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import channel_mean_onnx, make_plugin_site, run_cli, run_main
from crackseg.base.io import read_mask, write_png


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _masks_and_preds(root: Path, zero_one: bool) -> tuple[Path, Path]:
    """Two 32x32 ground-truth masks (0/1 or 0/255) with a crack band and predictions that find it."""
    gt, pred = root / ("gt01" if zero_one else "gt255"), root / "pred"
    for i in range(2):
        m = np.zeros((32, 32), np.uint8)
        m[10 + i : 14 + i, :] = 1 if zero_one else 255
        write_png(gt / f"{i}.png", m)
        p = (np.random.default_rng(i).random((32, 32)) * 100).astype(np.uint8)
        p[10 + i : 14 + i, :] = 230
        write_png(pred / f"{i}.png", p)
    return gt, pred


# -- 1. a plugin that calls sys.exit() -----------------------------------------------------------------
EXITS_IN_HOOK = '''
import crackseg


@crackseg.hookimpl
def register_losses(register):
    raise SystemExit(5)
'''


@pytest.fixture(scope="module")
def quitting_plugins(tmp_path_factory):
    site = tmp_path_factory.mktemp("quitters")
    make_plugin_site(site, "crackseg_quitter", "import sys\nsys.exit(3)\n", "crackseg-quitter", "1.0")
    make_plugin_site(site, "crackseg_hookquit", EXITS_IN_HOOK, "crackseg-hookquit", "2.0")
    return {"PYTHONPATH": str(site)}


def test_a_plugin_calling_sys_exit_is_one_warning_and_silences_nothing(quitting_plugins, tmp_path):
    r = run_cli("list", "losses", env=quitting_plugins)
    assert r.returncode == 0, r.stderr
    assert "focal" in r.stdout and "bce" in r.stdout
    at_import = [line for line in _lines(r.stderr) if "crackseg_quitter" in line]
    in_hook = [line for line in _lines(r.stderr) if "crackseg_hookquit" in line]
    assert len(at_import) == 1 and "crackseg-quitter 1.0" in at_import[0] and "sys.exit(3)" in at_import[0]
    assert at_import[0].startswith("crackseg: warning: ")
    assert len(in_hook) == 1 and "register_losses" in in_hook[0] and "sys.exit(5)" in in_hook[0]
    assert "Traceback" not in r.stderr

    gt, pred = _masks_and_preds(tmp_path, zero_one=False)
    r = run_cli("evaluate", str(pred), str(gt), "--json", env=quitting_plugins)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 2


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(monkeypatch):
    from importlib import metadata

    from crackseg.plugins.manager import PluginManager

    class _EP:
        name, dist = "ctrl-c", None

        def load(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(metadata, "entry_points", lambda group: [_EP()])
    with pytest.raises(KeyboardInterrupt):
        PluginManager().load_entry_points()


# -- 2a. tampered ONNX metadata ------------------------------------------------------------------------
GOOD_META = {"image_size": 32, "predict": {"threshold": 0.5, "mode": "auto", "tile_overlap": 0.25}}


@pytest.mark.parametrize(("meta", "key"), [
    ({**GOOD_META, "image_size": 0}, "'image_size'"),
    ({**GOOD_META, "image_size": "big"}, "'image_size'"),
    ({"predict": {"threshold": 0.5}}, "'image_size' is missing"),
    ({**GOOD_META, "predict": {"threshold": "abc"}}, "'predict.threshold'"),
    ({**GOOD_META, "predict": {"mode": "zoom"}}, "'predict.mode'"),
    ({**GOOD_META, "predict": {"batch_size": 0}}, "'predict.batch_size'"),
    ({**GOOD_META, "predict": "x"}, "'predict'"),
    ([1, 2], "not a JSON object"),
    ("{not json", "not JSON"),
])
def test_tampered_onnx_metadata_is_one_line_naming_the_file_and_key(meta, key, tmp_path):
    pytest.importorskip("onnxruntime")
    model = channel_mean_onnx(tmp_path / "m.onnx", meta)
    write_png(tmp_path / "photos" / "a.png", np.full((40, 40, 3), 90, np.uint8))
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "-q")
    assert r.returncode == 2, r.stderr
    assert _lines(r.stderr) == [r.stderr.strip()] and r.stderr.startswith("crackseg: error: ")
    assert str(model) in r.stderr and key in r.stderr


def test_untampered_onnx_metadata_predicts(tmp_path):
    pytest.importorskip("onnxruntime")
    model = channel_mean_onnx(tmp_path / "m.onnx", GOOD_META)
    write_png(tmp_path / "photos" / "a.png", np.full((40, 40, 3), 90, np.uint8))
    r = run_main("predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "a.png").is_file()


# -- 2b. one mask rule: 0/1 masks are crack where 1 --------------------------------------------------------
def test_read_mask_reads_zero_one_masks_as_crack_where_one(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[2:4] = 1
    write_png(tmp_path / "m01.png", m)
    write_png(tmp_path / "m255.png", m * 255)
    assert read_mask(tmp_path / "m01.png").sum() == 16
    assert np.array_equal(read_mask(tmp_path / "m01.png"), read_mask(tmp_path / "m255.png"))
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "m16.png"), m.astype(np.uint16))  # a 16-bit 0/1 mask
    assert np.array_equal(read_mask(tmp_path / "m16.png"), m == 1)
    grey = np.full((8, 8), 100, np.uint8)
    grey[0, 0] = 1
    write_png(tmp_path / "grey.png", grey)  # other values: > 127, as before
    assert not read_mask(tmp_path / "grey.png").any()


def test_evaluate_and_measure_agree_on_zero_one_masks(tmp_path):
    gt01, pred = _masks_and_preds(tmp_path, zero_one=True)
    gt255, _ = _masks_and_preds(tmp_path, zero_one=False)
    r01 = run_main("evaluate", str(pred), str(gt01), "--json")
    r255 = run_main("evaluate", str(pred), str(gt255), "--json")
    assert r01.returncode == 0 and r255.returncode == 0, r01.stderr + r255.stderr
    assert json.loads(r01.stdout) == json.loads(r255.stdout)
    assert json.loads(r01.stdout)["ods"] is not None and r01.stderr == ""

    from crackseg.evaluation.metrics import MetricAccumulator  # the Python API: the same rule

    a, b = MetricAccumulator(), MetricAccumulator()
    gt = np.zeros((8, 8), np.uint8)
    gt[3] = 1
    a.add("x", np.eye(8, dtype=np.uint8) * 200, gt)
    b.add("x", np.eye(8, dtype=np.uint8) * 200, gt.astype(bool))
    assert a.result().ods == b.result().ods

    pytest.importorskip("skan")
    from crackseg.apps.measure import binary_mask

    assert np.array_equal(binary_mask(gt01 / "0.png", None), read_mask(gt01 / "0.png"))
    assert binary_mask(gt01 / "0.png", None).sum() == 4 * 32


def test_folder_dataset_reads_zero_one_masks(tmp_path):
    import crackseg

    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", np.full((16, 16, 3), 80, np.uint8))
        m = np.zeros((16, 16), np.uint8)
        m[5:7] = 1
        write_png(tmp_path / "masks" / f"{i}.png", m)
    ds = crackseg.create_dataset("folder", root=str(tmp_path))
    assert all(s.mask().sum() == 32 for s in ds.samples("all"))


def test_evaluate_over_empty_masks_says_so(tmp_path):
    _, pred = _masks_and_preds(tmp_path, zero_one=False)
    for i in range(2):
        write_png(tmp_path / "empty" / f"{i}.png", np.zeros((32, 32), np.uint8))
    r = run_main("evaluate", str(pred), str(tmp_path / "empty"))
    assert r.returncode == 0
    warnings = _lines(r.stderr)
    assert len(warnings) == 1 and warnings[0].startswith("crackseg: warning: every ground-truth mask is empty")


# -- 2c. widths at the image border -------------------------------------------------------------------------
def test_widths_never_exceed_the_image():
    pytest.importorskip("skan")
    from crackseg.apps.measure import measure_mask

    instances, _ = measure_mask(np.ones((64, 64), bool))
    assert instances and all(i.width_max <= 64 and i.width_mean <= 64 for i in instances)
    band = np.zeros((64, 64), bool)
    band[28:36] = True
    (inst,), _ = measure_mask(band)
    assert abs(inst.width_mean - 8) <= 1 and abs(inst.length - 64) <= 2
    edge = np.zeros((64, 64), bool)
    edge[:8] = True  # a band along the border reads as wide as one inside
    (inst,), _ = measure_mask(edge)
    assert abs(inst.width_mean - 8) <= 1


# -- 2d. a checkpoint holding code ---------------------------------------------------------------------------
class Payload:
    """Anything torch.load(weights_only=True) refuses: a pickled object of a custom class."""

    def __init__(self) -> None:
        self.x = 1


def test_a_pickled_object_is_refused_in_one_line_without_pytorchs_advice(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": 2, "kind": "segmentation", "model": Payload()}, ckpt)
    write_png(tmp_path / "photos" / "a.png", np.full((16, 16, 3), 90, np.uint8))
    r = run_main("predict", str(ckpt), str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "-q")
    assert r.returncode == 2
    assert _lines(r.stderr) == [r.stderr.strip()]
    assert str(ckpt) in r.stderr and "holds code" in r.stderr and "Payload" in r.stderr
    assert "written by crackseg or plain weights" in r.stderr
    assert "weights_only" not in r.stderr and "Re-running" not in r.stderr


# -- 2e. file names that are not UTF-8 ------------------------------------------------------------------------
def _bad_name(i: int) -> str:
    return os.fsdecode(b"crack" + bytes([0xF0 + i]) + b"\xff")


needs_bytes_names = pytest.mark.skipif(os.name != "posix", reason="non-UTF-8 file names are a POSIX thing")


@needs_bytes_names
def test_measure_handles_non_utf8_file_names(tmp_path):
    pytest.importorskip("skan")
    masks = tmp_path / "masks"
    for i in range(2):
        m = np.zeros((32, 32), np.uint8)
        m[10:14] = 255
        write_png(masks / f"{_bad_name(i)}.png", m)
    r = run_main("measure", str(masks), "--out", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "out" / "images.csv").read_bytes().splitlines()
    assert len(rows) == 3 and rows[1].startswith(os.fsencode(_bad_name(0)))  # the name's own bytes
    data = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert data


@needs_bytes_names
def test_run_handles_non_utf8_file_names(tmp_path):
    pytest.importorskip("torch")
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(5):
        img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        m = np.zeros((64, 64), np.uint8)
        m[30:34] = 255
        img[m > 0] = 0
        write_png(root / "images" / f"{_bad_name(i)}.png", img)
        write_png(root / "masks" / f"{_bad_name(i)}.png", m)
    out = tmp_path / "run"
    r = run_main("run", "--data", str(root), "--device", "cpu", "--quiet", "--out", str(out),
                 "--set", "train.epochs=1", "--set", "train.batch_size=2", "--set", "train.image_size=64",
                 "--set", "backbone.encoder=resnet18", "--set", "predict.overlays=1")
    assert r.returncode == 0, r.stderr
    predicted = list((out / "predictions").iterdir())
    assert predicted and all(p.stem in {_bad_name(i) for i in range(5)} for p in predicted)


# -- 2f. a folder without images -----------------------------------------------------------------------
def test_a_folder_without_images_names_itself_the_formats_and_what_it_found(tmp_path):
    gifs = tmp_path / "gifs"
    gifs.mkdir()
    for n in "abc":
        (gifs / f"{n}.gif").write_bytes(b"GIF89a")
    r = run_main("predict", str(tmp_path / "model.onnx"), str(gifs), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert _lines(r.stderr) == [f"crackseg: error: {gifs}: no images to predict (read: .jpg .jpeg .png .bmp .tif "
                                f".tiff .webp; found 3 other files, e.g. a.gif)"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_main("predict", str(tmp_path / "model.onnx"), str(empty), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and f"{empty}: no images to predict" in r.stderr and "empty" in r.stderr
    pytest.importorskip("skan")
    r = run_main("measure", str(gifs), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and f"{gifs}: no mask images to measure" in r.stderr and "a.gif" in r.stderr
    r = run_main("evaluate", str(gifs), str(gifs))
    assert r.returncode == 2 and "a.gif" in r.stderr and ".png" in r.stderr


# -- 2g. Ctrl-C ----------------------------------------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_label_does_not_suggest_a_resume_it_lacks(monkeypatch, tmp_path):
    import crackseg.apps.label

    monkeypatch.setattr(crackseg.apps.label, "label_split", _interrupt)
    r = run_main("label", "--labeler", "fsv", "--data", "synthetic", "--out", str(tmp_path / "labels"))
    assert r.returncode == 130
    assert _lines(r.stderr) == ["crackseg: interrupted"]


def test_interrupted_run_suggests_resume(monkeypatch):
    import crackseg.cli

    monkeypatch.setattr(crackseg.cli, "command_run_config", _interrupt)
    r = run_main("run", "--quiet")
    assert r.returncode == 130
    assert _lines(r.stderr) == ["crackseg: interrupted (continue with --resume)"]


# -- 2h. a warning stored in metrics.json is also printed ------------------------------------------------------
def test_a_run_without_test_images_says_so(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    r = run_main("run", "--data", "synthetic", "--device", "cpu", "--quiet", "--out", str(out),
                 "--set", "data.n_train=4", "--set", "data.n_test=0", "--set", "data.size=64",
                 "--set", "train.batch_size=2", "--set", "backbone.encoder=resnet18", "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["warning"] and metrics["warning"] in metrics["warnings"]
    assert f"crackseg: warning: {metrics['warning']}" in _lines(r.stderr)
    assert "test split is empty" in metrics["warning"]


# -- 2i. OpenCV's own log lines ----------------------------------------------------------------------------------
def test_a_truncated_png_is_exactly_one_line_on_stderr(tmp_path):
    gt, pred = _masks_and_preds(tmp_path, zero_one=False)
    whole = (pred / "0.png").read_bytes()
    (pred / "0.png").write_bytes(whole[: len(whole) // 3])
    r = run_cli("evaluate", str(pred), str(gt))
    assert r.returncode == 2
    assert _lines(r.stderr) == [f"crackseg: error: {pred / '0.png'}: cannot read image (corrupt or unsupported "
                                f"format)"], r.stderr
