"""Useless results are said out loud: degenerate classifier, labels, predictions; timings and the ODS/OIS line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import crackseg
from crackseg.apps.runner import elapsed_text
from crackseg.base.io import write_png
from crackseg.base.sanity import coverage, label_coverage, label_warning, prediction_warning
from crackseg.base.tables import ods_ois_remark


# -- predictions ---------------------------------------------------------------------------------
def test_constant_maps_are_flagged():
    maps = [np.full((8, 8), 128, np.uint8), np.zeros((4, 6), np.uint8)]
    cov = coverage(maps, 0.5)
    assert (cov.maps, cov.constant, cov.pixels) == (2, 2, 88)
    assert "all 2 prediction maps are constant" in prediction_warning(cov)


def test_maps_mostly_above_the_threshold_are_flagged():
    a = np.full((10, 10), 200, np.uint8)
    a[0, :] = 0  # not constant; 90 % above 0.5
    cov = coverage([a], 0.5)
    assert cov.constant == 0 and cov.crack == 90
    text = prediction_warning(cov)
    assert "90.0% of the test pixels" in text and "ODS threshold 0.50" in text
    # the cut is value/255 > t, exactly: 127/255 is not above 0.5, 128/255 is
    assert coverage([np.array([[127, 128]], np.uint8)], 0.5).crack == 1


def test_usable_maps_and_nothing_pass():
    m = np.zeros((10, 10), np.uint8)
    m[4:6, :] = 230  # a crack: 20 % of the pixels
    assert prediction_warning(coverage([m, m], 0.3)) == ""
    assert prediction_warning(coverage([], 0.3)) == ""


# -- pseudo-labels --------------------------------------------------------------------------------
def _labels(tmp_path, masks):
    paths = []
    for i, m in enumerate(masks):
        paths.append(write_png(tmp_path / f"l{i}.png", m.astype(np.uint8) * 255))
    return paths


def test_label_coverage_counts_and_warnings(tmp_path):
    thin = np.zeros((10, 10), bool)
    thin[5, :] = True
    paths = _labels(tmp_path, [thin, np.zeros((10, 10), bool)])
    cov = label_coverage([*paths, tmp_path / "missing.png"])  # a missing file is skipped
    assert (cov.maps, cov.empty, cov.pixels, cov.crack) == (2, 1, 200, 10)
    assert label_warning(cov, tmp_path) == ""

    empty = label_coverage(_labels(tmp_path / "e", [np.zeros((5, 5), bool)] * 3))
    assert label_warning(empty, "DIR").startswith("all 3 pseudo-labels in DIR are empty")

    full = label_coverage(_labels(tmp_path / "f", [np.ones((10, 10), bool), thin]))
    assert full.fraction == pytest.approx(0.55)
    assert "55.0% of the labelled pixels of 2 images" in label_warning(full)
    assert label_warning(full, max_fraction=0.6) == ""


# -- results.md's ODS/OIS line, timings ------------------------------------------------------------
def test_ods_ois_remark():
    assert ods_ois_remark({"ods": 0.6777, "ois": 0.60, "protocol": "crackclip"}) == ""
    quirk = ods_ois_remark({"ods": 0.6777, "ois": 0.2194, "protocol": "crackclip"})
    assert quirk.startswith("OIS is 45.8 points below ODS") and "first NaN" in quirk and "Metric protocols" in quirk
    above = ods_ois_remark({"ods": 0.30, "ois": 0.50, "protocol": "paper"})
    assert above.startswith("OIS is 20.0 points above ODS") and "Metric protocols" in above
    assert ods_ois_remark({"ods": None, "ois": 0.1}) == ""


def test_elapsed_text():
    assert elapsed_text(8.34) == "8.3 s"
    assert elapsed_text(72.4) == "1 min 12 s"
    assert elapsed_text(3 * 3600 + 5 * 60 + 20) == "3 h 05 min"


# -- the patch classifier (cam plugin) -------------------------------------------------------------
def test_degenerate_classifier_note():
    pytest.importorskip("torch")
    from crackseg_cam.classifier import degenerate_note, patch_metrics

    cfd = {**patch_metrics(tp=40, fp=372, fn=0, tn=0), "arch": "resnet50", "evaluated_on": "held-out images"}
    text = degenerate_note(cfd, "m.json")
    assert text.startswith("patch classifier resnet50 is degenerate: it calls all 412 held-out patches crack")
    assert "tn 0 in m.json" in text
    assert "calls all 12 training patches no crack" in degenerate_note(
        {**patch_metrics(0, 0, 2, 10), "evaluated_on": "training patches (no images held out)"})
    assert degenerate_note(patch_metrics(30, 5, 10, 300)) == ""
    assert degenerate_note(patch_metrics(0, 0, 0, 50)) == ""  # one true class: a one-class answer is right


def test_degenerate_classifier_is_said_when_trained_and_when_reused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from crackseg.labels.contract import LabelContext
    from crackseg.testing import tiny_crack_samples
    from crackseg_cam import classifier as clf

    monkeypatch.setattr(clf, "evaluate", lambda *a, **k: clf.patch_metrics(tp=3, fp=9, fn=0, tn=0))
    small = dict(arch="resnet18", weights=None, patch_size=32, stride=32, epochs=1, batch_size=4,
                 max_patches_per_epoch=8, val_fraction=0.34, chunk_images=2)
    samples = tiny_crack_samples(3, 64)
    ckpt = clf.train_classifier(samples, clf.classifier_config(small), tmp_path / "c" / "classifier.pt", quiet=True)
    assert "is degenerate" in json.loads(clf.metrics_path(ckpt).read_text())["warning"]
    assert "crackseg: warning: patch classifier resnet18 is degenerate" in capsys.readouterr().err

    lab = crackseg.create_labeler("gradcam", patch_size=32, classifier={"checkpoint": str(ckpt)})
    lab.prepare(samples, LabelContext(quiet=True))
    assert "calls all 12 held-out patches crack" in lab.note  # what the runner puts into the notes
    assert "crackseg: warning: patch classifier resnet18 is degenerate" in capsys.readouterr().err


# -- a whole run whose labels and predictions are useless ------------------------------------------
class _AllCrack:
    """Every pixel crack: the degenerate labeler."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            h, w = s.load_image().shape[:2]
            out.append(PseudoLabel(soft=np.ones((h, w), np.float32), binary=np.ones((h, w), bool)))
        return out

    def fingerprint(self):
        return "all-crack-v1"


