"""Patch slicing, weak patch labels and a lazy patch dataset (numpy only, no torch).

* :func:`patch_grid` places ``size``-pixel patches every ``stride`` pixels so that
  they cover the whole image; the image is padded at the bottom and right
  (symmetric reflection) up to the last patch. With ``pad=False`` only patches
  that lie inside the image are kept (the border strip is not covered): the patch
  counts of the CrackCLIP paper (Crack500: 546,048 training patches, not 682,560).
* Weak labels come from a pixel mask (crack when the patch holds at least
  ``min_crack_pixels`` crack pixels, for benchmarking) or from a user CSV file
  (:func:`read_weak_label_csv`).
* :class:`PatchDataset` keeps only (image, y, x, label) tuples; images are
  decoded a chunk at a time while iterating, so it never holds all patches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import crackseg
from crackseg import DataError, Sample

#: the 8 dihedral transforms: (number of 90° rotations, horizontal flip)
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


# -- geometry ---------------------------------------------------------------------
def _starts(length: int, size: int, stride: int, pad: bool = True) -> list[int]:
    if length <= size:
        return [0]
    if pad:
        n = -(-(length - size) // stride) + 1  # ceil division: the last patch reaches the end
    else:
        n = (length - size) // stride + 1  # only patches inside the image
    return [i * stride for i in range(n)]


def patch_grid(height: int, width: int, size: int, stride: int,
               pad: bool = True) -> tuple[list[int], list[int], int, int]:
    """Patch origins covering an image: ``(ys, xs, padded_h, padded_w)``.

    Patches start every ``stride`` pixels; the image is padded so that the
    last patch of each row/column fits (``padded_h = ys[-1] + size``). With ``pad=False``
    the grid stops at the last patch inside the image (an image smaller than one patch
    still gets one, padded).
    """
    if size < 1 or stride < 1:
        raise DataError(f"patch size and stride must be positive, got size={size} stride={stride}")
    ys = _starts(height, size, stride, pad)
    xs = _starts(width, size, stride, pad)
    return ys, xs, max(height, ys[-1] + size), max(width, xs[-1] + size)


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad ``array`` ([H,W] or [H,W,C]) at the bottom/right to ``height`` x ``width`` by reflection."""
    ph, pw = height - array.shape[0], width - array.shape[1]
    if ph < 0 or pw < 0:
        raise ValueError("pad_to cannot shrink an array")
    if ph == 0 and pw == 0:
        return array
    pads = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="symmetric")


def extract_patches(image: np.ndarray, size: int, stride: int,
                    pad: bool = True) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All patches of ``image`` as ``[N,size,size,(C)]`` and their ``(y, x)`` origins (row-major)."""
    ys, xs, ph, pw = patch_grid(image.shape[0], image.shape[1], size, stride, pad)
    padded = pad_to(image, ph, pw)
    origins = [(y, x) for y in ys for x in xs]
    patches = np.stack([padded[y : y + size, x : x + size] for y, x in origins])
    return patches, origins


def dihedral(patch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate ``patch`` by ``k`` × 90° and optionally flip it left-right (a view when possible)."""
    out = np.rot90(patch, k, axes=(0, 1))
    return out[:, ::-1] if flip else out


# -- weak labels --------------------------------------------------------------------
def labels_from_mask(mask: np.ndarray, size: int, stride: int, min_crack_pixels: int,
                     pad: bool = True) -> list[tuple[int, int, int]]:
    """``(y, x, label)`` for every patch: 1 when it holds ≥ ``min_crack_pixels`` crack pixels."""
    patches, origins = extract_patches(mask.astype(np.uint8), size, stride, pad)
    counts = patches.reshape(len(origins), -1).sum(axis=1)
    return [(y, x, int(c >= max(1, min_crack_pixels))) for (y, x), c in zip(origins, counts)]


