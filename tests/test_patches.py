"""Patch slicing, weak labels (mask and CSV) and the lazy patch dataset of the cam plugin."""

from __future__ import annotations

import numpy as np
import pytest

from crackseg.base.errors import CracksegError, DataError
from crackseg.data.samples import Sample
from crackseg_cam.patches import (
    DIHEDRAL,
    PatchDataset,
    build_refs,
    dihedral,
    extract_patches,
    labels_from_mask,
    patch_grid,
    read_weak_label_csv,
)


@pytest.mark.parametrize("h,w,size,stride", [(64, 64, 32, 32), (70, 50, 32, 16), (20, 90, 32, 24), (97, 33, 16, 5)])
def test_patch_grid_covers_image_with_padding(h, w, size, stride):
    ys, xs, ph, pw = patch_grid(h, w, size, stride)
    covered = np.zeros((ph, pw), bool)
    for y in ys:
        for x in xs:
            covered[y : y + size, x : x + size] = True
    assert covered[:h, :w].all()
    assert ph >= max(h, size) and pw >= max(w, size)
    assert ph - stride < max(h, size) or len(ys) == 1  # no wasted row of patches
    assert all(b - a == stride for a, b in zip(ys, ys[1:]))


def test_extract_patches_shapes_and_reflection():
    img = np.arange(70 * 50 * 3, dtype=np.int64).reshape(70, 50, 3)
    patches, origins = extract_patches(img, 32, 16)
    ys, xs, _, _ = patch_grid(70, 50, 32, 16)
    assert patches.shape == (len(ys) * len(xs), 32, 32, 3)
    assert origins[0] == (0, 0) and origins[-1] == (ys[-1], xs[-1])
    np.testing.assert_array_equal(patches[0], img[:32, :32])
    # the padded part mirrors the image (symmetric reflection at the bottom edge)
    last_row = [i for i, (y, x) in enumerate(origins) if y == ys[-1] and x == 0][0]
    pad_rows = ys[-1] + 32 - 70
    np.testing.assert_array_equal(patches[last_row][32 - pad_rows], img[69, :32])


def test_labels_from_mask_threshold():
    mask = np.zeros((64, 64), bool)
    mask[5, 5:8] = True  # 3 crack px in the top-left patch
    mask[40:50, 40] = True  # 10 px in the bottom-right patch
    labels = {(y, x): lab for y, x, lab in labels_from_mask(mask, 32, 32, min_crack_pixels=5)}
    assert labels == {(0, 0): 0, (0, 32): 0, (32, 0): 0, (32, 32): 1}
    labels1 = {(y, x): lab for y, x, lab in labels_from_mask(mask, 32, 32, min_crack_pixels=1)}
    assert labels1[(0, 0)] == 1


def test_dihedral_gives_eight_distinct_variants():
    p = np.arange(9).reshape(3, 3)
    variants = {dihedral(p, k, f).tobytes() for k, f in DIHEDRAL}
    assert len(variants) == 8


def _sample(stem: str, h: int = 64, w: int = 64, mask: np.ndarray | None = None) -> Sample:
    img = np.random.default_rng(len(stem)).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Sample(stem=stem, load_image=lambda: img, load_mask=None if mask is None else (lambda: mask))


def test_csv_patch_and_image_rows(tmp_path):
    f = tmp_path / "weak.csv"
    f.write_text("stem,x,y,size,label\na,0,0,32,1\na,32,0,32,no_crack\n# a comment\nb,crack\n\n")
    weak = read_weak_label_csv(f)
    assert weak.patches == {("a", 0, 0, 32): 1, ("a", 32, 0, 32): 0}
    assert weak.images == {"b": 1}
    refs = build_refs([_sample("a"), _sample("b"), _sample("c")], 32, 32, weak=weak)
    by_img = {}
    for r in refs:
        by_img.setdefault(r.image, []).append((r.y, r.x, r.label))
    assert sorted(by_img[0]) == [(0, 0, 1), (0, 32, 0)]
    assert sorted(by_img[1]) == [(0, 0, 1), (0, 32, 1), (32, 0, 1), (32, 32, 1)]  # whole-image label
    assert 2 not in by_img  # image c has no label