def _constant_net():
    import torch

    class Constant(torch.nn.Module):
        """One learnable value, everywhere: a model whose every map is constant."""

        def __init__(self) -> None:
            super().__init__()
            self.b = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.b.view(1, 1, 1, 1).expand(x.shape[0], 1, x.shape[2], x.shape[3])

    return Constant()


class _Plugin:
    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        register("all-crack", _AllCrack, description="every pixel crack (test)")

    @staticmethod
    @crackseg.hookimpl
    def register_backbones(register):
        register("constant", _constant_net, description="one value everywhere (test)")


def test_a_useless_run_says_so_on_stderr_and_in_its_notes(tmp_path, capsys):
    pytest.importorskip("torch")
    from crackseg.apps.runner import run
    from crackseg.config.run_config import resolve_config
    from crackseg.testing import registered_plugin

    section = {"data": {"name": "synthetic", "n_train": 3, "n_test": 2, "size": 48},
               "labeler": {"name": "all-crack"}, "backbone": {"name": "constant"},
               "train": {"epochs": 1, "batch_size": 2}, "predict": {"overlays": 0}, "device": "cpu",
               "out": str(tmp_path / "run")}
    with registered_plugin(_Plugin, "sanity-test"):
        metrics = run(resolve_config([section]), quiet=True)
        err = capsys.readouterr().err
        assert "crackseg: warning: pseudo-labels are mostly crack: 100.0% of the labelled pixels" in err
        assert "crackseg: warning: all 2 prediction maps are constant" in err
        assert "finished in" not in err  # --quiet: warnings only
        saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
        for m in (metrics, saved):
            assert "pseudo-labels are mostly crack" in m["notes"] and "prediction maps are constant" in m["notes"]
            assert len(m["warnings"]) == 2
        assert "prediction maps are constant" in (tmp_path / "run" / "results.md").read_text()

        # a rerun of the finished run reuses it, says so, checks its (cached) labels again and times itself
        run(resolve_config([section]), resume=True, quiet=False)
        err = capsys.readouterr().err
        assert f"reusing the finished run in {tmp_path / 'run'}" in err
        assert "pseudo-labels are mostly crack" in err
        assert f"; results in {tmp_path / 'run'}/ (metrics.json, results.md)" in err
        assert "finished in " in err