@dataclass(frozen=True)
class WeakLabels:
    """Labels read from a user CSV: per patch ``(stem, x, y, size) -> label`` and/or per image ``stem -> label``."""

    patches: dict[tuple[str, int, int, int], int]
    images: dict[str, int]
    source: str = ""

    def for_image(self, stem: str, size: int, stride: int, height: int, width: int,
                  pad: bool = True) -> list[tuple[int, int, int]]:
        """``(y, x, label)`` for ``stem``: its listed patches, or every grid patch with its image label."""
        listed = [(y, x, lab) for (s, x, y, sz), lab in self.patches.items() if s == stem]
        if listed:
            wrong = [sz for (s, _, _, sz) in self.patches if s == stem and sz != size]
            if wrong:
                raise DataError(
                    f"{self.source}: image {stem!r} has patches of size {wrong[0]} but the classifier uses "
                    f"{size}; set classifier.patch_size={wrong[0]}"
                )
            return sorted(listed)
        if stem in self.images:
            ys, xs, _, _ = patch_grid(height, width, size, stride, pad)
            return [(y, x, self.images[stem]) for y in ys for x in xs]
        return []


def read_weak_label_csv(path: str | Path) -> WeakLabels:
    """The deprecated ``classifier.weak_labels`` CSV, read by crackseg's own reader (``crackseg.read_weak_labels_csv``:
    rows ``stem,x,y,size,label`` or ``stem,label``; a bad row is one DataError naming file and line)."""
    patches: dict[tuple[str, int, int, int], int] = {}
    images: dict[str, int] = {}
    for stem, labels in crackseg.read_weak_labels_csv(path).items():
        if labels.image is not None:
            images[stem] = int(labels.image)
        for p in labels.patches:
            patches[(stem, p.x, p.y, p.size)] = int(p.crack)
    return WeakLabels(patches=patches, images=images, source=str(path))


# -- dataset --------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchRef:
    """One labelled patch: image index into the dataset's samples, origin, label."""

    image: int
    y: int
    x: int
    label: int


class PatchDataset:
    """Labelled patches of a list of samples, loaded lazily a chunk of images at a time.

    ``augment``: ``"expand"`` lists every patch in the 8 dihedral variants
    (rotations 0/90/180/270 × flip, as König et al.'s patch script does),
    ``"random"`` applies one random variant each time a patch is drawn,
    ``"none"`` uses patches as they are.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        refs: Sequence[PatchRef],
        size: int,
        augment: str = "none",
    ) -> None:
        if augment not in ("expand", "random", "none"):
            raise DataError(f"augment must be expand, random or none, got {augment!r}")
        self.samples = list(samples)
        self.refs = list(refs)
        self.size = size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.refs) * (len(DIHEDRAL) if self.augment == "expand" else 1)

    def counts(self) -> tuple[int, int]:
        """``(crack, no_crack)`` patches, augmented variants included."""
        mult = len(DIHEDRAL) if self.augment == "expand" else 1
        pos = sum(r.label for r in self.refs) * mult
        return pos, len(self) - pos

    def _padded(self, image_index: int) -> np.ndarray:
        img = self.samples[image_index].load_image()
        ys = [r.y for r in self.refs if r.image == image_index]
        xs = [r.x for r in self.refs if r.image == image_index]
        need_h = max([img.shape[0]] + [y + self.size for y in ys])
        need_w = max([img.shape[1]] + [x + self.size for x in xs])
        return pad_to(img, need_h, need_w)

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator | None = None,
        chunk_images: int = 32,
        limit: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(uint8 [B,S,S,3], int64 [B])`` batches.

        With ``rng`` the order is shuffled (image order, then patches within a
        chunk of ``chunk_images`` images); without it, the order is fixed.
        ``limit`` stops after that many patches.
        """
        by_image: dict[int, list[int]] = {}
        for i, r in enumerate(self.refs):
            by_image.setdefault(r.image, []).append(i)
        image_order = list(by_image)
        if rng is not None:
            rng.shuffle(image_order)
        variants = range(len(DIHEDRAL)) if self.augment == "expand" else [0]
        emitted = 0
        buf_x: list[np.ndarray] = []
        buf_y: list[int] = []
        for c in range(0, len(image_order), max(1, chunk_images)):
            chunk = image_order[c : c + max(1, chunk_images)]
            images = {i: self._padded(i) for i in chunk}
            items = [(ri, v) for i in chunk for ri in by_image[i] for v in variants]
            if rng is not None:
                order = rng.permutation(len(items))
                items = [items[j] for j in order]
            for ri, v in items:
                if limit is not None and emitted >= limit:
                    break
                r = self.refs[ri]
                patch = images[r.image][r.y : r.y + self.size, r.x : r.x + self.size]
                if self.augment == "random" and rng is not None:
                    v = int(rng.integers(len(DIHEDRAL)))
                k, flip = DIHEDRAL[v]
                buf_x.append(np.ascontiguousarray(dihedral(patch, k, flip)))
                buf_y.append(r.label)
                emitted += 1
                if len(buf_x) == batch_size:
                    yield np.stack(buf_x), np.asarray(buf_y, dtype=np.int64)
                    buf_x, buf_y = [], []
            del images
            if limit is not None and emitted >= limit:
                break
        if buf_x:
            yield np.stack(buf_x), np.asarray(buf_y, dtype=np.int64)


