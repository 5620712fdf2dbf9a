"""Weak labels: what a user has instead of masks — a crack / no-crack label per image and/or per patch.

A :class:`~crackseg.data.samples.Sample` carries them (``sample.weak_labels()``), from one of
three sources that a ``data:`` section chooses (``data.weak_labels``, :class:`WeakLabelsConfig`):

* ``masks``: derived from the ground-truth masks on a grid of ``patch_size`` pixels (a patch is
  crack when it holds at least ``min_crack_pixels`` crack pixels) — what the paper's weakly
  supervised benchmarks do;
* ``csv``: a file of rows ``stem,x,y,size,label`` (one patch) or ``stem,label`` (the whole image);
  labels ``1``/``0``, ``crack``/``no_crack``, ``positive``/``negative``, ``true``/``false``;
* the dataset itself (``auto``, the default): a classification folder (``crack/`` and ``no_crack/``
  sub-folders, SDNET2018's ``CD``/``UD``, Özgenel's ``Positive``/``Negative``) labels each image.

Every labeler reads them the same way: :meth:`WeakLabels.gate` is the region where crack may be
(``False`` inside no-crack patches, and everywhere in an image labelled no-crack).
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crackseg.base.errors import DataError
from crackseg.config.run_config import WeakLabelsConfig  # noqa: F401 - documented here, defined with the config

#: label words, lower-case, as they appear in CSV files and as class-folder names
CRACK_WORDS = frozenset({"1", "crack", "cracks", "cracked", "true", "yes", "positive", "pos", "cd", "cp", "cw"})
NO_CRACK_WORDS = frozenset({"0", "no_crack", "nocrack", "no-crack", "non_crack", "noncrack", "non-crack", "uncracked",
                            "normal", "false", "no", "negative", "neg", "background", "ud", "up", "uw"})


@dataclass(frozen=True)
class PatchLabel:
    """One labelled square patch: its top-left corner, its side, and whether it shows crack."""

    x: int
    y: int
    size: int
    crack: bool


@dataclass(frozen=True)
class WeakLabels:
    """The weak labels of one image: an image label and/or patch labels, and where they came from."""

    #: the whole image: crack (True), no crack (False), not labelled (None)
    image: bool | None = None
    patches: tuple[PatchLabel, ...] = ()
    #: where they came from, for messages ("labels.csv", "masks at 64 px", "folder no_crack/")
    source: str = ""

    @property
    def crack(self) -> bool | None:
        """Does the image show crack: its image label, else whether any patch is crack (None: unknown)."""
        if self.image is not None:
            return self.image
        if self.patches:
            return any(p.crack for p in self.patches)
        return None

    def gate(self, height: int, width: int) -> np.ndarray | None:
        """``bool [H, W]``: where crack may be, or None when the labels say nothing about where.

        False inside every no-crack patch that no crack patch overlaps, and everywhere in an image
        labelled no-crack; True elsewhere. An image labelled crack without patches gives None (no
        information about where).
        """
        if self.image is False:
            return np.zeros((height, width), bool)
        if not self.patches:
            return None
        allowed = np.ones((height, width), bool)
        for p in self.patches:
            if not p.crack:
                allowed[p.y : p.y + p.size, p.x : p.x + p.size] = False
        for p in self.patches:
            if p.crack:
                allowed[p.y : p.y + p.size, p.x : p.x + p.size] = True
        return allowed


def patch_grid(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """``(x, y)`` corners of the non-overlapping ``size`` grid from (0, 0) that covers an image (the last
    row and column of patches may reach past its edge)."""
    if size < 1:
        raise DataError(f"weak-label patch size must be positive, got {size}")
    return [(x, y) for y in range(0, height, size) for x in range(0, width, size)]


def from_mask(mask: np.ndarray, patch_size: int, min_crack_pixels: int = 1, source: str = "") -> WeakLabels:
    """Patch labels of a ``bool [H, W]`` mask on the :func:`patch_grid` of ``patch_size``, and its image label."""
    h, w = mask.shape[:2]
    need = max(1, int(min_crack_pixels))
    patches = tuple(PatchLabel(x, y, patch_size, int(mask[y : y + patch_size, x : x + patch_size].sum()) >= need)
                    for x, y in patch_grid(h, w, patch_size))
    return WeakLabels(image=any(p.crack for p in patches), patches=patches,
                      source=source or f"masks at {patch_size} px")


def label_from_word(text: str) -> bool | None:
    """True for a crack word (``crack``, ``positive``, ``1``, SDNET2018's ``CD``/``CP``/``CW``, ...), False for a
    no-crack word (``no_crack``, ``negative``, ``0``, ``UD``/``UP``/``UW``, ...), None for anything else."""
    t = text.strip().lower()
    if t in CRACK_WORDS:
        return True
    if t in NO_CRACK_WORDS:
        return False
    return None


def parse_label(text: str, where: str) -> bool:
    """:func:`label_from_word`, where anything else is a DataError naming ``where``."""
    label = label_from_word(text)
    if label is None:
        raise DataError(f"{where}: label {text!r} is neither crack nor no crack (write 1 or 0)")
    return label


def _parse_int(text: str, name: str, where: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise DataError(f"{where}: {name} {text!r} is not an integer") from None
    if value < 0 or (name == "size" and value == 0):
        raise DataError(f"{where}: {name} must be {'positive' if name == 'size' else '>= 0'}, got {value}")
    return value


@dataclass
class _CsvImage:
    image: bool | None = None
    image_line: int = 0
    patches: dict[tuple[int, int, int], tuple[bool, int]] = dataclasses.field(default_factory=dict)


def read_csv(path: str | Path) -> dict[str, tuple[WeakLabels, dict[str, int]]]:
    """The weak labels of a CSV file by image stem, with the line of each row (``"x,y,size"`` or ``"image"`` -> line).

    Rows: ``stem,x,y,size,label`` or ``stem,label``; a header row (first cell ``stem``, ``image`` or
    ``name``), blank lines and ``#`` comments are skipped. A malformed row, or one patch (or image)
    labelled both ways, is a :class:`DataError` naming the file and line(s).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weak-label CSV file not found (data.weak_labels.path)")
    images: dict[str, _CsvImage] = {}
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p}: cannot read the weak-label CSV ({exc})") from None
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() in ("stem", "image", "name"):
            continue
        where = f"{p}: line {lineno}"
        if not cells[0]:
            raise DataError(f"{where}: empty image stem")
        entry = images.setdefault(cells[0], _CsvImage())
        if len(cells) == 2:
            label = parse_label(cells[1], where)
            if entry.image is not None and entry.image != label:
                raise DataError(f"{where}: image {cells[0]!r} is labelled both ways (also line {entry.image_line})")
            entry.image, entry.image_line = label, lineno
        elif len(cells) == 5:
            x, y, size = (_parse_int(cells[i], n, where) for i, n in ((1, "x"), (2, "y"), (3, "size")))
            label = parse_label(cells[4], where)
            old = entry.patches.get((x, y, size))
            if old is not None and old[0] != label:
                raise DataError(f"{where}: patch x={x} y={y} size={size} of image {cells[0]!r} is labelled both ways "
                                f"(also line {old[1]})")
            entry.patches[(x, y, size)] = (label, lineno)
        else:
            raise DataError(f"{where}: expected 5 columns (stem,x,y,size,label) or 2 (stem,label), got {len(cells)}")
    if not images:
        raise DataError(f"{p}: the weak-label CSV has no rows")
    out = {}
    for stem, e in images.items():
        patches = tuple(PatchLabel(x, y, s, lab) for (x, y, s), (lab, _) in sorted(e.patches.items()))
        lines = {f"{x},{y},{s}": line for (x, y, s), (_, line) in e.patches.items()}
        if e.image_line:
            lines["image"] = e.image_line
        out[stem] = (WeakLabels(image=e.image, patches=patches, source=str(p)), lines)
    return out


def check_fits(labels: WeakLabels, lines: dict[str, int], height: int, width: int, stem: str) -> WeakLabels:
    """``labels`` when every patch overlaps its image of ``height`` x ``width``; else one DataError naming the line."""
    for pl in labels.patches:
        if pl.x >= width or pl.y >= height:
            line = lines.get(f"{pl.x},{pl.y},{pl.size}", 0)
            raise DataError(f"{labels.source}: line {line}: patch x={pl.x} y={pl.y} lies outside image {stem!r} "
                            f"({width}x{height})")
    return labels


#: the public name of :func:`from_mask` (``crackseg.weak_labels_from_mask``)
weak_labels_from_mask = from_mask


def read_weak_labels_csv(path: str | Path) -> dict[str, WeakLabels]:
    """The weak labels of a CSV file by image stem (:func:`read_csv` without the row numbers)."""
    return {stem: labels for stem, (labels, _) in read_csv(path).items()}
