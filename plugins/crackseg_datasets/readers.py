"""Readers for public crack datasets in the layouts their downloads unpack to.

* ``cfd`` — CrackForest: ``image/<stem>.jpg`` and ``groundTruth/<stem>.mat``
  (MATLAB struct ``groundTruth`` with a ``Segmentation`` label image; crack is
  label 2 by default, ``crack_labels`` changes that). Images without a ``.mat``
  (201–208, 301–329 in the download) form the split ``unlabeled``.
* ``deepcrack`` — DeepCrack: ``train_img/``, ``train_lab/``, ``test_img/``, ``test_lab/``.
* ``crack500`` — Crack500: ``traincrop/``, ``valcrop/``, ``testcrop/`` holding
  ``<stem>.jpg`` with ``<stem>.png`` (or ``<stem>_mask.png``) masks; when the
  distribution's ``train.txt``/``val.txt``/``test.txt`` lists (lines
  ``traincrop/x.jpg traincrop/x.png``) are present they define the splits.

A stem present in two splits (DeepCrack's ``11289-1`` ... ``11289-10``) keeps
its name in the first split and becomes ``<stem>_<split>`` in the later one, so
stems are unique within ``all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crackseg import DataError, ListDataset, Sample, file_sample, image_shape, images_by_stem, read_image

from .common import (
    check_fraction,
    descend,
    find_mask,
    hash_split,
    require_root,
    split_entry,
)

_DEEPCRACK_MARKERS = ("train_img", "test_img")
_DEEPCRACK_WRAPPERS = ("DeepCrack", "deepcrack", "dataset/DeepCrack")
_CRACK500_DIRS = ("traincrop", "valcrop", "testcrop")
_CRACK500_WRAPPERS = ("CRACK500", "crack500", "Crack500")
_CRACK500_MASK_NAMES = ("{stem}.png", "{stem}_mask.png", "{stem}_mask.jpg")


# -- layout detection ------------------------------------------------------------


def detect_layout(root: str | Path) -> str | None:
    """Which built-in dataset reads ``root``: ``folder``, ``cfd``, ``deepcrack``, ``crack500`` or None."""
    base = Path(root)
    if not base.is_dir():
        return None
    if (base / "images").is_dir():
        return "folder"
    if (base / "groundTruth").is_dir():
        return "cfd"
    if _holds(base, _DEEPCRACK_MARKERS, _DEEPCRACK_WRAPPERS):
        return "deepcrack"
    if _holds(base, _CRACK500_DIRS, _CRACK500_WRAPPERS):
        return "crack500"
    return None


def _holds(base: Path, markers: Sequence[str], wrappers: Sequence[str]) -> bool:
    found = descend(base, markers, wrappers)
    return any((found / m).is_dir() for m in markers)


# -- shared ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    stem: str
    image: Path
    mask: Path | None


def _merge(parts: dict[str, list[_Item]], name: str) -> ListDataset:
    """Split name → items into a dataset with unique stems and an ``all`` split."""
    seen: set[str] = set()
    splits: dict[str, list[Sample]] = {}
    for split, items in parts.items():
        samples = []
        for it in items:
            stem = it.stem if it.stem not in seen else f"{it.stem}_{split}"
            seen.add(stem)
            samples.append(file_sample(it.image, it.mask, stem))
        splits[split] = samples
    splits["all"] = [s for samples in list(splits.values()) for s in samples]
    return ListDataset(name, splits)


def _no_mask(image: Path, expected: Path) -> DataError:
    return DataError(f"{image}: no mask found (expected {expected}); add it or set require_masks: false")


# -- CFD -----------------------------------------------------------------------------


def build_cfd(
    root: str,
    images: str = "image",
    ground_truth: str = "groundTruth",
    crack_labels: Sequence[int] = (2,),
    test_fraction: float = 0.2,
) -> ListDataset:
    """CrackForest (CFD) as downloaded; splits ``train``/``test`` (SHA-1 rule), ``all``, ``unlabeled``."""
    base = require_root(root, "cfd")
    check_fraction(test_fraction)
    base = descend(base, [ground_truth], ["CrackForest-dataset", "CrackForest", "CFD", "cfd"])
    img_dir, gt_dir = base / images, base / ground_truth
    for d, what in ((img_dir, "image"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise DataError(
                f"{d}: CFD {what} folder not found (CFD layout: {images}/*.jpg and {ground_truth}/*.mat)"
            )
    by_stem = images_by_stem(img_dir)
    mats = {p.stem: p for p in sorted(gt_dir.glob("*.mat"))}
    if not mats:
        raise DataError(f"{gt_dir}: no .mat ground-truth files found")
    orphans = [s for s in mats if s not in by_stem]
    if orphans:
        shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        raise DataError(f"{gt_dir}: {len(orphans)} ground-truth file(s) have no image in {img_dir}: {shown}")
    labels = tuple(int(v) for v in crack_labels)
    labelled = {s: _cfd_sample(p, mats[s], labels) for s, p in by_stem.items() if s in mats}
    stems = list(labelled)
    train, test = hash_split(stems, test_fraction)
    splits: dict[str, list[Sample]] = {}
    if train:
        splits["train"] = [labelled[s] for s in train]
    if test:
        splits["test"] = [labelled[s] for s in test]
    splits["all"] = [labelled[s] for s in stems]
    unlabelled = [file_sample(p, None, s) for s, p in by_stem.items() if s not in mats]
    if unlabelled:
        splits["unlabeled"] = unlabelled
    return ListDataset(f"cfd:{base}", splits)


def _cfd_sample(image: Path, mat: Path, labels: tuple[int, ...]) -> Sample:
    return Sample(
        stem=image.stem,
        load_image=_ImageLoader(image),
        load_mask=_MatMaskLoader(mat, image, labels),
        source=str(image),
    )


class _ImageLoader:
    """Picklable ``load_image`` for one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> np.ndarray:
        return read_image(self.path)