def build_refs(
    samples: Sequence[Sample],
    size: int,
    stride: int,
    min_crack_pixels: int = 1,
    weak: WeakLabels | None = None,
    pad: bool = True,
) -> list[PatchRef]:
    """Labelled patch references for ``samples``, from the first source each sample has:

    1. ``weak``: the deprecated ``classifier.weak_labels`` CSV (crackseg 0.1);
    2. the sample's own weak labels (``sample.weak_labels()``: ``data.weak_labels``, class folders),
       through :func:`labels_from_weak`;
    3. its mask, on the classifier's grid (``min_crack_pixels``).

    ``pad``: the grid covers the whole image (padded) or only patches inside it (see :func:`patch_grid`).
    A sample with none of them is skipped; masks are read one at a time and dropped.
    """
    refs: list[PatchRef] = []
    for i, s in enumerate(samples):
        triples: list[tuple[int, int, int]] = []
        if weak is not None:
            if any(k[0] == s.stem for k in weak.patches) or s.stem in weak.images:
                h, w = s.load_image().shape[:2]
                triples = weak.for_image(s.stem, size, stride, h, w, pad)
                for y, x, _ in triples:
                    if y >= h or x >= w:
                        raise DataError(
                            f"{weak.source}: patch at x={x}, y={y} of image {s.stem!r} lies outside "
                            f"the {w}x{h} image"
                        )
        elif (labels := s.weak_labels()) is not None:
            h, w = s.load_image().shape[:2]
            triples = labels_from_weak(labels, size, stride, h, w, pad)
        elif s.has_mask:
            triples = labels_from_mask(s.mask(), size, stride, min_crack_pixels, pad)
        refs.extend(PatchRef(i, y, x, lab) for y, x, lab in triples)
    return refs


def labels_from_weak(labels: crackseg.WeakLabels, size: int, stride: int, height: int, width: int,
                     pad: bool = True) -> list[tuple[int, int, int]]:
    """``(y, x, label)`` classifier patches from an image's weak labels.

    Patch labels of the classifier's own size are used as they are. Otherwise every patch of the
    classifier's grid is crack when it overlaps a crack patch, no-crack when no-crack patches cover it
    entirely, and left out when the labels do not say (partly unlabelled). An image label without
    patches labels every grid patch with it.
    """
    if labels.patches and all(p.size == size for p in labels.patches):
        return sorted((p.y, p.x, int(p.crack)) for p in labels.patches if p.y < height and p.x < width)
    ys, xs, _, _ = patch_grid(height, width, size, stride, pad)
    if not labels.patches:
        if labels.image is None:
            return []
        return [(y, x, int(labels.image)) for y in ys for x in xs]
    crack = np.zeros((height, width), bool)
    for p in labels.patches:
        if p.crack:
            crack[p.y : p.y + p.size, p.x : p.x + p.size] = True
    region = labels.gate(height, width)
    no_crack = ~region if region is not None else np.zeros((height, width), bool)
    out = []
    for y in ys:
        for x in xs:
            if crack[y : y + size, x : x + size].any():
                out.append((y, x, 1))
            elif no_crack[y : y + size, x : x + size].all():
                out.append((y, x, 0))
    return out
