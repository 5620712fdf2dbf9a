"""One photo through a model: read it, predict it, write its mask, probability map and overlay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from crackseg.base.io import read_image, write_png
from crackseg.base.maps import crack_mask
from crackseg.base.overlays import overlay
from crackseg.prediction.windows import WindowPredictor

#: photos from this many pixels on get a line in the log: their size and how they are predicted
LARGE_PIXELS = 50_000_000


def predict_one(predictor: WindowPredictor, path: Path, out: Path, settings: dict[str, Any], threshold: float,
                progress: Callable[[int], object] | None = None, log: Callable[[str], object] | None = None) -> Path:
    """Write ``out/<stem>.png`` (binary), ``out/prob/<stem>.png`` and ``out/overlay/<stem>.png`` for the photo
    at ``path``; return the mask's path. ``settings`` are the model's ``predict:`` settings (erosion,
    min-max normalisation); ``progress(n)`` is called with the windows each forward pass computed; ``log`` gets
    one line for a photo of :data:`LARGE_PIXELS` or more (its size, its windows).

    Memory, in bytes per pixel of the photo: about 6 while OpenCV decodes it (its result is copied once), then
    the photo (3) and its ``uint8`` map (1), and the mask (1); a tiled photo needs no full-size float map
    (min-max normalisation and resizing: one, 4, for a moment); the overlay is drawn on the photo itself once
    nothing else needs it, and the PNGs are streamed into their files.
    """
    img = read_image(path)
    h, w = img.shape[:2]
    if log is not None and h * w >= LARGE_PIXELS:
        log(large_photo_line(predictor, path, (h, w)))
    u8 = predictor.predict_uint8(img, int(settings.get("erosion_iterations", 0)),
                                 bool(settings.get("minmax_normalize", False)), progress=progress)
    mask = crack_mask(u8, threshold)
    written = write_png(out / f"{path.stem}.png", mask)  # bool: written 0/255
    write_png(out / "prob" / f"{path.stem}.png", u8)
    del u8
    write_png(out / "overlay" / f"{path.stem}.png", overlay(img, mask, in_place=True), consume=True)
    return written


def large_photo_line(predictor: WindowPredictor, path: Path, shape: tuple[int, int]) -> str:
    """``IMG.jpg: 108 MP (12000x9000), predicting in 2940 windows of 256x256`` (or ``..., resized to 256x256``)."""
    h, w = shape
    s = predictor.size
    head = f"{path.name}: {h * w / 1e6:.3g} MP ({w}x{h})"
    n = predictor.window_count(shape)
    if predictor.tiles(shape):
        return f"{head}, predicting in {n} windows of {s}x{s}"
    return f"{head}, resized to {s}x{s} for the model (--mode tile keeps its detail)"

