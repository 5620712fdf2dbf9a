"""Weak labels as data: from masks, from a CSV file, from class folders; the gate every labeler reads; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import crackseg
from conftest import run_main
from crackseg import DataError, PatchLabel, WeakLabels
from crackseg.config.run_config import WeakLabelsConfig, resolve_config
from crackseg.data.loading import with_weak_labels
from crackseg.data.weak_labels import from_mask, read_csv


def _sample(stem: str, h: int = 100, w: int = 130, mask: np.ndarray | None = None) -> crackseg.Sample:
    image = np.full((h, w, 3), 128, np.uint8)
    return crackseg.Sample(stem, lambda: image, (lambda: mask) if mask is not None else None, source=stem)


# -- masks -> patches --------------------------------------------------------------------------------------
def test_patches_from_a_mask_cover_the_image_and_count_crack_pixels():
    mask = np.zeros((100, 130), bool)
    mask[70, 10:12] = True  # 2 crack pixels in patch (x=0, y=64)
    mask[5, 129] = True  # 1 in the last, partial patch of the first row (x=128, y=0)
    labels = from_mask(mask, 64, min_crack_pixels=1)
    assert labels.image is True and labels.crack is True
    assert [(p.x, p.y) for p in labels.patches] == [(0, 0), (64, 0), (128, 0), (0, 64), (64, 64), (128, 64)]
    assert [p.crack for p in labels.patches] == [False, False, True, True, False, False]
    assert [p.crack for p in from_mask(mask, 64, min_crack_pixels=2).patches] == [False] * 3 + [True, False, False]
    assert from_mask(np.zeros((10, 10), bool), 64).image is False


def test_the_gate_zeroes_exactly_the_no_crack_patches():
    mask = np.zeros((100, 130), bool)
    mask[70, 10:12] = True
    gate = from_mask(mask, 64).gate(100, 130)
    expected = np.zeros((100, 130), bool)
    expected[64:100, 0:64] = True
    assert gate is not None and gate.dtype == bool and np.array_equal(gate, expected)
    # overlapping patches: crack wins where they overlap; unlabelled pixels stay open
    labels = WeakLabels(patches=(PatchLabel(0, 0, 20, False), PatchLabel(10, 0, 20, True)))
    g = labels.gate(30, 40)
    assert not g[:20, :10].any() and g[:20, 10:30].all() and g[20:, :].all() and g[:, 30:].all()
    assert WeakLabels(image=False).gate(4, 5).sum() == 0
    assert WeakLabels(image=True).gate(4, 5) is None and WeakLabels().gate(4, 5) is None


def test_masks_source_attaches_lazily_through_the_config():
    mask = np.zeros((64, 64), bool)
    mask[40:42, :] = True
    samples = with_weak_labels([_sample("a", 64, 64, mask)], WeakLabelsConfig(source="masks", patch_size=32))
    labels = samples[0].weak_labels()
    assert labels is not None and [p.crack for p in labels.patches] == [False, False, True, True]
    assert labels.source == "masks at 32 px"
    assert with_weak_labels(samples, WeakLabelsConfig(source="none"))[0].weak_labels() is None


# -- CSV ---------------------------------------------------------------------------------------------------
def test_a_csv_round_trips_patches_and_image_labels(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("stem,x,y,size,label\n# a comment\na,0,0,64,crack\na,64,0,64,0\nb,no_crack\n\nc,positive\n")
    table = read_csv(path)
    a, lines = table["a"]
    assert a.patches == (PatchLabel(0, 0, 64, True), PatchLabel(64, 0, 64, False)) and a.image is None
    assert lines == {"0,0,64": 3, "64,0,64": 4}
    assert table["b"][0].image is False and table["c"][0].image is True and table["c"][0].crack is True
    samples = with_weak_labels([_sample("a"), _sample("b"), _sample("c"), _sample("d")],
                               WeakLabelsConfig(source="csv", path=str(path)))
    assert samples[0].weak_labels() == a
    assert samples[1].weak_labels().gate(100, 130).sum() == 0
    assert samples[3].weak_labels() is None  # not in the file: no weak labels


@pytest.mark.parametrize(("rows", "message"), [
    ("a,0,0,64,crack\nzz,1\n", r"labels.csv: line 2: image 'zz' is not in the data set"),
    ("a,0,0,64,crack\na,0,0,64,no_crack\n", r"line 2: patch x=0 y=0 size=64 of image 'a' is labelled both ways "
                                            r"\(also line 1\)"),
    ("a,1\na,0\n", r"line 2: image 'a' is labelled both ways \(also line 1\)"),
    ("a,0,0,64,maybe\n", r"line 1: label 'maybe' is neither crack nor no crack"),
    ("a,0,0\n", r"line 1: expected 5 columns \(stem,x,y,size,label\) or 2 \(stem,label\), got 3"),
    ("a,-1,0,64,1\n", r"line 1: x must be >= 0"),
    ("# nothing\n", r"has no rows"),
])
def test_a_bad_csv_is_one_line_naming_file_and_row(tmp_path, rows, message):
    path = tmp_path / "labels.csv"
    path.write_text(rows)
    with pytest.raises(DataError, match=message):
        with_weak_labels([_sample("a")], WeakLabelsConfig(source="csv", path=str(path)))


def test_a_patch_outside_its_image_names_the_row(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("a,0,0,64,1\na,200,0,64,0\n")
    [sample] = with_weak_labels([_sample("a")], WeakLabelsConfig(source="csv", path=str(path)))
    with pytest.raises(DataError, match=r"labels.csv: line 2: patch x=200 y=0 lies outside image 'a' \(130x100\)"):
        sample.weak_labels()


# -- configuration ---------------------------------------------------------------------------------------
BASE = {"labeler": {"name": "fsv"}, "backbone": {"name": "unet"}}


def test_the_data_section_validates_weak_labels():
    cfg = resolve_config([BASE, {"data": {"name": "synthetic", "weak_labels": {"source": "masks", "patch_size": 32}}}])
    assert cfg.data["weak_labels"] == {"source": "masks", "path": "", "patch_size": 32, "min_crack_pixels": 1}
    assert "weak_labels" not in resolve_config([BASE, {"data": {"name": "synthetic"}}]).data  # the default: as before
    with pytest.raises(crackseg.ConfigError, match="weak_labels.source"):
        resolve_config([BASE, {"data": {"name": "synthetic", "weak_labels": {"source": "maskz"}}}])


def test_the_cli_reports_a_csv_stem_with_no_image_in_one_line(tmp_path):
    data = crackseg.write_tiny_dataset(tmp_path / "data", n=4)
    (tmp_path / "w.csv").write_text("nope,1\n")
    r = run_main("label", "--labeler", "fsv", "--data", str(data), "--split", "all", "--out", str(tmp_path / "out"),
                 "--set", "data.weak_labels.source=csv", "--set", f"data.weak_labels.path={tmp_path / 'w.csv'}",
                 "--quiet", "--device", "cpu")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"crackseg: error: {tmp_path / 'w.csv'}: line 1: image 'nope' is not in "
                                             f"the data set (stems are file names without their extension)"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


# -- class folders ---------------------------------------------------------------------------------------
def _class_folders(root, names=("Positive", "Negative"), n=3):
    for k, name in enumerate(names):
        for i in range(n):
            image = np.full((40 + 10 * k, 50, 3), 150, np.uint8)
            crackseg.write_png(root / name / f"{i:05d}.png", image)
    return root


def test_a_classification_folder_is_a_dataset_with_image_labels(tmp_path):
    root = _class_folders(tmp_path / "ozgenel")
    spec = crackseg.data_spec(str(root))
    assert spec["name"] == "classes"
    ds = crackseg.create_dataset("classes", root=str(root))
    samples = ds.samples("all")
    assert sorted(s.stem for s in samples) == sorted([f"Negative_{i:05d}" for i in range(3)]
                                                     + [f"Positive_{i:05d}" for i in range(3)])
    by = {s.stem: s for s in samples}
    assert by["Positive_00000"].weak_labels().image is True and by["Negative_00002"].weak_labels().image is False
    assert not any(s.has_mask for s in samples)
    assert by["Positive_00001"].load_image().shape == (40, 50, 3) and by["Negative_00001"].load_image().shape[0] == 50
    assert sorted(s.stem for s in ds.samples("train") + ds.samples("test")) == sorted(by)


def test_sdnet_layout_one_level_down_and_custom_names(tmp_path):
    root = tmp_path / "sdnet"
    _class_folders(root / "D", names=("CD", "UD"), n=2)
    _class_folders(root / "W", names=("CW", "UW"), n=2)
    ds = crackseg.create_dataset("classes", root=str(root))
    labels = {s.stem: s.weak_labels().image for s in ds.samples("all")}
    assert labels["D_CD_00000"] is True and labels["W_UW_00001"] is False and len(labels) == 8
    _class_folders(tmp_path / "odd", names=("riss", "ok"), n=1)
    ds = crackseg.create_dataset("classes", root=str(tmp_path / "odd"), crack_folders=["riss"],
                                 no_crack_folders=["ok"])
    assert {s.stem: s.weak_labels().image for s in ds.samples("all")} == {"riss_00000": True, "ok_00000": False}


def test_an_empty_class_folder_is_one_line(tmp_path):
    root = _class_folders(tmp_path / "c", n=1)
    (root / "no_crack").mkdir()
    with pytest.raises(DataError, match=r"no_crack: class folder holds no images"):
        crackseg.create_dataset("classes", root=str(root))


def test_changed_weak_labels_are_new_pseudo_labels_for_the_cache():
    from crackseg.labels.pseudo_labels import label_key

    image = np.zeros((8, 8, 3), np.uint8)
    plain = crackseg.Sample("a", lambda: image, source="a")
    one = crackseg.Sample("a", lambda: image, source="a", load_weak_labels=lambda: WeakLabels(image=True))
    other = crackseg.Sample("a", lambda: image, source="a", load_weak_labels=lambda: WeakLabels(image=False))
    keys = {label_key("fp", s) for s in (plain, one, other)}
    assert len(keys) == 3
    assert label_key("fp", plain) == label_key("fp", crackseg.Sample("a", lambda: image, source="a"))


def test_the_demo_images_carry_32_px_patch_labels_from_their_masks():
    ds = crackseg.create_dataset("synthetic", n_train=3, n_test=1, size=64)
    for s in ds.samples("all"):
        labels = s.weak_labels()
        assert labels is not None and len(labels.patches) == 4 and labels.patches[0].size == 32
        assert labels.crack == bool(s.mask().any())


def test_a_csv_for_the_whole_data_set_labels_each_split(tmp_path):
    from crackseg.data.loading import split_of

    data = crackseg.write_tiny_dataset(tmp_path / "data", n=6)
    ds = crackseg.create_dataset("folder", root=str(data))
    train, test = ds.samples("train"), ds.samples("test")
    rows = [f"{s.stem},{int(i % 2)}" for i, s in enumerate(train + test)]
    (tmp_path / "w.csv").write_text("\n".join(rows) + "\n")
    config = {"source": "csv", "path": str(tmp_path / "w.csv")}
    got = split_of(ds, "train", weak_labels=config)
    assert [s.weak_labels().image for s in got] == [bool(i % 2) for i in range(len(train))]
    (tmp_path / "w.csv").write_text("\n".join(rows) + "\nghost,1\n")
    with pytest.raises(DataError, match=f"line {len(rows) + 1}: image 'ghost' is not in the data set"):
        split_of(ds, "test", weak_labels=config)
