"""`crackseg export` to ONNX and `crackseg predict MODEL.onnx`: parity with torch, no torch at run time, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import run_main

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import crackseg  # noqa: E402
from crackseg.base.io import read_gray, write_png  # noqa: E402
from crackseg.training.checkpoints import CHECKPOINT_FORMAT, model_state  # noqa: E402

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}

BACKBONES = {
    "unet": {"encoder": "resnet18", "encoder_weights": None},
    "deepcrack-liu": {"base_channels": 8},
    "deepcrack-zou": {"base_channels": 8, "fuse_channels": 8},
    "oed": {"base_channels": 8},
    "unet-original": {"base_channels": 8},
    "crackclip": {"image_size": 64, "layers": [1, 2], "random_init": True, "token_cache": "off"},
}


def write_checkpoint(path, name, params, size=64):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = crackseg.create_backbone(name, **params)
    torch.save({"format": CHECKPOINT_FORMAT, "kind": "segmentation", "model": model_state(model),
                "backbone": {"name": name, "params": params}, "image_size": size,
                "predict": {"threshold": 0.5, "mode": "auto", "tile_overlap": 0.25}}, path)
    return path


@pytest.fixture(scope="module")
def clip_cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return str(path)


#: backbones whose graph fixes the window size: two sizes = two exports (crackclip: its ViT's one size)
FIXED_SIZE = {"deepcrack-zou": (64, 96), "crackclip": (64,)}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_builtin_backbone_exports_with_parity_at_two_sizes(name, tmp_path, clip_cfg):
    params = dict(BACKBONES[name])
    if name == "crackclip":
        params["model"] = clip_cfg
    from crackseg.apps.export import PARITY_TOLERANCE, export_onnx

    dynamic = name not in FIXED_SIZE
    for size in FIXED_SIZE.get(name, (64,))[::-1]:
        ckpt = write_checkpoint(tmp_path / "ckpt.pt", name, params, size=size)
        res = export_onnx(ckpt, tmp_path / "m.onnx", dynamic=dynamic)
        assert res.max_diff <= PARITY_TOLERANCE
        assert res.sizes == ((64, 96) if dynamic else (size,))
    if name == "deepcrack-zou":  # --dynamic is refused in one line, with what to do
        r = run_main("export", str(ckpt), "--out", str(tmp_path / "d.onnx"), "--dynamic")
        assert r.returncode == 2 and "export it without --dynamic" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.onnx").exists()
    # an independent check through the predictors: a 100x150 photo, resized and tiled
    from crackseg.prediction.onnx_predictor import OnnxPredictor, load_onnx
    from crackseg.prediction.predictor import Predictor
    from crackseg.training.factory import load_model

    session, meta = load_onnx(res.path)
    assert meta["backbone"]["name"] == name and meta["image_size"] == 64
    model, _ = load_model(ckpt)
    img = np.random.default_rng(1).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    for mode in ("resize", "tile"):
        a = Predictor(model, 64, "cpu", mode=mode).predict_many([img])[0]
        b = OnnxPredictor(session, meta, mode=mode).predict_many([img])[0]
        assert a.shape == b.shape == (100, 150)
        assert np.abs(a - b).max() <= PARITY_TOLERANCE


def test_crackclip_refuses_dynamic_in_one_line(tmp_path, clip_cfg):
    params = dict(BACKBONES["crackclip"], model=clip_cfg)
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "crackclip", params)
    r = run_main("export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--dynamic")
    errors = [line for line in r.stderr.splitlines() if "error" in line]  # (the random-weights warning precedes it)
    assert r.returncode == 2 and len(errors) == 1 and "without --dynamic" in errors[0]
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*partial"))


def test_predict_onnx_matches_checkpoint_and_never_imports_torch(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "deepcrack-liu", BACKBONES["deepcrack-liu"])
    r = run_main("export", str(ckpt), "--out", str(tmp_path / "m.onnx"))
    assert r.returncode == 0, r.stderr
    assert "matches the torch model" in r.stdout
    photo = np.random.default_rng(2).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    write_png(tmp_path / "photos" / "p.png", photo)
    r = run_main("predict", str(ckpt), str(tmp_path / "photos"), "--out", str(tmp_path / "torch"), "-q")
    assert r.returncode == 0, r.stderr
    code = ("import sys\nfrom crackseg.cli import main\ntry:\n"
            f"    main(['predict', {str(tmp_path / 'm.onnx')!r}, {str(tmp_path / 'photos')!r}, '--out', "
            f"{str(tmp_path / 'onnx')!r}, '-q'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"  # onnxruntime only
    a, b = read_gray(tmp_path / "torch" / "prob" / "p.png"), read_gray(tmp_path / "onnx" / "prob" / "p.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (tmp_path / "onnx" / "overlay" / "p.png").is_file()


def test_fp16_export_is_half_the_size_and_predicts_like_torch(tmp_path):
    pytest.importorskip("onnxconverter_common")
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "deepcrack-liu", BACKBONES["deepcrack-liu"])
    assert run_main("export", str(ckpt), "--out", str(tmp_path / "m32.onnx")).returncode == 0
    r = run_main("export", str(ckpt), "--out", str(tmp_path / "m16.onnx"), "--fp16")
    assert r.returncode == 0, r.stderr
    assert "fp16" in r.stdout and "matches the torch model" in r.stdout
    assert (tmp_path / "m16.onnx").stat().st_size < 0.6 * (tmp_path / "m32.onnx").stat().st_size
    from crackseg.prediction.onnx_predictor import load_onnx

    assert load_onnx(tmp_path / "m16.onnx")[1]["precision"] == "fp16"
    photo = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    write_png(tmp_path / "photos" / "p.png", photo)
    for src, out in ((ckpt, "torch"), (tmp_path / "m16.onnx", "half")):
        r = run_main("predict", str(src), str(tmp_path / "photos"), "--out", str(tmp_path / out), "-q")
        assert r.returncode == 0, r.stderr
    a, b = read_gray(tmp_path / "torch" / "prob" / "p.png"), read_gray(tmp_path / "half" / "prob" / "p.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 13  # 0.05 of the probability range


@pytest.mark.parametrize("case", ["not-a-run", "bad-suffix", "corrupt-onnx", "foreign-onnx"])
def test_export_and_onnx_predict_bad_input(tmp_path, case):
    write_png(tmp_path / "photos" / "p.png", np.zeros((32, 32, 3), np.uint8))
    if case == "not-a-run":
        (tmp_path / "folder").mkdir()
        args = ["export", str(tmp_path / "folder"), "--out", str(tmp_path / "m.onnx")]
        expected = "no checkpoint found"
    elif case == "bad-suffix":
        ckpt = write_checkpoint(tmp_path / "c.pt", "deepcrack-liu", BACKBONES["deepcrack-liu"])
        args, expected = ["export", str(ckpt), "--out", str(tmp_path / "m.bin")], "must end in .onnx"
    else:
        model = tmp_path / "m.onnx"
        if case == "corrupt-onnx":
            model.write_bytes(b"\x08\x07garbage" * 10)
            expected = "not a readable ONNX model"
        else:
            import onnx
            from onnx import TensorProto, helper

            graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
            onnx.save(helper.make_model(graph), str(model))
            expected = "without crackseg metadata"
        args = ["predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "out")]
    r = run_main(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
    if case != "corrupt-onnx" and case != "foreign-onnx":
        assert not (tmp_path / "m.onnx").exists()


# -- the tuned onnxruntime session (issue 27) and --int8 ----------------------------------------------------------
#: a small, fast run whose maps are not constant (about 5 s): its training images calibrate --int8
TINY_RUN = [
    "--data", "synthetic", "--device", "cpu", "--quiet", "--backbone", "oed", "--set", "backbone.base_channels=8",
    "--set", "data.n_train=8", "--set", "data.n_test=3", "--set", "data.size=64", "--set", "train.batch_size=2",
    "--set", "train.epochs=3", "--set", "predict.overlays=0",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "oed"
    r = run_main("run", *TINY_RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_the_session_is_tuned_and_predicts_as_the_plain_one(tmp_path, monkeypatch):
    import onnx
    import onnxruntime as ort

    from crackseg.prediction.onnx_predictor import OnnxPredictor, default_threads, load_onnx

    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "deepcrack-liu", BACKBONES["deepcrack-liu"])
    assert run_main("export", str(ckpt), "--out", str(tmp_path / "m.onnx")).returncode == 0
    # a fixed-size export upsamples by constant scales: no Shape arithmetic left in the graph
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "Shape"]
    assert all(n.input[2] and len(n.input) == 3 for n in graph.node if n.op_type == "Resize")
    session, meta = load_onnx(tmp_path / "m.onnx", threads=1)
    opts = session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    assert load_onnx(tmp_path / "m.onnx")[0].get_session_options().intra_op_num_threads == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == 0  # onnxruntime's own choice: one thread per physical core
    # the same probabilities as an untuned session fed the way the predictor fed it before
    plain = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(4).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    before = plain.run(None, {"image": x})[0][:, 0]
    after = OnnxPredictor(session, meta).forward_batch(batch)
    assert after.dtype == np.float32 and after.shape == (3, 64, 64)
    assert np.abs(after - before).max() <= 1e-5


def test_int8_export_calibrates_checks_and_says_so(tiny_run, tmp_path):
    from crackseg.prediction.onnx_predictor import OnnxPredictor, load_onnx

    r = run_main("export", str(tiny_run), "--out", str(tmp_path / "m8.onnx"), "--int8", "--calibration", "8",
                 "--check-images", "3")
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout.splitlines()[0] and "its fp32 graph matches the torch model" in r.stdout
    speed, ods, flips = (next(line for line in r.stdout.splitlines() if line.startswith(p))
                         for p in ("int8 speed on this CPU", "int8 ODS on 3 test images", "int8 masks at threshold"))
    assert "x the fp32 ONNX model" in speed and "x torch" in speed
    assert "vs fp32" in ods and "% of pixels flip" in flips and "train images of synthetic" in flips
    session, meta = load_onnx(tmp_path / "m8.onnx")
    assert meta["precision"] == "int8" and meta["int8"]["images"] == 3
    assert set(meta["int8"]["speed"]) == {"torch", "fp32", "int8"} and "QDQ" in meta["int8"]["quantization"]
    assert {n.op_type for n in _graph(tmp_path / "m8.onnx").node} >= {"QuantizeLinear", "DequantizeLinear"}
    # a 3-epoch net of 8 channels hovers near its threshold: 8 bits move a few % of its pixels (a real run: 0.03%)
    assert meta["int8"]["flipped"] < 0.1 and abs(meta["int8"]["ods_int8"] - meta["int8"]["ods_fp32"]) < 0.05
    # an independent look: the int8 and fp32 masks of the run's test images mostly agree
    assert run_main("export", str(tiny_run), "--out", str(tmp_path / "m32.onnx")).returncode == 0
    q8 = OnnxPredictor(session, meta)
    f32 = OnnxPredictor(*load_onnx(tmp_path / "m32.onnx"))
    dataset = crackseg.create_dataset("synthetic", n_train=8, n_test=3, size=64)
    images = [s.load_image() for s in dataset.samples("test")]
    a, b = np.stack(f32.predict_many(images)), np.stack(q8.predict_many(images))
    t = meta["int8"]["threshold"]
    assert np.mean((a > t) != (b > t)) < 0.1 and np.abs(a - b).mean() < 0.05
    write_png(tmp_path / "photos" / "p.png", images[0])
    r = run_main("predict", str(tmp_path / "m8.onnx"), str(tmp_path / "photos"), "--out", str(tmp_path / "o"), "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "p.png").is_file()
    assert "model: int8 ONNX" in r.stdout  # predict says what it runs


def _graph(path):
    import onnx

    return onnx.load(str(path)).graph


@pytest.mark.parametrize("case", ["int8+fp16", "check-without-int8", "calibration-0", "int8-of-a-bare-checkpoint"])
def test_int8_refusals_are_one_line(tiny_run, tmp_path, case):
    out = str(tmp_path / "m.onnx")
    if case == "int8-of-a-bare-checkpoint":
        ckpt = write_checkpoint(tmp_path / "ckpt.pt", "deepcrack-liu", BACKBONES["deepcrack-liu"])
        args, expected = [str(ckpt), "--out", out, "--int8"], "--int8 needs a run folder"
    else:
        args, expected = {
            "int8+fp16": ([str(tiny_run), "--out", out, "--int8", "--fp16"], "--int8 and --fp16 do not combine"),
            "check-without-int8": ([str(tiny_run), "--out", out, "--check-images", "2"], "applies to --int8 only"),
            "calibration-0": ([str(tiny_run), "--out", out, "--int8", "--calibration", "0"], "must be at least 1"),
        }[case]
    r = run_main("export", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*partial*"))


def test_calibration_windows_are_cut_as_the_run_predicts():
    from crackseg.apps.export import calibration_windows

    images = [lambda i=i: np.full((200, 300, 3), i, np.uint8) for i in range(5)]
    windows, used = calibration_windows(images, 64, {"mode": "auto"}, 12)  # tiled: 24 windows an image, 3 taken
    assert windows.shape == (12, 64, 64, 3) and used == 4 and set(windows[:, 0, 0, 0]) == {0, 1, 2, 3}
    windows, used = calibration_windows(images[:3], 64, {"mode": "resize"}, 8)  # one window an image
    assert windows.shape == (3, 64, 64, 3) and used == 3
