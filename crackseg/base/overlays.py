"""Overlays: masks drawn over their images for people to look at (numpy only)."""

from __future__ import annotations

import numpy as np


def overlay(image: np.ndarray, mask: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """RGB overlay: predicted crack in red; with ``gt``, missed crack pixels in blue."""
    out = image.copy()
    red = np.array([255, 0, 0], np.float32)
    m = mask.astype(bool)
    out[m] = (0.35 * out[m] + 0.65 * red).astype(np.uint8)
    if gt is not None:
        miss = gt.astype(bool) & ~m
        out[miss] = (0.35 * out[miss] + 0.65 * np.array([0, 120, 255], np.float32)).astype(np.uint8)
    return out
