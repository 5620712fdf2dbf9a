"""Probability maps as ``uint8`` and the one binarisation rule every stage uses."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from crackseg.base.errors import DataError


def crack_mask(pred: np.ndarray, threshold: float) -> np.ndarray:
    """The binary mask of a ``uint8`` map at ``threshold``: ``value / 255 > threshold``, exactly.

    The cut is computed in rational arithmetic from the threshold as written (0.2 → value > 51), so
    a pixel exactly at the threshold is never crack; on the grid 0.00 … 0.99 this is the cut the
    metrics use. Prediction masks, overlays, measurements and reports all binarise through it.
    """
    return np.asarray(pred) > math.floor(255 * Fraction(repr(float(threshold))))



def pred_to_uint8(pred: np.ndarray) -> np.ndarray:
    """A prediction map as ``uint8`` (probability = value / 255).

    ``uint8`` passes unchanged; floats in [0, 1] become ``floor(value*255 + 0.5)``;
    ``bool`` becomes 0/255; other integer maps must already lie in 0..255.
    NaN, or floats outside [0, 1] (logits?), raise :class:`DataError`.
    """
    arr = np.asarray(pred)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise DataError(
                f"integer prediction has values in [{int(arr.min())}, {int(arr.max())}]; "
                "expected 0..255 (uint8) or probabilities in [0, 1]"
            )
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float64, copy=False)
        if arr.size:
            if np.isnan(a).any():
                raise DataError("prediction contains NaN; expected probabilities in [0, 1]")
            lo, hi = float(a.min()), float(a.max())
            if lo < -1e-6 or hi > 1.0 + 1e-6:
                raise DataError(
                    f"float prediction has values in [{lo:.4g}, {hi:.4g}]; expected "
                    "probabilities in [0, 1] (apply a sigmoid to logits first)"
                )
        return np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)
    raise DataError(f"unsupported prediction type {arr.dtype}; expected uint8 or float in [0, 1]")
