"""The training-free ``ridge`` labeler and the weak-label gate: the labeler contract, the gate zeroes exactly the
no-crack patches (ridge and the CAM labelers), tune calibrates it, and the CLI labels a real data set."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import crackseg
from conftest import missing_data_reason, run_main
from crackseg import LabelerContract, PatchLabel, WeakLabels
from crackseg_ridge import RidgeLabeler, RidgeParams

CFD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cfd"


class TestRidgeContract(LabelerContract):
    name = "ridge"
    changed_params = {"min_area": 10}
    gates_by_weak_labels = True


class _ThirdParty:
    """A third party's labeler: dark pixels, gated by the weak labels it reads through the public API only."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        out = []
        for s in samples:
            grey = s.load_image().mean(axis=2)
            binary = grey < 80
            weak = s.weak_labels()
            region = weak.gate(*grey.shape) if weak is not None else None
            if region is not None:
                binary &= region
            out.append(crackseg.PseudoLabel(soft=binary.astype(np.float32), binary=binary))
        return out

    def fingerprint(self):
        return "dark-80"


class _ThirdPartyPlugin:
    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        register("third-party-dark", _ThirdParty, description="dark pixels, gated by weak labels")


class TestAThirdPartyLabelerReadsWeakLabels(LabelerContract):
    name = "third-party-dark"
    gates_by_weak_labels = True

    @pytest.fixture(autouse=True)
    def _registered(self):
        with crackseg.registered_plugin(_ThirdPartyPlugin, "third-party-dark"):
            yield


def test_the_weak_label_contract_fails_a_labeler_that_ignores_them(tmp_path):
    class Ignores(_ThirdParty):
        def label(self, samples, context):
            out = []
            for s in samples:
                binary = s.load_image().mean(axis=2) < 80
                out.append(crackseg.PseudoLabel(soft=binary.astype(np.float32), binary=binary))
            return out

    class Plugin:
        @staticmethod
        @crackseg.hookimpl
        def register_labelers(register):
            register("ignores-weak", Ignores)

    class Contract(LabelerContract):
        name = "ignores-weak"
        gates_by_weak_labels = True

    with crackseg.registered_plugin(Plugin, "ignores-weak"), pytest.raises(AssertionError, match="weak labels say no"):
        Contract().test_weak_labels_say_where_there_is_no_crack(tmp_path)


def _crack_image(h: int = 96, w: int = 128) -> np.ndarray:
    image = np.full((h, w, 3), 160, np.uint8)
    image[20:23, :] = 60  # a dark crack across the whole width, rows 20-22
    image[70:73, :] = 60  # and another, rows 70-72
    return image


def _sample(image: np.ndarray, labels: WeakLabels | None) -> crackseg.Sample:
    return crackseg.Sample("a", lambda: image, load_weak_labels=(lambda: labels) if labels is not None else None)


def test_the_gate_zeroes_exactly_the_no_crack_patches():
    image = _crack_image()
    labels = WeakLabels(patches=(PatchLabel(0, 0, 64, True), PatchLabel(64, 0, 64, False),
                                 PatchLabel(0, 64, 64, False), PatchLabel(64, 64, 64, True)))
    gated = RidgeLabeler(RidgeParams()).label([_sample(image, labels)], crackseg.LabelContext())[0]
    free = RidgeLabeler(RidgeParams(gate="none")).label([_sample(image, labels)], crackseg.LabelContext())[0]
    no_crack = ~labels.gate(96, 128)
    assert no_crack.sum() == 2 * 64 * 64 - 64 * 32  # (64,0) whole, (0,64) clipped at the image's bottom
    assert not gated.soft[no_crack].any() and not gated.binary[no_crack].any()
    assert np.array_equal(gated.soft[~no_crack], free.soft[~no_crack])  # untouched where crack may be
    assert free.soft[no_crack].max() > 0.5  # there was a response to zero: the test can fail
    assert gated.binary[20:23, :64].mean() > 0.9 and gated.binary[70:73, 64:].mean() > 0.9


def test_an_image_labelled_no_crack_gets_an_empty_label_and_an_unlabelled_one_is_not_gated():
    image = _crack_image()
    lab = RidgeLabeler(RidgeParams())
    empty, unlabelled = lab.label([_sample(image, WeakLabels(image=False)), _sample(image, None)],
                                  crackseg.LabelContext())
    assert not empty.soft.any() and not empty.binary.any()
    assert unlabelled.binary[20:23].mean() > 0.9 and unlabelled.binary[40:60].mean() < 0.05


def test_bright_ridges_and_scales_from_crack_widths():
    assert RidgeParams().sigmas() == [3.0, 6.0, 9.0, 12.0]
    assert RidgeParams(min_width=2, max_width=2, scales=3).sigmas() == [1.0]
    bright = 255 - _crack_image()
    dark_lab = RidgeLabeler(RidgeParams(gate="none", min_width=2, max_width=8))
    bright_lab = RidgeLabeler(RidgeParams(gate="none", min_width=2, max_width=8, ridges="bright"))
    assert bright_lab.soft_map(bright)[20:23].mean() > 0.5 and dark_lab.soft_map(bright)[20:23].mean() < 0.1
    with pytest.raises(crackseg.ConfigError, match="low / high"):
        crackseg.create_labeler("ridge", low=0.5, high=0.2)


