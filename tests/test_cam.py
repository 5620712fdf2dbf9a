"""The cam plugin: patch classifier, CAM labelers, cam-crf, cam-location, train-classifier.

Everything is tiny: 32–64 px patches, ResNet18 or a 3-layer CNN, a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

import crackseg  # noqa: E402
from crackseg.base.errors import ConfigError, CracksegError, DataError  # noqa: E402
from crackseg.data.samples import ListDataset, Sample  # noqa: E402
from crackseg.labels.contract import LabelContext, Labeler  # noqa: E402
from crackseg.testing import LabelerContract  # noqa: E402
from crackseg_cam import CAM_METHODS  # noqa: E402
from crackseg_cam.cams import assemble, gate_weights, image_cam  # noqa: E402
from crackseg_cam.classifier import (  # noqa: E402
    Classifier,
    build_model,
    classifier_config,
    find_target_layer,
    load_classifier,
    metrics_path,
    train_classifier,
)
from crackseg_cam.crf import dense_crf  # noqa: E402
from crackseg_cam.location import dark_in_window, gpll_merge, window_threshold  # noqa: E402

torch.set_num_threads(1)


# -- fixtures ----------------------------------------------------------------------------
def line_sample(i: int, h: int = 64, w: int = 64, with_mask: bool = True) -> Sample:
    rng = np.random.default_rng(i)
    img = (185 + rng.integers(0, 25, (h, w, 3))).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    y = 8 + (11 * i) % (h - 16)
    mask[y : y + 3, : w // 2] = True
    img[mask] = 50
    return Sample(stem=f"img{i}", load_image=lambda: img, load_mask=(lambda: mask) if with_mask else None)


SMALL = dict(arch="resnet18", weights=None, patch_size=32, stride=32, epochs=2, batch_size=4, augment="random",
             max_patches_per_epoch=12, val_fraction=0.25, chunk_images=2)


class Tiny(torch.nn.Module):
    """A 3-conv CNN: 8x8 feature map for 32-px patches, so CAMs are cheap but not flat."""

    def __init__(self, bias: tuple[float, float] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.fc = torch.nn.Linear(8, 2)
        if bias is not None:
            with torch.no_grad():
                self.fc.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def tiny_classifier(bias=None) -> Classifier:
    return Classifier(Tiny(bias), "tiny", 32, digest="tiny")


def ctx(tmp_path: Path) -> LabelContext:
    """The classifier artefact lives in tmp_path itself (as a shared stage folder would)."""
    return LabelContext(work_dir=tmp_path / "work", quiet=True, artefact_dirs={"classifier": tmp_path})


# -- classifier --------------------------------------------------------------------------
def test_train_resume_gives_same_weights_and_metrics(tmp_path):
    samples = [line_sample(i) for i in range(4)]
    cfg = classifier_config(SMALL)
    straight = train_classifier(samples, cfg, tmp_path / "a" / "classifier.pt", quiet=True)
    part = train_classifier(samples, cfg, tmp_path / "b" / "classifier.pt", quiet=True, stop_after=1)
    ck = torch.load(part, weights_only=True)
    assert ck["epoch"] == 1 and not ck["done"] and ck["kind"] == "patch-classifier"
    with pytest.raises(DataError, match="resume"):
        load_classifier(part)
    train_classifier(samples, cfg, part, quiet=True, resume=True)
    a = torch.load(straight, weights_only=True)["model"]
    b = torch.load(part, weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads(metrics_path(straight).read_text())
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["patches"] > 0 and metrics["evaluated_on"] == "held-out images"
    clf = load_classifier(straight)
    assert clf.patch_size == 32 and len(clf.digest) == 64
    # other settings + resume → a clear error, not a silent mix
    with pytest.raises(CracksegError, match="other settings"):
        train_classifier(samples, classifier_config({**SMALL, "lr": 0.5}), straight, quiet=True, resume=True)


def test_classifier_config_validation():
    with pytest.raises(ConfigError, match="epohcs"):
        classifier_config({"epohcs": 3})
    with pytest.raises(ConfigError, match="batch_size"):
        classifier_config({"batch_size": 0})
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("resnet81")
    cfg = classifier_config({})
    assert (cfg.arch, cfg.lr, cfg.momentum, cfg.lr_decay, cfg.batch_size, cfg.epochs) == (
        "resnet50", 1e-3, 0.9, 0.1, 16, 10)


def test_weights_file_initialises_all_but_head(tmp_path):
    src = build_model("resnet18", num_classes=1000)
    f = tmp_path / "imagenet.pt"
    torch.save(src.state_dict(), f)
    model = build_model("resnet18", 2, str(f))
    assert torch.equal(model.conv1.weight, src.conv1.weight)
    assert model.fc.weight.shape == (2, 512)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        build_model("resnet18", 2, str(bad))
    with pytest.raises(DataError, match="not a crackseg patch-classifier"):
        load_classifier(f)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache and no network: downloads fail at once, as on a machine offline."""
    import urllib.error

    from crackseg_cam import pretrained

    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(pretrained, "_resolved", {})

    def offline(url, dst, *a, **k):
        raise urllib.error.URLError("offline in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home / "hub" / "checkpoints"


def test_imagenet_is_the_default_and_read_from_the_cache(torch_home):
    """weights: imagenet (the default) loads the architecture's cached ImageNet file, all but the head."""
    import torchvision

    from crackseg_cam.pretrained import effective_config

    cfg = classifier_config({"arch": "resnet18"})
    assert cfg.weights == "imagenet"
    src = build_model("resnet18", num_classes=1000, weights=None)
    torch_home.mkdir(parents=True)
    torch.save(src.state_dict(), torch_home / Path(torchvision.models.get_model_weights("resnet18").DEFAULT.url).name)
    assert effective_config(cfg) == (cfg, "")
    model = build_model("resnet18", 2, "imagenet")
    assert torch.equal(model.conv1.weight, src.conv1.weight) and model.fc.weight.shape == (2, 512)


def test_imagenet_unavailable_trains_from_random_weights_and_says_so(torch_home, tmp_path, capsys):
    samples = [line_sample(i) for i in range(3)]
    lab = crackseg.create_labeler("gradcam", patch_size=64, classifier={**SMALL, "weights": "imagenet"})
    lab.prepare(samples, ctx(tmp_path))
    err = capsys.readouterr().err
    assert err.count("crackseg: warning: patch classifier resnet18 trained from RANDOM weights") == 1
    assert "resnet18-f37072fd.pth" in err and "offline in this test" in err
    assert lab.note.startswith("patch classifier resnet18 trained from RANDOM weights")
    ckpt = tmp_path / "classifier.pt"
    assert json.loads(metrics_path(ckpt).read_text())["init"] == "random"
    mtime = ckpt.stat().st_mtime_ns
    # the same training as weights: null, so an explicit from-scratch labeler reuses it, with no RANDOM note
    # (this tiny classifier may be degenerate, which its note then says)
    scratch = crackseg.create_labeler("gradcam", patch_size=64, classifier=SMALL)
    scratch.prepare(samples, ctx(tmp_path))
    assert ckpt.stat().st_mtime_ns == mtime and "RANDOM" not in scratch.note


def test_run_records_the_random_classifier_in_notes_and_table(torch_home, tmp_path):
    from crackseg.apps.runner import run
    from crackseg.config.run_config import resolve_config

    cfg = resolve_config([{"labeler": {"name": "gradcam", "patch_size": 32,
                                       "classifier": {**SMALL, "weights": "imagenet"}},
                           "backbone": {"name": "unet", "encoder": "resnet18"},
                           "data": {"name": "synthetic", "n_train": 3, "n_test": 2, "size": 64},
                           "train": {"epochs": 1, "batch_size": 2}, "predict": {"overlays": 0},
                           "device": "cpu", "out": str(tmp_path / "run")}])
    metrics = run(cfg, quiet=True)
    assert "patch classifier resnet18 trained from RANDOM weights" in metrics["notes"]
    assert "RANDOM weights" in (tmp_path / "run" / "results.md").read_text()


def test_target_layer_resnet_and_generic():
    r = build_model("resnet18")
    assert find_target_layer(r) is r.layer4[-1]
    t = Tiny()
    assert find_target_layer(t, 32) is t.features[-1]


# -- labelers: protocol, errors, fingerprint -----------------------------------------------
def test_missing_classifier_error_is_one_line(tmp_path):
    lab = crackseg.create_labeler("gradcam")
    assert isinstance(lab, Labeler)
    no_masks = [line_sample(i, with_mask=False) for i in range(2)]
    with pytest.raises(CracksegError) as exc:
        lab.prepare(no_masks, LabelContext(work_dir=tmp_path, quiet=True))
    msg = str(exc.value)
    assert "\n" not in msg and "labeler.classifier.checkpoint" in msg and "weak" in msg
    with pytest.raises(CracksegError, match="classifier"):
        lab.label(no_masks, LabelContext(work_dir=tmp_path))
    given = crackseg.create_labeler("gradcam", classifier={"checkpoint": str(tmp_path / "none.pt")})
    assert given.artefacts() == {}  # nothing to train when a checkpoint is given
    with pytest.raises(DataError, match="not found"):
        given.prepare(no_masks, LabelContext(work_dir=tmp_path))


def test_prepare_trains_once_then_reuses_and_fingerprint(tmp_path):
    samples = [line_sample(i) for i in range(3)]
    lab = crackseg.create_labeler("gradcam", patch_size=64, classifier=SMALL)
    assert set(lab.artefacts()) == {"classifier"} and lab.artefacts()["classifier"]["arch"] == "resnet18"
    f0 = lab.fingerprint()
    lab.prepare(samples, ctx(tmp_path))
    ckpt = tmp_path / "classifier.pt"
    mtime = ckpt.stat().st_mtime_ns
    f1 = lab.fingerprint()
    assert f1 != f0  # the classifier's content is part of it
    # another CAM labeler with the same classifier settings declares the same artefact and reuses it
    lab2 = crackseg.create_labeler("cam-crf", patch_size=64, classifier=SMALL)
    assert lab2.artefacts() == lab.artefacts()
    lab2.prepare(samples, ctx(tmp_path))
    assert ckpt.stat().st_mtime_ns == mtime  # loaded, not retrained
    lab2 = crackseg.create_labeler("gradcam", patch_size=64, classifier=SMALL)
    lab2.prepare(samples, ctx(tmp_path))
    assert lab2.fingerprint() == f1
    lab3 = crackseg.create_labeler("gradcam", patch_size=64, threshold=0.3, classifier={"checkpoint": str(ckpt)})
    lab3.prepare(samples, LabelContext(quiet=True))
    assert lab3.fingerprint() != f1
    labels = lab2.label(samples[:1], ctx(tmp_path))
    assert labels[0].soft.shape == (64, 64) and labels[0].binary.dtype == bool


# -- CAM maps --------------------------------------------------------------------------
def test_gradcam_one_patch_equals_pytorch_grad_cam_times_gate():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)  # a random network whose crack-class map is not all zero
    model = build_model("resnet18")
    clf = Classifier(model, "resnet18", 64)
    img = line_sample(1).load_image()
    ours = image_cam(clf, img, "gradcam", 64, 64, gate="prob", gate_threshold=0.0, batch_size=4)
    x = clf.to_tensor(img[None])
    cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
    try:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)])[0]
    finally:
        cam.activations_and_grads.release()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[0, 1].item()
    assert ref.max() > 0.5  # a non-trivial map
    np.testing.assert_allclose(ours, ref * p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_every_cam_method_maps_in_unit_range(method):
    lab = crackseg.create_labeler(method, patch_size=32, stride=16, gate="none")
    lab.classifier = tiny_classifier()
    img = line_sample(2, 50, 70).load_image()
    (pl,) = lab.label([Sample("x", lambda: img)], LabelContext())
    assert pl.soft.shape == (50, 70) and pl.binary.shape == (50, 70)
    assert pl.soft.dtype == np.float32 and pl.binary.dtype == bool
    assert np.isfinite(pl.soft).all() and pl.soft.min() >= 0.0 and pl.soft.max() <= 1.0


def test_crack_free_patches_contribute_nothing():
    img = line_sample(3).load_image()
    no_crack = crackseg.create_labeler("gradcam", patch_size=32, stride=16)
    no_crack.classifier = tiny_classifier(bias=(12.0, -12.0))  # p(crack) ≈ 0 everywhere
    assert no_crack.label([Sample("x", lambda: img)], LabelContext())[0].soft.max() == 0.0
    crack = crackseg.create_labeler("gradcam", patch_size=32, stride=16)
    crack.classifier = tiny_classifier(bias=(-12.0, 12.0))  # p(crack) ≈ 1
    assert crack.label([Sample("x", lambda: img)], LabelContext())[0].soft.max() > 0.5
    # per patch: the gated patch leaves zeros where it alone covers the image
    w = gate_weights(np.array([0.01, 0.9], np.float32), "prob", 0.5)
    assert w.tolist() == pytest.approx([0.0, 0.9])
    maps = np.ones((2, 4, 4), np.float32) * w[:, None, None]
    out = assemble(maps, [(0, 0), (0, 2)], 4, 6, 4, 6)
    assert (out[:, :2] == 0).all() and out[:, 4:] == pytest.approx(0.9)
    assert out[:, 2:4] == pytest.approx(0.45)  # overlap averaged
    assert gate_weights(np.array([0.3, 0.7]), "hard", 0.5).tolist() == [0.0, 1.0]


# -- cam-crf ------------------------------------------------------------------------------
def _line_image(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    img = (200 + rng.integers(-10, 10, (h, w, 3))).astype(np.uint8)
    line = np.zeros((h, w), bool)
    line[h // 2 - 1 : h // 2 + 1, 10 : w - 10] = True
    img[line] = 40
    return img, line


def test_cam_crf_is_tighter_than_thresholded_cam():
    import cv2

    img, line = _line_image()
    cam = cv2.GaussianBlur(line.astype(np.float32), (0, 0), 5)
    cam = cam / cam.max()
    blur_mask = cam >= 0.5
    q = dense_crf(img, cam)
    crf_mask = q >= 0.5
    fp_cam = int((blur_mask & ~line).sum())
    fp_crf = int((crf_mask & ~line).sum())
    assert fp_cam > 100
    assert fp_crf < 0.25 * fp_cam
    assert (crf_mask & line).sum() >= 0.8 * line.sum()
    assert q.shape == line.shape and 0.0 <= q.min() and q.max() <= 1.0


def test_the_default_kernels_erase_a_weak_cam_and_keep_a_full_strength_one():
    """Why cam-crf's default CAM is ungated: a map whose peak stays under one half (what the prob gate gives where
    p(crack) x cam, averaged with overlapping patches the gate dropped, is weak) loses even its ranking in the CRF."""
    import cv2

    from crackseg_cam.params import CamCrfParams

    p = CamCrfParams()
    assert (p.cam_method, p.gate) == ("gradcam++", "none")
    kernels = (p.gaussian_sxy, p.gaussian_compat, p.bilateral_sxy, p.bilateral_srgb, p.bilateral_compat, p.iterations)
    img, line = _line_image()
    cam = cv2.GaussianBlur(line.astype(np.float32), (0, 0), 5)
    cam = cam / cam.max()  # a patch map as pytorch-grad-cam normalises it
    full = dense_crf(img, cam, *kernels)
    weak = dense_crf(img, 0.45 * cam, *kernels)
    assert ((full >= 0.5) & line).sum() >= 0.8 * line.sum()
    assert weak.max() < 1e-3  # not 0.45 x the map: the soft map is gone, so is any threshold's F


def test_cam_crf_labeler_end_to_end():
    lab = crackseg.create_labeler("cam-crf", patch_size=32, gate="none")
    lab.classifier = tiny_classifier()
    img, _ = _line_image(40, 56)
    (pl,) = lab.label([Sample("x", lambda: img)], LabelContext())
    assert pl.soft.shape == (40, 56) and pl.binary.dtype == bool
    with pytest.raises(ConfigError, match="cam_method"):
        crackseg.create_labeler("cam-crf", cam_method="nocam")


# -- cam-location --------------------------------------------------------------------------
def test_cam_location_recovers_line_under_perfect_localisation():
    import cv2

    img, line = _line_image(96, 128, seed=1)
    blob = np.zeros(line.shape, bool)
    blob[8:16, 8:16] = True  # a dark stain outside the localised area
    img[blob] = 30
    loc = cv2.dilate(line.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=7).astype(np.float32)
    assert not (loc.astype(bool) & blob).any()
    seg = gpll_merge(img, loc, loc.copy())
    pred = seg > 127
    iou = (pred & line).sum() / (pred | line).sum()
    assert iou > 0.8
    anything = seg > 0  # the default binarisation (CrackCLIP's loader: > 0) keeps the whole line...
    assert anything[line].all()
    assert not (anything & blob).any()  # ...and never the dark stain outside the localisation
    assert (anything & ~loc.astype(bool)).sum() == 0


def test_multi_otsu_edge_cases_do_not_crash():
    assert not dark_in_window(np.full((32, 32), 7, np.uint8)).any()
    two = np.full((32, 32), 200, np.uint8)
    two[10, :] = 20
    d = dark_in_window(two)
    assert d[10].all() and d.sum() == 32
    # whole images: constant, two levels, tiny and non-multiple sizes
    assert not window_threshold(np.full((40, 50), 128, np.uint8), 32, 8).any()
    stripes = np.tile(np.where(np.arange(45)[:, None] % 9 == 0, 10, 240).astype(np.uint8), (1, 60))
    t = window_threshold(stripes, 32, 8)  # two grey levels only: the dark stripes are marked
    assert t.shape == (45, 60) and t[9].all() and not t[4].any()
    assert window_threshold(stripes[:, :3], 32, 8).shape == (45, 3)  # narrower than a window
    assert window_threshold(np.zeros((5, 7), np.uint8), 32, 8).shape == (5, 7)


def _split_score(hist, last_bins):
    """sum over classes of (bin-index sum)² / count; class k ends at bin ``last_bins[k]`` (inclusive)."""
    bounds = [-1, *last_bins, len(hist) - 1]
    idx = np.arange(len(hist))
    score = 0.0
    for a, z in zip(bounds[:-1], bounds[1:]):
        count, total = hist[a + 1 : z + 1].sum(), (hist[a + 1 : z + 1] * idx[a + 1 : z + 1]).sum()
        score += total * total / count if count else 0.0
    return score


@pytest.mark.parametrize("classes,nbins", [(2, 64), (3, 48), (4, 32), (5, 24)])
def test_multiotsu_finds_the_exhaustive_optimum(classes, nbins):
    """The dynamic programme against every split of the histogram (bins kept few for the brute force)."""
    import itertools

    from crackseg_cam.multiotsu import multiotsu_thresholds

    rng = np.random.default_rng(classes)
    for k in range(12):
        w = rng.random((32, 32)) if k % 2 else rng.normal(size=(32, 32)) ** 2
        w[k % 32, :] *= 0.1  # a dark line
        hist, edges = np.histogram(w, bins=nbins, range=(w.min(), w.max()))
        centres = (edges[:-1] + edges[1:]) / 2
        best = max(_split_score(hist, cut) for cut in itertools.combinations(range(nbins - 1), classes - 1))
        ours = multiotsu_thresholds(w, classes, nbins)
        assert len(ours) == classes - 1 and np.all(np.diff(ours) > 0)
        last_bins = [int(np.argmin(np.abs(centres - t))) for t in ours]
        assert _split_score(hist, last_bins) == pytest.approx(best, rel=1e-12)


def test_multiotsu_agrees_with_scikit_image_where_the_labeler_uses_scikit_image():
    """Up to 3 classes the labeler keeps scikit-image: the two agree but for its float32 near-ties."""
    from skimage.filters import threshold_multiotsu

    from crackseg_cam.multiotsu import multiotsu_thresholds

    rng = np.random.default_rng(0)
    for classes in (2, 3):
        same = 0
        for k in range(40):
            w = rng.random((32, 32))
            w[k % 32, :] *= 0.1
            same += np.allclose(multiotsu_thresholds(w, classes), threshold_multiotsu(w, classes=classes))
        assert same >= 34, (classes, same)


def test_multiotsu_edge_cases_and_its_use_above_three_classes():
    from crackseg_cam.multiotsu import multiotsu_thresholds

    levels = np.repeat([0.0, 0.5, 1.0], 10)  # exactly one filled bin per class
    assert np.allclose(multiotsu_thresholds(levels, 3), [0.5 / 256, 0.5 + 0.5 / 256], atol=1 / 256)
    with pytest.raises(ValueError, match="cannot split"):
        multiotsu_thresholds(levels, 4)
    with pytest.raises(ValueError):
        multiotsu_thresholds(levels, 1)
    # five classes on a window with a dark line: the line alone is the darkest class
    w = np.full((32, 32), 200.0) + np.random.default_rng(0).normal(0, 20, (32, 32))
    w[16, :] = 5.0
    d = dark_in_window(w, classes=5)
    assert d[16].all() and d.sum() == 32


@pytest.mark.parametrize("preset", ["crackclip", "koenig"])
def test_cam_location_labeler_presets(preset):
    lab = crackseg.create_labeler("cam-location", preset=preset, patch_size=32)
    lab.classifier = tiny_classifier()
    s = lab.settings()
    assert s["cam_method"] == ("gradcam" if preset == "crackclip" else "gradcam++")
    assert s["loc_stride"] == 16 and s["window_stride"] == 8
    img, _ = _line_image(48, 72)
    (pl,) = lab.label([Sample("x", lambda: img)], LabelContext())
    assert pl.soft.shape == (48, 72) and 0.0 <= pl.soft.min() and pl.soft.max() <= 1.0
    assert pl.binary.dtype == bool


# -- train-classifier command ---------------------------------------------------------------
def test_train_classifier_command(tmp_path, monkeypatch):
    import click
    from click.testing import CliRunner

    from crackseg_cam import commands

    ds = ListDataset("lines", {"train": [line_sample(i) for i in range(3)]})
    monkeypatch.setattr(commands, "resolve_dataset", lambda data: ds)
    cli = click.Group()
    commands.register(cli)
    out = tmp_path / "clf"
    args = ["train-classifier", "--data", "lines", "--out", str(out), "--arch", "resnet18", "--epochs", "1",
            "--device", "cpu", "--quiet", "--set", "classifier.patch_size=32", "--set", "stride=32",
            "--set", "max_patches_per_epoch=8", "--set", "augment=none"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (out / "classifier.pt").is_file() and "F1" in res.output
    metrics = json.loads((out / "classifier.metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1"} <= set(metrics)
    res2 = CliRunner().invoke(cli, args)
    assert isinstance(res2.exception, CracksegError) and "--resume" in str(res2.exception)
    res3 = CliRunner().invoke(cli, args + ["--resume"])
    assert res3.exit_code == 0
    res4 = CliRunner().invoke(cli, args[:-1] + ["bogus_key=1"])
    assert isinstance(res4.exception, ConfigError) and "bogus_key" in str(res4.exception)


class TestGradCAMContract(LabelerContract):
    """The public labeler contract on a CAM labeler (a tiny classifier trained in prepare)."""

    name = "gradcam"
    params = {"patch_size": 32, "classifier": {**SMALL, "epochs": 1}}
    changed_params = {"threshold": 0.3}


def test_koenig_grid_drops_the_last_row_like_his_merge():
    """König's _merge_out_preds sizes the grid from the unpadded image: Crack500's 360 px lose a row."""
    from crackseg_cam.location import koenig_grid_shape, localisation_map

    assert koenig_grid_shape(360, 640, 32, 16) == (22, 39)  # 23 rows of patches were classified
    assert koenig_grid_shape(384, 640, 32, 16) == (23, 39)  # (h - 32) % 16 == 0: nothing dropped

    class RowIndex:
        """p(crack) = the patch's row number / 100 (patches arrive row-major, 39 per row)."""

        def __init__(self):
            self.seen = 0

        def crack_probs(self, batch):
            out = (self.seen + np.arange(len(batch))) // 39 / 100.0
            self.seen += len(batch)
            return out.astype(np.float32)

    img = np.zeros((360, 640, 3), np.uint8)
    covering = localisation_map(RowIndex(), img, 32, 16, 64, "covering")
    koenig = localisation_map(RowIndex(), img, 32, 16, 64, "koenig")
    # the covering grid reaches row 22 (p 0.22) at the bottom; König's stops at row 21
    assert covering[-1].max() == pytest.approx(0.22, abs=0.006)
    assert koenig[-1].max() == pytest.approx(0.21, abs=0.006)
    assert koenig.shape == covering.shape == (360, 640)


def test_demo_data_gives_cam_labelers_a_small_classifier_the_user_can_override(tmp_path):
    from crackseg.config.run_config import resolve_config

    cfg = resolve_config([{"labeler": {"name": "cam-crf"}}])  # synthetic: the default dataset, demo data
    assert cfg.labeler["classifier"]["arch"] == "resnet18" and cfg.labeler["classifier"]["epochs"] == 3
    mine = resolve_config([{"labeler": {"name": "cam-crf", "classifier": {"epochs": 5}}}])
    assert mine.labeler["classifier"]["epochs"] == 5 and mine.labeler["classifier"]["arch"] == "resnet18"
    real = resolve_config([{"labeler": {"name": "cam-crf"}, "data": {"name": "folder", "root": str(tmp_path)}}])
    assert real.labeler["classifier"]["arch"] == "resnet50"  # real photos: the paper's classifier


def test_long_cpu_training_is_estimated_before_it_starts():
    from crackseg_cam.estimate import cpu_estimate, duration

    line = cpu_estimate("resnet50", 128, 19_040, 10)
    assert line is not None and "resnet50 x 10 epochs x 19,040 patches" in line and "about 3 h" in line
    assert "arch=resnet18 is about 2.8x faster" in line
    assert cpu_estimate("resnet18", 64, 400, 3) is None  # the demo settings: seconds, nothing said
    assert cpu_estimate("timm:efficientnet_b0", 128, 10**6, 10) is None  # no measured cost: no guess
    assert duration(47) == "about 50 s" and duration(600) == "about 10 min"


@pytest.mark.parametrize("key", ["weights", "checkpoint"])
def test_a_classifier_file_that_is_not_one_is_one_line_and_exit_2(tmp_path, key):
    from conftest import run_main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_main("label", "--labeler", "gradcam", "--data", "synthetic", "--set", "data.n_train=2",
                 "--set", f"labeler.classifier.{key}={bad}", "--out", str(tmp_path / "labels"), "--device", "cpu")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("crackseg: error:"), r.stderr
    assert "bad.pt" in lines[0] and "Traceback" not in r.stderr


class TestCamRidgeContract(LabelerContract):
    """cam-ridge keeps the contract, and its weak-label gate empties what the labels call no crack."""

    name = "cam-ridge"
    params = {"patch_size": 32, "classifier": {**SMALL, "epochs": 1}, "ridge": {"min_width": 2, "max_width": 6}}
    changed_params = {"cam_spread": 8}
    gates_by_weak_labels = True


class TestGradCAMLabelsGateContract(LabelerContract):
    name = "gradcam"
    params = {"patch_size": 32, "classifier": {**SMALL, "epochs": 1}, "gate": "labels"}
    changed_params = {"threshold": 0.3}
    gates_by_weak_labels = True


def test_cam_ridge_keeps_the_ridge_lines_where_the_cam_is():
    from crackseg_cam.cam_ridge import CamRidgeLabeler
    from crackseg_cam.params import CamRidgeParams
    from crackseg_ridge import RidgeParams

    class Located(CamRidgeLabeler):
        def where(self, image, context):  # a CAM that sees the crack in the left half only
            w = np.zeros(image.shape[:2], np.float32)
            w[:, : image.shape[1] // 2] = 1.0
            return w

    lab = Located(CamRidgeParams(gate="prob", ridge=RidgeParams(min_width=2, max_width=6)))
    lab.classifier = object()
    image = np.full((64, 96, 3), 160, np.uint8)
    image[30:32, :] = 50  # one dark line across
    [out] = lab.label([crackseg.Sample("a", lambda: image)], crackseg.LabelContext())
    assert out.binary[30:32, 5:40].mean() > 0.9 and not out.binary[:, 48:].any()
