"""Checks that flag a useless result: pseudo-labels or predictions that are empty, constant or mostly crack.

A labeler with bad settings marks nothing, or everything; a model trained on such labels often
predicts one value everywhere, or crack almost everywhere, and its ODS can still look like a
number. :func:`coverage` counts what a set of ``uint8`` maps marks as crack (the cut of
:func:`crackseg.base.maps.crack_mask`); :func:`label_warning` and :func:`prediction_warning` say
in one line when that is useless, which the pipeline prints (``crackseg: warning: ...``) and
writes into the run's notes. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crackseg.base.io import read_gray
from crackseg.base.maps import crack_mask

#: more than this fraction of the pixels marked crack is "most of the image", in pseudo-labels and
#: predictions alike (crack covers a few per cent of a crack photo: 1.6 % on CFD, under 10 % on every
#: public set; CAM labels are wider, not 5x)
MAX_CRACK_FRACTION = 0.5


@dataclass(frozen=True)
class Coverage:
    """What a set of ``uint8`` maps marks as crack at one threshold (``value / 255 > threshold``)."""

    maps: int
    #: maps without a single crack pixel
    empty: int
    #: maps whose every pixel has the same value
    constant: int
    pixels: int
    #: pixels marked crack
    crack: int
    threshold: float

    @property
    def fraction(self) -> float:
        """The fraction of all pixels marked crack (0 when there is none)."""
        return self.crack / self.pixels if self.pixels else 0.0


def coverage(maps: Iterable[np.ndarray], threshold: float) -> Coverage:
    """Count empty and constant maps and the pixels above ``threshold`` over ``uint8`` maps."""
    n = empty = constant = pixels = crack = 0
    for m in maps:
        arr = np.asarray(m)
        above = int(np.count_nonzero(crack_mask(arr, threshold)))
        n += 1
        empty += above == 0
        constant += arr.size == 0 or int(arr.max()) == int(arr.min())
        pixels += arr.size
        crack += above
    return Coverage(n, empty, constant, pixels, crack, float(threshold))


def label_coverage(binary_files: Iterable[str | Path]) -> Coverage:
    """:func:`coverage` of binary label PNGs (0/255, cut at 0.5); missing files are skipped."""
    return coverage((read_gray(p) for p in map(Path, binary_files) if p.is_file()), 0.5)


def label_warning(cov: Coverage, where: str | Path = "", max_fraction: float = MAX_CRACK_FRACTION) -> str:
    """One line when the pseudo-labels are all empty or mostly crack; "" when they look usable."""
    place = f" in {where}" if str(where) else ""
    hint = "check the labeler and its settings (crackseg list labelers; the overlays in the label folder)"
    if cov.maps and cov.empty == cov.maps:
        # training on them teaches "no crack anywhere"
        return f"all {cov.maps} pseudo-labels{place} are empty; {hint}"
    if cov.fraction > max_fraction:
        return (f"pseudo-labels are mostly crack: {100 * cov.fraction:.1f}% of the labelled pixels of "
                f"{cov.maps} images{place} are crack (cracks cover a few per cent of a photo), so the "
                f"model learns to paint everything; {hint}")
    return ""


def prediction_warning(cov: Coverage, what: str = "ODS threshold", max_fraction: float = MAX_CRACK_FRACTION) -> str:
    """One line when the prediction maps are all constant or mostly above the threshold; "" when usable."""
    if cov.maps == 0:
        return ""
    hint = "check the pseudo-labels (RUN/labels/overlays/) and the training curve (RUN/history.csv)"
    if cov.constant == cov.maps:
        return (f"all {cov.maps} prediction maps are constant (max = min): the model predicts the same value "
                f"everywhere and its scores mean nothing; {hint}")
    if cov.fraction > max_fraction:
        return (f"predictions cover most of the image: {100 * cov.fraction:.1f}% of the test pixels are crack at "
                f"the {what} {cov.threshold:.2f} (cracks cover a few per cent of a photo); {hint}")
    return ""


__all__ = ["MAX_CRACK_FRACTION", "Coverage", "coverage", "label_coverage", "label_warning", "prediction_warning"]
