"""One photo through a model: read it, predict it, write its mask, probability map and overlay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.io import read_image, write_png
from crackseg.base.maps import crack_mask
from crackseg.base.overlays import overlay
from crackseg.prediction.windows import WindowPredictor, postprocess


def predict_one(predictor: WindowPredictor, path: Path, out: Path, settings: dict[str, Any], threshold: float,
                progress: Callable[[int], object] | None = None) -> Path:
    """Write ``out/<stem>.png`` (binary), ``out/prob/<stem>.png`` and ``out/overlay/<stem>.png`` for the photo
    at ``path``; return the mask's path. ``settings`` are the model's ``predict:`` settings (erosion,
    min-max normalisation); ``progress(n)`` is called with the windows each forward pass computed."""
    img = read_image(path)
    prob = predictor.predict_many([img], progress=progress)[0]
    u8 = postprocess(prob, int(settings.get("erosion_iterations", 0)), bool(settings.get("minmax_normalize", False)))
    mask = crack_mask(u8, threshold)
    written = write_png(out / f"{path.stem}.png", mask.astype(np.uint8) * 255)
    write_png(out / "prob" / f"{path.stem}.png", u8)
    write_png(out / "overlay" / f"{path.stem}.png", overlay(img, mask))
    return written
