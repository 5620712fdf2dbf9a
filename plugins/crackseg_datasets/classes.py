"""The ``classes`` dataset: a crack *classification* set, images sorted into crack / no-crack folders.

The most common public weak-label data: Özgenel's ``Positive/`` and ``Negative/``, SDNET2018's
``D/CD``, ``D/UD``, ``P/CP``, ``P/UP``, ``W/CW``, ``W/UW``, or any ``crack/`` and ``no_crack/``. Each
image carries an image-level weak label (``sample.weak_labels().image``) and no mask; images may
have any size. Class folders are found at the top of ``root`` or one level below it; their names are
read by :func:`crackseg.label_from_word` (``crack``, ``cracked``, ``positive``, ``1``, ``CD``, ...;
``no_crack``, ``uncracked``, ``negative``, ``0``, ``UD``, ...), or listed in ``crack_folders`` /
``no_crack_folders``. A sample's stem is its folder path and file name joined by ``_``
(``Positive_00001``), so equal file names in two folders stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import crackseg
from crackseg import DataError, ListDataset, Sample, WeakLabels, file_sample, images_by_stem

from .common import check_fraction, hash_split, require_root


def class_of(folder: Path, crack_folders: Sequence[str] = (), no_crack_folders: Sequence[str] = ()) -> bool | None:
    """True / False when ``folder``'s name says crack / no crack, None when it names no class."""
    name = folder.name.lower()
    if name in {f.lower() for f in crack_folders}:
        return True
    if name in {f.lower() for f in no_crack_folders}:
        return False
    return crackseg.label_from_word(name)


def class_folders(root: Path, crack_folders: Sequence[str] = (),
                  no_crack_folders: Sequence[str] = ()) -> list[tuple[Path, bool]]:
    """The class folders under ``root`` (its sub-folders, else those one level below), with their class."""
    for depth in (1, 2):
        pattern = "*" if depth == 1 else "*/*"
        found = [(d, class_of(d, crack_folders, no_crack_folders)) for d in sorted(root.glob(pattern)) if d.is_dir()]
        named = [(d, c) for d, c in found if c is not None]
        if named:
            return named
    return []


def is_class_layout(root: Path) -> bool:
    """Whether ``root`` looks like a classification set: class folders and no ``images/`` folder."""
    if (root / "images").is_dir():
        return False
    folders = class_folders(root)
    return any(c for _, c in folders) and any(not c for _, c in folders)


def build_classes(root: str, crack_folders: Sequence[str] = (), no_crack_folders: Sequence[str] = (),
                  test_fraction: float = 0.2) -> ListDataset:
    """Read a classification folder (see the module docstring): splits ``train``/``test`` (SHA-1 rule) and ``all``."""
    base = require_root(root, "classes")
    check_fraction(test_fraction)
    folders = class_folders(base, crack_folders, no_crack_folders)
    if not folders:
        raise DataError(f"{base}: no class folders found (expected crack/ and no_crack/, Positive/ and Negative/, or "
                        f"SDNET2018's CD/ and UD/; other names: set crack_folders / no_crack_folders)")
    samples: dict[str, Sample] = {}
    for folder, crack in folders:
        images = images_by_stem(folder)
        if not images:
            raise DataError(f"{folder}: class folder holds no images ({', '.join(crackseg.IMAGE_SUFFIXES)})")
        prefix = "_".join(folder.relative_to(base).parts)
        labels = WeakLabels(image=crack, source=f"{folder.relative_to(base)}/")
        for stem, path in images.items():
            sample = file_sample(path, None, f"{prefix}_{stem}")
            samples[sample.stem] = Sample(sample.stem, sample.load_image, None, sample.source,
                                          load_weak_labels=_constant(labels))
    stems = list(samples)
    train, test = hash_split(stems, test_fraction)
    splits = {"train": [samples[s] for s in train], "test": [samples[s] for s in test],
              "all": [samples[s] for s in stems]}
    return ListDataset(f"classes:{base}", {k: v for k, v in splits.items() if v})


def _constant(labels: WeakLabels):  # noqa: ANN202 - a loader
    return lambda: labels


# -- a plain folder of photos ------------------------------------------------------------------------------
def is_photo_folder(root: Path) -> bool:
    """Whether ``root`` holds images itself (no ``images/`` sub-folder, no class folders)."""
    return not (root / "images").is_dir() and bool(images_by_stem(root)) and not is_class_layout(root)


def build_photos(root: str) -> ListDataset:
    """Every image of ``root`` (not recursive), no masks, no labels: splits ``train``, ``test`` and ``all`` are
    all of them (a run labels them, trains on its labels and predicts them all)."""
    base = require_root(root, "photos")
    images = images_by_stem(base)
    if not images:
        raise DataError(f"{base}: no images found ({', '.join(crackseg.IMAGE_SUFFIXES)})")
    samples = [file_sample(p, None, stem) for stem, p in images.items()]
    return ListDataset(f"photos:{base}", {"train": samples, "test": samples, "all": samples})