def test_the_cam_labelers_gate_by_weak_labels_where_the_image_has_them():
    """``gate: labels`` zeroes the finished map in the no-crack patches (whatever the classifier says)."""
    from crackseg_cam.cams import CamLabeler
    from crackseg_cam.params import CamParams

    class Flat(CamLabeler):
        def soft_map(self, image, context):
            self.seen_gate = self.patch_gate
            return np.full(image.shape[:2], 0.8, np.float32)

    lab = Flat("gradcam", CamParams(gate="labels"))
    lab.classifier = object()  # prepared
    image = _crack_image()
    labels = WeakLabels(patches=(PatchLabel(0, 0, 64, True), PatchLabel(64, 0, 64, False)))
    gated, unlabelled = lab.label([_sample(image, labels), _sample(image, None)], crackseg.LabelContext())
    region = labels.gate(96, 128)
    assert np.all(gated.soft[~region] == 0) and np.all(gated.soft[region] == pytest.approx(0.8))
    assert not gated.binary[~region].any() and gated.binary[region].all()
    assert np.all(unlabelled.soft == pytest.approx(0.8)) and lab.seen_gate == "prob"  # no labels: p(crack) gate


def test_the_classifier_learns_from_the_samples_weak_labels():
    from crackseg_cam.patches import build_refs, labels_from_weak

    image = _crack_image(128, 128)
    labels = WeakLabels(patches=tuple(PatchLabel(x, y, 64, y == 0) for y in (0, 64) for x in (0, 64)))
    # same size as the classifier's patches: used as they are
    assert labels_from_weak(labels, 64, 32, 128, 128) == [(0, 0, 1), (0, 64, 1), (64, 0, 0), (64, 64, 0)]
    # another size: crack where a crack patch overlaps, no crack where no-crack patches cover it all
    derived = labels_from_weak(labels, 32, 32, 128, 128)
    assert sorted({lab for y, _, lab in derived if y < 64}) == [1] and sorted({lab for y, _, lab in derived
                                                                              if y >= 64}) == [0]
    assert labels_from_weak(WeakLabels(image=True), 64, 64, 128, 128) == [(0, 0, 1), (0, 64, 1), (64, 0, 1),
                                                                          (64, 64, 1)]
    refs = build_refs([_sample(image, labels)], 64, 64)
    assert [(r.y, r.x, r.label) for r in refs] == [(0, 0, 1), (0, 64, 1), (64, 0, 0), (64, 64, 0)]


def test_tune_calibrates_ridge_on_annotated_images(tmp_path):
    data = crackseg.write_tiny_dataset(tmp_path / "data", n=8, size=64)
    out = tmp_path / "ridge.yaml"
    r = run_main("tune", "--labeler", "ridge", "--data", str(data), "--split", "all", "--annotated", "6",
                 "--trials", "12", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    header = out.read_text()
    layer = float(re.search(r"# this layer: F ([0-9.]+)", header).group(1))
    default = float(re.search(r"the defaults: ([0-9.]+)\)", header).group(1))
    assert layer > default + 0.05, header
    tuned = crackseg.load_yaml(out)["labeler"]
    assert tuned["name"] == "ridge" and tuned != {"name": "ridge", **crackseg.dataclass_to_dict(RidgeParams())}


@pytest.mark.skipif(not (CFD / "images").is_dir(), reason=missing_data_reason("cfd"))
def test_the_cli_labels_every_cfd_photo(tmp_path):
    out = tmp_path / "labels"
    r = run_main("label", "--labeler", "ridge", "--data", str(CFD), "--split", "all", "--out", str(out), "--quiet",
                 "--device", "cpu")
    assert r.returncode == 0, r.stderr
    written = sorted(out.glob("*.png"))
    assert len(written) == 118 and len(list((out / "soft").glob("*.png"))) == 118
    mask = crackseg.read_gray(written[0])
    assert mask.shape == (320, 480) and set(np.unique(mask)) <= {0, 255} and 0 < (mask > 0).mean() < 0.2


def test_the_no_annotation_path_labels_a_plain_folder_of_photos(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        image = np.full((60, 80, 3), 150, np.uint8)
        image[20 + 5 * i : 23 + 5 * i, :] = 50
        crackseg.write_png(photos / f"p{i}.png", image)
    assert crackseg.data_spec(str(photos))["name"] == "photos"
    assert crackseg.data_spec(str(tmp_path / "nothing-here/"))["name"] == "folder"  # a missing folder: named as such
    out = tmp_path / "labels"
    r = run_main("label", "--labeler", "ridge", "--data", str(photos), "--split", "all", "--out", str(out), "--quiet",
                 "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert (crackseg.read_gray(out / "p1.png")[25:28] > 0).mean() > 0.9


def test_measuring_a_run_without_ground_truth_cuts_at_its_predict_threshold(tmp_path):
    from crackseg.apps.measure import resolve_source

    run = tmp_path / "run"
    prob = np.zeros((40, 60), np.uint8)
    prob[10:13, 5:55] = 90  # 0.35: crack at 0.3, not at 0.5
    crackseg.write_png(run / "predictions" / "a.png", prob)
    crackseg.write_text(run / "config.yaml", "predict: {threshold: 0.3}\n")
    crackseg.write_json(run / "metrics.json", {"ods_threshold": None})
    resolved = resolve_source(run, None)
    assert resolved.threshold == pytest.approx(0.3)
    crackseg.write_json(run / "metrics.json", {"ods_threshold": 0.61})
    assert resolve_source(run, None).threshold == pytest.approx(0.61)
