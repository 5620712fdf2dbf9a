"""Tests of the file-based dataset plugins: folder, cfd, deepcrack, crack500."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import crackseg
from conftest import missing_data_reason
from crackseg.base.errors import ConfigError, CracksegError, DataError
from crackseg.testing import DatasetContract
from crackseg_datasets.common import hash_split, read_split_file
from crackseg_datasets.readers import detect_layout

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
H, W = 24, 32


# -- helpers ------------------------------------------------------------------------------
def _img(path: Path, value: int = 120, shape: tuple[int, int] = (H, W), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(max(0, value - 20), min(255, value + 20), (*shape, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def _mask(path: Path, shape: tuple[int, int] = (H, W), row: int = 5) -> Path:
    arr = np.zeros(shape, np.uint8)
    arr[row, :] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def _folder_tree(root: Path, stems=("a", "b", "c", "d", "e"), splits: dict[str, list[str]] | None = None) -> Path:
    for i, s in enumerate(stems):
        _img(root / "images" / f"{s}.jpg", seed=i)
        _mask(root / "masks" / f"{s}.png", row=i % H)
    for name, lst in (splits or {}).items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{name}.txt").write_text("\n".join(lst) + "\n")
    return root


# -- contracts ------------------------------------------------------------------------------
class TestFolderContract(DatasetContract):
    name = "folder"

    def make_params(self, tmp_path):
        return {"root": str(_folder_tree(tmp_path / "ds"))}


class TestCFDContract(DatasetContract):
    name = "cfd"

    def make_params(self, tmp_path):
        return {"root": str(_cfd_tree(tmp_path / "cfd"))}


class TestDeepCrackContract(DatasetContract):
    name = "deepcrack"

    def make_params(self, tmp_path):
        return {"root": str(_deepcrack_tree(tmp_path / "dc"))}


class TestCrack500Contract(DatasetContract):
    name = "crack500"

    def make_params(self, tmp_path):
        return {"root": str(_crack500_tree(tmp_path / "c5"))}


def test_all_builtin_datasets_registered():
    assert {"synthetic", "folder", "cfd", "deepcrack", "crack500"} <= set(crackseg.list_components("datasets"))
    assert crackseg.get_entry("datasets", "folder").plugin != "?"


# -- folder ------------------------------------------------------------------------------
def test_folder_without_split_files_uses_hash_rule(tmp_path):
    stems = [f"img{i:02d}" for i in range(10)]
    ds = crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path, stems)))
    assert ds.splits() == ["train", "test", "all"]
    train = [s.stem for s in ds.samples("train")]
    test = [s.stem for s in ds.samples("test")]
    assert len(test) == 2 and len(train) == 8
    assert sorted(train + test) == stems
    assert [s.stem for s in ds.samples("all")] == stems
    again = crackseg.create_dataset("folder", root=str(tmp_path))
    assert [s.stem for s in again.samples("test")] == test
    half = crackseg.create_dataset("folder", root=str(tmp_path), test_fraction=0.5)
    assert len(half.samples("test")) == 5


def test_hash_split_rule():
    stems = [f"s{i}" for i in range(20)]
    train, test = hash_split(stems, 0.25)
    assert len(test) == 5 and set(train) | set(test) == set(stems) and not set(train) & set(test)
    # independent of the input order
    assert sorted(hash_split(stems[::-1], 0.25)[1]) == sorted(test)
    # a tiny set still gets one test image; fraction 0 gives none
    assert len(hash_split(["a", "b"], 0.2)[1]) == 1
    assert hash_split(stems, 0.0)[1] == []
    assert hash_split(stems, 1.0)[0] == []


def test_folder_sample_loads_image_and_mask(tmp_path):
    ds = crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path)))
    s = {x.stem: x for x in ds.samples("all")}["b"]
    img, mask = s.load_image(), s.mask()
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert mask.dtype == bool and mask.shape == (H, W)
    assert mask[1].all() and mask.sum() == W


def test_folder_split_files(tmp_path):
    root = _folder_tree(
        tmp_path, splits={"train": ["# comment", "a", "", "b.jpg", "b"], "test": ["c"], "val": ["d"]}
    )
    ds = crackseg.create_dataset("folder", root=str(root))
    assert ds.splits() == ["train", "val", "test", "all"]
    assert [s.stem for s in ds.samples("train")] == ["a", "b"]
    assert [s.stem for s in ds.samples("test")] == ["c"]
    assert len(ds.samples("all")) == 5


def test_folder_only_test_file_gives_rest_as_train(tmp_path):
    ds = crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path, splits={"test": ["a", "b"]})))
    assert [s.stem for s in ds.samples("train")] == ["c", "d", "e"]


def test_folder_all_file_restricts_all(tmp_path):
    ds = crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path, splits={"all": ["a", "c"]})))
    assert [s.stem for s in ds.samples("all")] == ["a", "c"]
    assert sorted(s.stem for s in ds.samples("train") + ds.samples("test")) == ["a", "c"]


def test_split_file_with_missing_stems(tmp_path):
    root = _folder_tree(tmp_path, splits={"test": ["a", "ghost1", "ghost2"]})
    with pytest.raises(DataError, match="ghost1, ghost2") as exc:
        crackseg.create_dataset("folder", root=str(root))
    assert "test.txt" in str(exc.value) and "\n" not in str(exc.value)


def test_read_split_file_tolerates_paths_and_bom(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("\ufeffimages/a.jpg masks/a.png\nb\r\n#c\n", encoding="utf-8")
    assert read_split_file(f) == ["a", "b"]


def test_folder_missing_root_and_empty_root(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="dataset folder not found") as exc:
        crackseg.create_dataset("folder", root=str(missing))
    assert str(exc.value) == f"{missing}: dataset folder not found"
    with pytest.raises(ConfigError, match="root"):
        crackseg.create_dataset("folder")


def test_folder_missing_mask(tmp_path):
    root = _folder_tree(tmp_path)
    os.remove(root / "masks" / "c.png")
    with pytest.raises(DataError) as exc:
        crackseg.create_dataset("folder", root=str(root))
    msg = str(exc.value)
    assert "c.jpg" in msg and str(root / "masks" / "c.png") in msg and "require_masks" in msg
    ds = crackseg.create_dataset("folder", root=str(root), require_masks=False)
    by = {s.stem: s for s in ds.samples("all")}
    assert not by["c"].has_mask and by["a"].has_mask
    with pytest.raises(DataError, match="no ground-truth mask"):
        by["c"].mask()


def test_folder_without_mask_folder(tmp_path):
    for s in "ab":
        _img(tmp_path / "images" / f"{s}.png")
    with pytest.raises(DataError, match="mask folder not found"):
        crackseg.create_dataset("folder", root=str(tmp_path))
    ds = crackseg.create_dataset("folder", root=str(tmp_path), require_masks=False)
    assert len(ds.samples("all")) == 2 and not any(s.has_mask for s in ds.samples("all"))


def test_folder_mask_extensions_and_suffix(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _mask(tmp_path / "masks" / "a.bmp")
    ds = crackseg.create_dataset("folder", root=str(tmp_path))
    assert ds.samples("all")[0].mask().sum() == W
    other = tmp_path / "other"
    _img(other / "images" / "a.jpg")
    _mask(other / "masks" / "a_mask.png")
    ds = crackseg.create_dataset("folder", root=str(other), mask_suffix="_mask")
    assert ds.samples("all")[0].mask().sum() == W


def test_mask_of_wrong_size(tmp_path):
    root = _folder_tree(tmp_path, stems=("a",))
    _mask(root / "masks" / "a.png", shape=(H + 2, W))
    s = crackseg.create_dataset("folder", root=str(root)).samples("all")[0]
    with pytest.raises(DataError, match=r"a\.png.*mask is 32x26 but its image is 32x24"):
        s.mask()


def test_corrupt_image(tmp_path):
    root = _folder_tree(tmp_path, stems=("a", "b"))
    (root / "images" / "b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    s = {x.stem: x for x in crackseg.create_dataset("folder", root=str(root)).samples("all")}["b"]
    with pytest.raises(DataError, match=r"b\.jpg: cannot read image"):
        s.load_image()


def test_empty_image_file(tmp_path):
    root = _folder_tree(tmp_path, stems=("a",))
    (root / "images" / "a.jpg").write_bytes(b"")
    s = crackseg.create_dataset("folder", root=str(root)).samples("all")[0]
    with pytest.raises(CracksegError, match=r"a\.jpg"):
        s.load_image()


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16", "rgb16"])
def test_unusual_image_formats_are_converted(tmp_path, kind):
    rng = np.random.default_rng(1)
    if kind == "gray":
        arr = rng.integers(0, 255, (H, W), dtype=np.uint8)
    elif kind == "rgba":
        arr = rng.integers(0, 255, (H, W, 4), dtype=np.uint8)
    elif kind == "gray16":
        arr = rng.integers(0, 65535, (H, W), dtype=np.uint16)
    else:
        arr = rng.integers(0, 65535, (H, W, 3), dtype=np.uint16)
    (tmp_path / "images").mkdir()
    assert cv2.imwrite(str(tmp_path / "images" / "x.png"), arr)
    _mask(tmp_path / "masks" / "x.png")
    img = crackseg.create_dataset("folder", root=str(tmp_path)).samples("all")[0].load_image()
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    if kind == "gray16":
        assert abs(int(img[0, 0, 0]) - int(arr[0, 0]) * 255 // 65535) <= 1
        assert (img[..., 0] == img[..., 1]).all()


def test_non_binary_mask_threshold_127(tmp_path):
    _img(tmp_path / "images" / "a.png")
    m = np.zeros((H, W), np.uint8)
    m[0, :4] = [100, 127, 128, 200]
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), m)
    mask = crackseg.create_dataset("folder", root=str(tmp_path)).samples("all")[0].mask()
    assert mask[0, :4].tolist() == [False, False, True, True] and mask.sum() == 2


def test_folder_duplicate_stems_are_an_error(tmp_path):
    _folder_tree(tmp_path, stems=("a",))
    _img(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match="share the stem 'a'"):
        crackseg.create_dataset("folder", root=str(tmp_path))


def test_folder_bad_fraction(tmp_path):
    with pytest.raises(ConfigError, match="test_fraction"):
        crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path)), test_fraction=1.5)


def test_folder_on_a_download_layout_hints_the_reader(tmp_path):
    _deepcrack_tree(tmp_path)
    with pytest.raises(DataError, match="use dataset 'deepcrack'"):
        crackseg.create_dataset("folder", root=str(tmp_path))


def test_unknown_split_names_available(tmp_path):
    ds = crackseg.create_dataset("folder", root=str(_folder_tree(tmp_path)))
    with pytest.raises(DataError, match="available: train, test, all"):
        ds.samples("valid")


# -- CFD ---------------------------------------------------------------------------------
def _cfd_tree(root: Path, stems=("001", "002", "003"), unlabelled=("201",), shape=(H, W)) -> Path:
    from scipy.io import savemat

    for i, s in enumerate(stems):
        _img(root / "image" / f"{s}.jpg", shape=shape, seed=i)
        seg = np.ones(shape, np.uint8)
        seg[i + 1, :] = 2  # a crack line
        seg[H - 2, :3] = 4  # a faint crack (label 4)
        (root / "groundTruth").mkdir(parents=True, exist_ok=True)
        savemat(str(root / "groundTruth" / f"{s}.mat"), {"groundTruth": {"Segmentation": seg, "Boundaries": seg * 0}})
    for s in unlabelled:
        _img(root / "image" / f"{s}.jpg", shape=shape)
    return root


def test_cfd_reader(tmp_path):
    ds = crackseg.create_dataset("cfd", root=str(_cfd_tree(tmp_path)), test_fraction=0.34)
    assert ds.splits() == ["train", "test", "all", "unlabeled"]
    assert [s.stem for s in ds.samples("all")] == ["001", "002", "003"]
    assert len(ds.samples("test")) == 1 and len(ds.samples("train")) == 2
    assert [s.stem for s in ds.samples("unlabeled")] == ["201"]
    assert not ds.samples("unlabeled")[0].has_mask
    s = ds.samples("all")[1]
    mask = s.mask()
    assert mask.shape == (H, W) and mask.dtype == bool
    assert mask[2].all() and mask.sum() == W  # label 4 is not crack by default
    koenig = crackseg.create_dataset("cfd", root=str(tmp_path), crack_labels=[2, 4])
    assert koenig.samples("all")[1].mask().sum() == W + 3


def test_cfd_finds_wrapper_folder(tmp_path):
    _cfd_tree(tmp_path / "CrackForest-dataset")
    ds = crackseg.create_dataset("cfd", root=str(tmp_path))
    assert len(ds.samples("all")) == 3


def test_cfd_errors(tmp_path):
    root = _cfd_tree(tmp_path / "a")
    os.remove(root / "image" / "002.jpg")
    with pytest.raises(DataError, match="002"):
        crackseg.create_dataset("cfd", root=str(root))

    root = _cfd_tree(tmp_path / "b", shape=(H, W))
    _img(root / "image" / "001.jpg", shape=(H + 4, W))
    s = crackseg.create_dataset("cfd", root=str(root)).samples("all")[0]
    with pytest.raises(DataError, match=r"001\.mat: Segmentation is 32x24 but its image is 32x28"):
        s.mask()

    root = _cfd_tree(tmp_path / "c")
    (root / "groundTruth" / "003.mat").write_bytes(b"garbage")
    s = crackseg.create_dataset("cfd", root=str(root)).samples("all")[2]
    with pytest.raises(DataError, match=r"003\.mat: cannot read \.mat"):
        s.mask()

    from scipy.io import savemat

    savemat(str(root / "groundTruth" / "003.mat"), {"other": np.zeros((2, 2))})
    with pytest.raises(DataError, match="no 'groundTruth' variable"):
        s.mask()

    with pytest.raises(DataError, match="CFD image folder not found"):
        (tmp_path / "d" / "groundTruth").mkdir(parents=True)
        crackseg.create_dataset("cfd", root=str(tmp_path / "d"))


def test_cfd_sample_pickles(tmp_path):
    import pickle

    s = crackseg.create_dataset("cfd", root=str(_cfd_tree(tmp_path))).samples("all")[0]
    s2 = pickle.loads(pickle.dumps(s))
    assert (s2.mask() == s.mask()).all() and (s2.load_image() == s.load_image()).all()


# -- DeepCrack -----------------------------------------------------------------------------
def _deepcrack_tree(root: Path) -> Path:
    from PIL import Image

    for split, stems in (("train", ["11111", "dup"]), ("test", ["22222", "dup"])):
        for i, s in enumerate(stems):
            _img(root / f"{split}_img" / f"{s}.jpg", seed=i)
            lab = root / f"{split}_lab" / f"{s}.png"
            lab.parent.mkdir(parents=True, exist_ok=True)
            m = np.zeros((H, W), bool)
            m[3 + (split == "test")] = True
            Image.fromarray(m).convert("1").save(lab)  # 1-bit labels, as in DeepCrack's test set
    return root


def test_deepcrack_reader(tmp_path):
    ds = crackseg.create_dataset("deepcrack", root=str(_deepcrack_tree(tmp_path)))
    assert ds.splits() == ["train", "test", "all"]
    assert [s.stem for s in ds.samples("train")] == ["11111", "dup"]
    assert [s.stem for s in ds.samples("test")] == ["22222", "dup_test"]
    assert len(ds.samples("all")) == 4 and len({s.stem for s in ds.samples("all")}) == 4
    test_dup = ds.samples("test")[1]
    assert test_dup.mask()[4].all() and test_dup.mask().sum() == W


def test_deepcrack_wrapper_and_missing_label(tmp_path):
    _deepcrack_tree(tmp_path / "DeepCrack")
    assert len(crackseg.create_dataset("deepcrack", root=str(tmp_path)).samples("all")) == 4
    os.remove(tmp_path / "DeepCrack" / "test_lab" / "22222.png")
    with pytest.raises(DataError, match=r"22222\.jpg: no mask found .*test_lab"):
        crackseg.create_dataset("deepcrack", root=str(tmp_path))
    ds = crackseg.create_dataset("deepcrack", root=str(tmp_path), require_masks=False)
    assert sum(not s.has_mask for s in ds.samples("all")) == 1


def test_deepcrack_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="not a DeepCrack folder"):
        crackseg.create_dataset("deepcrack", root=str(tmp_path))


# -- Crack500 -------------------------------------------------------------------------------
def _crack500_tree(root: Path) -> Path:
    for folder, stems in (("traincrop", ["t1", "t2"]), ("valcrop", ["v1"]), ("testcrop", ["x1", "x2"])):
        for i, s in enumerate(stems):
            _img(root / folder / f"{s}.jpg", seed=i)
            _mask(root / folder / f"{s}.png", row=i)
    return root


def test_crack500_folders(tmp_path):
    ds = crackseg.create_dataset("crack500", root=str(_crack500_tree(tmp_path)))
    assert ds.splits() == ["train", "val", "test", "all"]
    assert [len(ds.samples(k)) for k in ds.splits()] == [2, 1, 2, 5]
    assert ds.samples("test")[1].mask()[1].all()


def test_crack500_mask_suffix_variant(tmp_path):
    _img(tmp_path / "testcrop" / "a.jpg")
    _mask(tmp_path / "testcrop" / "a_mask.png")
    ds = crackseg.create_dataset("crack500", root=str(tmp_path))
    assert ds.splits() == ["test", "all"] and ds.samples("test")[0].mask().sum() == W


def test_crack500_lists(tmp_path):
    root = _crack500_tree(tmp_path / "CRACK500")
    (root / "train.txt").write_text("traincrop/t2.jpg traincrop/t2.png\n\n")
    (root / "test.txt").write_text("testcrop/x1.jpg testcrop/x1.png\ntestcrop/x2.jpg\n")
    ds = crackseg.create_dataset("crack500", root=str(tmp_path))  # finds CRACK500/
    assert [s.stem for s in ds.samples("train")] == ["t2"]
    assert [s.stem for s in ds.samples("val")] == ["v1"]  # no list: the folder
    assert [s.stem for s in ds.samples("test")] == ["x1", "x2"]
    (root / "test.txt").write_text("testcrop/x1.jpg testcrop/x1.png\ntestcrop/gone.jpg testcrop/gone.png\n")
    with pytest.raises(DataError, match=r"test\.txt: 1 listed image\(s\) not found .*gone\.jpg"):
        crackseg.create_dataset("crack500", root=str(tmp_path))


def test_crack500_missing_mask(tmp_path):
    root = _crack500_tree(tmp_path)
    os.remove(root / "valcrop" / "v1.png")
    with pytest.raises(DataError, match=r"v1\.jpg: no mask found"):
        crackseg.create_dataset("crack500", root=str(root))


def test_detect_layout(tmp_path):
    assert detect_layout(_folder_tree(tmp_path / "f")) == "folder"
    assert detect_layout(_cfd_tree(tmp_path / "c")) == "cfd"
    assert detect_layout(_deepcrack_tree(tmp_path / "d" / "DeepCrack").parent) == "deepcrack"
    assert detect_layout(_crack500_tree(tmp_path / "k")) == "crack500"
    assert detect_layout(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert detect_layout(tmp_path / "empty") is None


# -- real shared datasets -------------------------------------------------------------------
def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(missing_data_reason(name))
    return path


def _check_sizes(samples) -> None:
    for s in samples:
        img, mask = s.load_image(), s.mask()
        assert img.shape[:2] == mask.shape and img.dtype == np.uint8 and mask.any()


def test_real_cfd_folder_layout():
    ds = crackseg.create_dataset("folder", root=str(_shared("cfd")))
    assert len(ds.samples("all")) == 118
    assert len(ds.samples("train")) + len(ds.samples("test")) == 118
    _check_sizes(ds.samples("all")[:5])
    assert ds.samples("all")[0].load_image().shape == (320, 480, 3)


def test_real_cfd_mat_reader_matches_png_masks():
    from crackseg.base.io import read_mask

    root = _shared("cfd")
    ds = crackseg.create_dataset("cfd", root=str(root), images="images", ground_truth="raw/groundTruth")
    samples = ds.samples("all")
    assert len(samples) == 118 and "unlabeled" not in ds.splits()
    for s in samples[:: 29]:
        assert (s.mask() == read_mask(root / "masks" / f"{s.stem}.png")).all()


def test_real_deepcrack():
    ds = crackseg.create_dataset("folder", root=str(_shared("deepcrack")))
    assert (len(ds.samples("train")), len(ds.samples("test")), len(ds.samples("all"))) == (300, 237, 537)
    _check_sizes(ds.samples("train")[:3] + ds.samples("test")[-3:])


def test_real_crack500_sample_folder_and_reader(tmp_path):
    root = _shared("crack500_sample")
    ds = crackseg.create_dataset("folder", root=str(root))
    assert len(ds.samples("all")) == 18
    assert [len(ds.samples(k)) for k in ("train", "val", "test")] == [6, 6, 6]
    _check_sizes(ds.samples("all"))  # includes the two portrait crops
    # rebuild the download layout with links and read it with the crack500 reader
    for split, folder in (("train", "traincrop"), ("val", "valcrop"), ("test", "testcrop")):
        (tmp_path / folder).mkdir()
        for stem in read_split_file(root / "splits" / f"{split}.txt"):
            os.symlink(root / "images" / f"{stem}.jpg", tmp_path / folder / f"{stem}.jpg")
            os.symlink(root / "masks" / f"{stem}.png", tmp_path / folder / f"{stem}.png")
    c5 = crackseg.create_dataset("crack500", root=str(tmp_path))
    assert [len(c5.samples(k)) for k in c5.splits()] == [6, 6, 6, 18]
    _check_sizes(c5.samples("test"))
