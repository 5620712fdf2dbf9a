"""The ``folder`` dataset: ``images/``, ``masks/`` with the same stems, optional ``splits/*.txt``.

Layout::

    root/images/<stem>.<ext>     any image format read_image understands
    root/masks/<stem>.<ext>      same stem, any image format; crack where grey > 127 (a 0/1 mask: where 1)
    root/splits/<name>.txt       optional; one stem per line (``#`` comments allowed)

Splits: every ``splits/<name>.txt`` present, plus ``all`` (``splits/all.txt``
if present, else every image). When neither ``train.txt`` nor ``test.txt``
exists, ``train``/``test`` are derived from ``all`` by :func:`hash_split`
(``test_fraction`` of the stems, ranked by SHA-1 of the name). When only one of
them exists, the other is every stem of ``all`` not listed in any split file.
"""

from __future__ import annotations

from pathlib import Path

from crackseg import IMAGE_SUFFIXES, DataError, ListDataset, Sample, file_sample, images_by_stem

from .common import (
    check_fraction,
    find_mask,
    hash_split,
    missing_stems_message,
    read_split_file,
    require_root,
)

_SPLIT_ORDER = ("train", "val", "test")


def build_folder(
    root: str,
    images: str = "images",
    masks: str = "masks",
    splits: str = "splits",
    mask_suffix: str = "",
    require_masks: bool = True,
    test_fraction: float = 0.2,
) -> ListDataset:
    """Read a ``folder``-layout dataset (see the module docstring)."""
    base = require_root(root, "folder")
    check_fraction(test_fraction)
    img_dir = base / images
    if not img_dir.is_dir():
        hint = _layout_hint(base)
        raise DataError(
            f"{img_dir}: image folder not found (the 'folder' layout is {images}/, {masks}/, "
            f"optional {splits}/){hint}"
        )
    by_stem = images_by_stem(img_dir)
    if not by_stem:
        raise DataError(f"{img_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    mask_dir = base / masks
    if require_masks and not mask_dir.is_dir():
        raise DataError(
            f"{mask_dir}: mask folder not found; add the masks or set require_masks: false"
        )
    samples = {
        stem: _sample(path, mask_dir, stem, mask_suffix, require_masks) for stem, path in by_stem.items()
    }
    lists = _split_lists(base / splits, by_stem, img_dir, test_fraction)
    return ListDataset(f"folder:{base}", {name: [samples[s] for s in stems] for name, stems in lists.items()})


def _sample(image: Path, mask_dir: Path, stem: str, suffix: str, require: bool) -> Sample:
    mask = find_mask(mask_dir, stem, suffix) if mask_dir.is_dir() else None
    if mask is None and require:
        raise DataError(
            f"{image}: no mask found (expected {mask_dir / (stem + suffix + '.png')}, any image "
            f"extension); add it or set require_masks: false"
        )
    return file_sample(image, mask, stem)


def _split_lists(
    split_dir: Path, by_stem: dict[str, Path], img_dir: Path, test_fraction: float
) -> dict[str, list[str]]:
    explicit: dict[str, list[str]] = {}
    if split_dir.is_dir():
        for f in sorted(split_dir.glob("*.txt")):
            stems = read_split_file(f, by_stem)
            if not stems:
                raise DataError(f"{f}: split file lists no images; fill it or delete it")
            missing = [s for s in stems if s not in by_stem]
            if missing:
                raise DataError(missing_stems_message(f, missing, img_dir))
            explicit[f.stem] = stems
    all_stems = explicit.get("all", list(by_stem))
    listed = {s for name, stems in explicit.items() if name != "all" for s in stems}
    derived: dict[str, list[str]] = {}
    if "train" not in explicit and "test" not in explicit:
        derived["train"], derived["test"] = hash_split(all_stems, test_fraction)
    elif "train" not in explicit:
        derived["train"] = [s for s in all_stems if s not in listed]
    elif "test" not in explicit:
        derived["test"] = [s for s in all_stems if s not in listed]
    merged = {**explicit, **{k: v for k, v in derived.items() if v}}
    merged.pop("all", None)
    order = [n for n in _SPLIT_ORDER if n in merged] + sorted(n for n in merged if n not in _SPLIT_ORDER)
    out = {n: merged[n] for n in order}
    out["all"] = all_stems
    return out


def _layout_hint(base: Path) -> str:
    from .readers import detect_layout

    kind = detect_layout(base)
    if kind and kind != "folder":
        return f"; this looks like a {kind} download: use dataset {kind!r} instead"
    return ""
