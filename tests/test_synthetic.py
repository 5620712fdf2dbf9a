"""Tests of the synthetic default dataset (no timing asserts)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import crackseg
from crackseg.base.errors import ConfigError
from crackseg.testing import DatasetContract
from crackseg_datasets.synthetic import _CACHE, _PairCache, generate, save_contact_sheet

SMALL = {"n_train": 24, "n_test": 8, "size": 64}


class TestSyntheticContract(DatasetContract):
    name = "synthetic"
    params = {"n_train": 3, "n_test": 2, "size": 32}


def _arrays(ds, split="all"):
    return [(s.load_image(), s.mask()) for s in ds.samples(split)]


def test_splits_and_stems():
    ds = crackseg.create_dataset("synthetic", n_train=5, n_test=3, size=32)
    assert ds.splits() == ["train", "test", "all"]
    assert [len(ds.samples(k)) for k in ds.splits()] == [5, 3, 8]
    stems = [s.stem for s in ds.samples("all")]
    assert len(set(stems)) == 8 and stems[0] == "train_0000" and stems[-1] == "test_0002"
    assert all(s.has_mask for s in ds.samples("all"))


def test_default_parameters_are_the_documented_ones():
    entry = crackseg.get_entry("datasets", "synthetic")
    d = entry.param_defaults()
    assert (d["n_train"], d["n_test"], d["size"], d["seed"], d["style"]) == (48, 16, 128, 0, "mixed")
    ds = crackseg.create_dataset("synthetic", n_train=1, n_test=1)
    img, mask = ds.samples("train")[0].load_image(), ds.samples("train")[0].mask()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and mask.shape == (128, 128) and mask.dtype == bool


def test_same_seed_identical_different_seed_different():
    a = _arrays(crackseg.create_dataset("synthetic", seed=7, n_train=4, n_test=2, size=48))
    _CACHE.clear()  # regenerate from scratch, not from the cache
    b = _arrays(crackseg.create_dataset("synthetic", seed=7, n_train=4, n_test=2, size=48))
    c = _arrays(crackseg.create_dataset("synthetic", seed=8, n_train=4, n_test=2, size=48))
    for (ia, ma), (ib, mb) in zip(a, b):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))
    assert any(not np.array_equal(ma, mc) for (_, ma), (_, mc) in zip(a, c))


def test_generate_is_a_pure_function_and_splits_differ():
    i1, m1 = generate(3, "train", 5, 40, 56, "concrete", 0.0)
    i2, m2 = generate(3, "train", 5, 40, 56, "concrete", 0.0)
    assert np.array_equal(i1, i2) and np.array_equal(m1, m2)
    assert i1.shape == (40, 56, 3) and m1.shape == (40, 56)
    i3, _ = generate(3, "test", 5, 40, 56, "concrete", 0.0)
    assert not np.array_equal(i1, i3)


def test_image_and_mask_come_from_one_generation():
    ds = crackseg.create_dataset("synthetic", seed=2, **SMALL)
    s = ds.samples("test")[3]
    mask_first = s.mask()
    img = s.load_image()
    ref_img, ref_mask = generate(2, "test", 3, 64, 64, "mixed", 0.15)
    assert np.array_equal(img, ref_img) and np.array_equal(mask_first, ref_mask)
    img[:] = 0  # callers get copies: the cache is not corrupted
    assert s.load_image().any()


def test_cache_is_bounded_in_bytes():
    cache = _PairCache(max_bytes=3 * (32 * 32 * 4))  # room for 3 pairs of 32x32 (image + mask)
    keys = [(0, "train", i, 32, 32, "mixed", 0.15) for i in range(6)]
    pairs = [cache.get(k) for k in keys]
    assert len(cache._items) == 3 and list(cache._items) == keys[3:]
    assert cache.get(keys[5]) is pairs[5]  # a hit returns the cached pair
    again = cache.get(keys[0])  # evicted: regenerated, identical
    assert again is not pairs[0] and np.array_equal(again[0], pairs[0][0])


def test_crack_free_fraction():
    ds = crackseg.create_dataset("synthetic", n_train=40, n_test=0, size=32)
    empty = sum(not m.any() for _, m in _arrays(ds, "train"))
    assert 3 <= empty <= 9  # about 15 % of 40
    none = crackseg.create_dataset("synthetic", n_train=12, n_test=0, size=32, crack_free_fraction=0.0)
    assert all(m.any() for _, m in _arrays(none, "train"))
    every = crackseg.create_dataset("synthetic", n_train=6, n_test=0, size=32, crack_free_fraction=1.0)
    assert not any(m.any() for _, m in _arrays(every, "train"))


@pytest.mark.parametrize("style", ["pavement", "concrete"])
def test_crack_pixels_plausible_and_darker(style):
    ds = crackseg.create_dataset("synthetic", style=style, crack_free_fraction=0.0, seed=1, **SMALL)
    fractions, darker = [], 0
    pairs = _arrays(ds, "train")
    for img, mask in pairs:
        assert mask.any()
        fractions.append(mask.mean())
        grey = img.astype(np.float32).mean(axis=2)
        if grey[mask].mean() < grey[~mask].mean() - 5:
            darker += 1
    fractions = np.array(fractions)
    assert fractions.min() > 0.001 and fractions.max() < 0.2
    assert 0.01 < fractions.mean() < 0.1
    assert darker >= 0.9 * len(pairs)


def test_styles_differ_in_brightness():
    def mean_grey(style):
        ds = crackseg.create_dataset("synthetic", style=style, n_train=8, n_test=0, size=32)
        return float(np.mean([img.mean() for img, _ in _arrays(ds, "train")]))

    assert mean_grey("concrete") > mean_grey("pavement") + 20


def test_non_square_size():
    ds = crackseg.create_dataset("synthetic", n_train=2, n_test=1, height=48, width=80)
    img, mask = _arrays(ds, "test")[0]
    assert img.shape == (48, 80, 3) and mask.shape == (48, 80)


def test_samples_pickle_for_worker_processes():
    s = crackseg.create_dataset("synthetic", n_train=1, n_test=1, size=32).samples("train")[0]
    s2 = pickle.loads(pickle.dumps(s))
    assert np.array_equal(s2.load_image(), s.load_image()) and np.array_equal(s2.mask(), s.mask())


@pytest.mark.parametrize(
    "params, match",
    [
        ({"style": "gravel"}, "style"),
        ({"size": 8}, "size"),
        ({"n_train": 0, "n_test": 0}, "n_train"),
        ({"n_train": -1}, "n_train"),
        ({"crack_free_fraction": 1.5}, "crack_free_fraction"),
        ({"sise": 64}, "sise"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        crackseg.create_dataset("synthetic", **params)


def test_contact_sheet(tmp_path):
    from crackseg.base.io import read_image

    ds = crackseg.create_dataset("synthetic", n_train=8, n_test=0, size=32)
    path = save_contact_sheet(ds.samples("train"), tmp_path / "sheet.png", columns=4)
    sheet = read_image(path)
    assert sheet.shape == (2 * (64 + 4), 4 * (32 + 4), 3)
