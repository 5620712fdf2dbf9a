"""Checks that flag a useless result: prediction maps that are constant or cover most of the image.

A model trained on degenerate pseudo-labels often predicts one value everywhere, or crack
almost everywhere; its ODS can still look like a number. :func:`prediction_warning` says
so in one line, which the runner prints (``crackseg: warning: ...``) and writes into the
run's notes. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .metrics import crack_mask

#: more than this fraction of the test pixels above the threshold is "most of the image"
#: (crack covers a few per cent of a crack photo: 1.6 % on CFD, under 10 % on every public set)
MAX_PREDICTED_FRACTION = 0.5


@dataclass(frozen=True)
class PredictionCoverage:
    """What a set of ``uint8`` prediction maps covers at one threshold."""

    maps: int
    #: maps whose every pixel has the same value
    constant: int
    pixels: int
    #: pixels predicted crack (``value / 255 > threshold``)
    above: int
    threshold: float

    @property
    def fraction(self) -> float:
        """The fraction of all pixels predicted crack (0 when there is none)."""
        return self.above / self.pixels if self.pixels else 0.0


def prediction_coverage(maps: Iterable[np.ndarray], threshold: float) -> PredictionCoverage:
    """Count constant maps and pixels above ``threshold`` over ``uint8`` prediction maps."""
    n = constant = pixels = above = 0
    for m in maps:
        arr = np.asarray(m)
        n += 1
        pixels += arr.size
        if arr.size == 0 or int(arr.max()) == int(arr.min()):
            constant += 1
        above += int(np.count_nonzero(crack_mask(arr, threshold)))
    return PredictionCoverage(n, constant, pixels, above, float(threshold))


def prediction_warning(cov: PredictionCoverage, what: str = "ODS threshold",
                       max_fraction: float = MAX_PREDICTED_FRACTION) -> str:
    """One line when the maps are all constant or mostly above the threshold; "" when they look usable."""
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


__all__ = ["MAX_PREDICTED_FRACTION", "PredictionCoverage", "prediction_coverage", "prediction_warning"]