@pytest.mark.parametrize("row,needle", [
    ("a,1,2,32", "line 2"),           # 4 columns
    ("a,x,0,32,1", "x 'x'"),          # not an integer
    ("a,0,0,32,maybe", "'maybe'"),    # bad label
    ("a,0,0,0,1", "size"),            # size 0
])
def test_bad_csv_row_is_one_line_naming_the_row(tmp_path, row, needle):
    f = tmp_path / "weak.csv"
    f.write_text("a,0,0,32,1\n" + row + "\n")
    with pytest.raises(DataError) as exc:
        read_weak_label_csv(f)
    msg = str(exc.value)
    assert "\n" not in msg and "line 2" in msg and needle in msg and str(f) in msg


def test_csv_missing_and_empty(tmp_path):
    with pytest.raises(CracksegError, match="not found"):
        read_weak_label_csv(tmp_path / "nope.csv")
    f = tmp_path / "empty.csv"
    f.write_text("stem,label\n")
    with pytest.raises(DataError, match="no rows"):
        read_weak_label_csv(f)


def test_csv_patch_outside_image_and_wrong_size(tmp_path):
    f = tmp_path / "weak.csv"
    f.write_text("a,500,0,32,1\n")
    with pytest.raises(DataError, match="outside"):
        build_refs([_sample("a")], 32, 32, weak=read_weak_label_csv(f))
    f.write_text("a,0,0,64,1\n")
    with pytest.raises(DataError, match="patch_size=64"):
        build_refs([_sample("a")], 32, 32, weak=read_weak_label_csv(f))


def test_patch_dataset_lazy_batches_expand_and_limit():
    mask = np.zeros((64, 96), bool)
    mask[10, :] = True
    samples = [_sample("a", 64, 96, mask), _sample("bb", 64, 96, mask)]
    refs = build_refs(samples, 32, 32, min_crack_pixels=1)
    assert len(refs) == 12
    ds = PatchDataset(samples, refs, 32, augment="expand")
    assert len(ds) == 96
    assert ds.counts() == (6 * 8, 6 * 8)  # top row of patches holds the line
    batches = list(ds.batches(10, np.random.default_rng(0), chunk_images=1))
    assert sum(len(y) for _, y in batches) == 96
    assert batches[0][0].shape[1:] == (32, 32, 3) and batches[0][0].dtype == np.uint8
    # fixed order without rng; same rng → same order
    a = np.concatenate([y for _, y in ds.batches(7, np.random.default_rng(3))])
    b = np.concatenate([y for _, y in ds.batches(7, np.random.default_rng(3))])
    np.testing.assert_array_equal(a, b)
    limited = list(ds.batches(8, np.random.default_rng(0), limit=20))
    assert sum(len(y) for _, y in limited) == 20
    plain = PatchDataset(samples, refs, 32, augment="none")
    x0, y0 = next(plain.batches(1))
    np.testing.assert_array_equal(x0[0], samples[0].load_image()[:32, :32])
    assert y0[0] == 1


def test_unpadded_grid_gives_the_papers_crack500_patch_count():
    """§4.4.2: 1,896 Crack500 crops of 640x360, 128-px patches at stride 64, 8 flips/rotations each."""
    padded = patch_grid(360, 640, 128, 64)
    inside = patch_grid(360, 640, 128, 64, pad=False)
    assert len(padded[0]) * len(padded[1]) * 8 * 1896 == 682_560
    assert len(inside[0]) * len(inside[1]) * 8 * 1896 == 546_048
    assert inside[2:] == (360, 640)  # no padding needed: every patch lies inside the image
    assert max(inside[0]) + 128 <= 360 and max(inside[1]) + 128 <= 640
    # an image smaller than a patch still gives one (padded) patch
    assert patch_grid(100, 100, 128, 64, pad=False) == ([0], [0], 128, 128)


def test_unpadded_labels_drop_the_border_patches():
    mask = np.zeros((360, 640), bool)
    mask[350:, :] = True  # crack only in the bottom strip no inside patch reaches
    padded = labels_from_mask(mask, 128, 64, 1)
    inside = labels_from_mask(mask, 128, 64, 1, pad=False)
    assert len(padded) == 45 and len(inside) == 36
    assert any(lab for _, _, lab in padded) and not any(lab for _, _, lab in inside)
