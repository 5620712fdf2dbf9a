"""Overlays: masks drawn over their images for people to look at (numpy only)."""

from __future__ import annotations

import numpy as np

RED = (255, 0, 0)
BLUE = (0, 120, 255)
#: rows blended at a time: the temporaries stay a few MB however large the photo
_ROWS = 64


def overlay(image: np.ndarray, mask: np.ndarray, gt: np.ndarray | None = None, *,
            in_place: bool = False) -> np.ndarray:
    """RGB overlay: predicted crack in red; with ``gt``, missed crack pixels in blue.

    A marked pixel becomes ``uint8(0.35 * pixel + 0.65 * colour)``. ``in_place``: draw on ``image`` itself
    (the caller no longer needs it; no copy of a 108 MP photo) and return it.
    """
    out = image if in_place else image.copy()
    m = np.asarray(mask).astype(bool, copy=False)
    miss = None if gt is None else np.asarray(gt).astype(bool, copy=False)
    red, blue = _blend_table(RED), _blend_table(BLUE)
    for r in range(0, out.shape[0], _ROWS):
        rows, mr = out[r : r + _ROWS], m[r : r + _ROWS]
        mb = None if miss is None else miss[r : r + _ROWS] & ~mr  # missed: judged before any red is drawn
        for c in range(3):
            ch = rows[..., c]
            np.copyto(ch, red[:, c][ch], where=mr)
            if mb is not None:
                np.copyto(ch, blue[:, c][ch], where=mb)
    return out


def _blend_table(colour: tuple[int, int, int]) -> np.ndarray:
    """``[256, 3]``: what each value of each channel becomes, ``uint8(0.35 * value + 0.65 * colour)`` (float64)."""
    values = np.arange(256, dtype=np.uint8)[:, None]
    return (0.35 * values + 0.65 * np.array(colour, np.float32)).astype(np.uint8)