class _MatMaskLoader:
    """Picklable ``load_mask`` reading a CFD ``.mat`` file."""

    def __init__(self, mat: Path, image: Path, labels: tuple[int, ...]) -> None:
        self.mat, self.image, self.labels = mat, image, labels

    def __call__(self) -> np.ndarray:
        seg = load_cfd_segmentation(self.mat)
        shape = image_shape(self.image)
        if seg.shape != shape:
            raise DataError(
                f"{self.mat}: Segmentation is {seg.shape[1]}x{seg.shape[0]} but its image is "
                f"{shape[1]}x{shape[0]} (W x H); ground truth must match the image"
            )
        return np.isin(seg, self.labels)


def load_cfd_segmentation(path: Path) -> np.ndarray:
    """The ``groundTruth.Segmentation`` label image of a CFD ``.mat`` file (first annotation)."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), simplify_cells=True)
    except NotImplementedError:
        raise DataError(f"{path}: MATLAB v7.3 files are not supported; re-save it with save(..., '-v7')") from None
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for a damaged file
        raise DataError(f"{path}: cannot read .mat file ({exc.__class__.__name__}: {exc})") from None
    gt = data.get("groundTruth")
    if gt is None:
        found = ", ".join(k for k in data if not k.startswith("__")) or "nothing"
        raise DataError(f"{path}: no 'groundTruth' variable (found: {found}); is this a CFD ground-truth file?")
    while isinstance(gt, (list, tuple)) or (isinstance(gt, np.ndarray) and gt.dtype == object):
        if len(gt) == 0:
            raise DataError(f"{path}: 'groundTruth' is empty")
        gt = gt[0] if not isinstance(gt, np.ndarray) else gt.flat[0]
    seg = gt.get("Segmentation") if isinstance(gt, dict) else None
    if seg is None:
        raise DataError(f"{path}: 'groundTruth' has no 'Segmentation' field")
    seg = np.asarray(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.number):
        raise DataError(f"{path}: 'groundTruth.Segmentation' is not a 2-D label image (shape {seg.shape})")
    return seg


# -- DeepCrack --------------------------------------------------------------------


def build_deepcrack(root: str, require_masks: bool = True) -> ListDataset:
    """DeepCrack as downloaded; splits ``train``, ``test``, ``all`` (duplicate test stems get ``_test``)."""
    base = descend(require_root(root, "deepcrack"), _DEEPCRACK_MARKERS, _DEEPCRACK_WRAPPERS)
    parts: dict[str, list[_Item]] = {}
    for split in ("train", "test"):
        img_dir, lab_dir = base / f"{split}_img", base / f"{split}_lab"
        if not img_dir.is_dir():
            continue
        if require_masks and not lab_dir.is_dir():
            raise DataError(f"{lab_dir}: label folder not found; add it or set require_masks: false")
        items = []
        for stem, path in images_by_stem(img_dir).items():
            mask = find_mask(lab_dir, stem) if lab_dir.is_dir() else None
            if mask is None and require_masks:
                raise _no_mask(path, lab_dir / f"{stem}.png")
            items.append(_Item(stem, path, mask))
        if not items:
            raise DataError(f"{img_dir}: no images found")
        parts[split] = items
    if not parts:
        raise DataError(f"{base}: not a DeepCrack folder (expected train_img/, train_lab/, test_img/, test_lab/)")
    return _merge(parts, f"deepcrack:{base}")


# -- Crack500 ---------------------------------------------------------------------


def build_crack500(root: str, require_masks: bool = True) -> ListDataset:
    """Crack500 as downloaded; splits ``train``, ``val``, ``test`` (those present) and ``all``."""
    markers = [*_CRACK500_DIRS, "train.txt", "val.txt", "test.txt"]
    base = descend(require_root(root, "crack500"), markers, _CRACK500_WRAPPERS)
    parts: dict[str, list[_Item]] = {}
    for split, folder in zip(("train", "val", "test"), _CRACK500_DIRS):
        listing = base / f"{split}.txt"
        if listing.is_file():
            items = _crack500_from_list(base, listing, require_masks)
        elif (base / folder).is_dir():
            items = _crack500_from_folder(base / folder, require_masks)
        else:
            continue
        if not items:
            raise DataError(f"{listing if listing.is_file() else base / folder}: no images found")
        parts[split] = items
    if not parts:
        raise DataError(
            f"{base}: not a Crack500 folder (expected traincrop/, valcrop/, testcrop/ or train.txt/test.txt lists)"
        )
    return _merge(parts, f"crack500:{base}")


def _crack500_mask(folder: Path, stem: str) -> Path | None:
    for pattern in _CRACK500_MASK_NAMES:
        cand = folder / pattern.format(stem=stem)
        if cand.is_file():
            return cand
    return None


def _crack500_from_folder(folder: Path, require_masks: bool) -> list[_Item]:
    items = []
    for stem, path in images_by_stem(folder, suffixes=(".jpg", ".jpeg")).items():
        if stem.endswith("_mask"):
            continue
        mask = _crack500_mask(folder, stem)
        if mask is None and require_masks:
            raise _no_mask(path, folder / f"{stem}.png")
        items.append(_Item(stem, path, mask))
    return items


def _crack500_from_list(base: Path, listing: Path, require_masks: bool) -> list[_Item]:
    items, missing = [], []
    for raw in listing.read_text(encoding="utf-8-sig").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, mask_name = split_entry(line, lambda entry: (base / entry).is_file())  # names may hold spaces
        image = base / name
        if not image.is_file():
            missing.append(name)
            continue
        mask: Path | None
        if mask_name:
            mask = base / mask_name
            if not mask.is_file():
                if require_masks:
                    raise _no_mask(image, mask)
                mask = None
        else:
            mask = _crack500_mask(image.parent, image.stem)
            if mask is None and require_masks:
                raise _no_mask(image, image.with_suffix(".png"))
        items.append(_Item(image.stem, image, mask))
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise DataError(f"{listing}: {len(missing)} listed image(s) not found under {base}: {shown}")
    return items
