"""Applying a segmentation model to images of any size (numpy only; no torch).

``WindowPredictor.predict_many`` returns float32 maps in [0, 1] at each image's own size:

* ``resize``: squash to the model's window size, predict, resize back (the CrackCLIP
  authors' protocol);
* ``tile``: slide a window of that size with overlap over the image and blend the
  windows with smooth weights (a 4032×3024 phone photo works);
* ``auto``: ``tile`` when the image's longer side exceeds twice the window size.

A subclass supplies ``forward_batch`` (a torch module in ``inference``, an ONNX session in
``onnx_model``); the rest, and ``postprocess``, is shared so both give the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class WindowPredictor:
    """Resizing, tiling and blending around a ``forward_batch`` of ``size``×``size`` windows."""

    size: int
    batch_size: int
    mode: str
    overlap: float

    def __init__(self, size: int, batch_size: int = 4, mode: str = "auto", overlap: float = 0.25) -> None:
        self.size = int(size)
        self.batch_size = max(1, int(batch_size))
        self.mode = mode
        self.overlap = min(max(float(overlap), 0.0), 0.9)

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N,S,S,3]`` → crack probability ``float32 [N,S,S]``."""
        raise NotImplementedError

    # -- per image ------------------------------------------------------------------
    def predict_many(self, images: Sequence[np.ndarray],
                     progress: Callable[[int], object] | None = None) -> list[np.ndarray]:
        """Probability maps (each at its image's size) for a list of RGB uint8 images.

        ``progress(n)`` is called after each forward pass with the ``n`` windows it computed
        (:meth:`window_count` per image in all), e.g. a progress bar's ``update``.
        """
        out: list[np.ndarray | None] = [None] * len(images)
        resize_idx = [i for i, im in enumerate(images) if not self._tiles(im.shape[:2])]
        for start in range(0, len(resize_idx), self.batch_size):
            chunk = resize_idx[start : start + self.batch_size]
            batch = np.stack([_resize(images[i], self.size, self.size) for i in chunk])
            probs = self.forward_batch(batch)
            for i, p in zip(chunk, probs):
                h, w = images[i].shape[:2]
                out[i] = _resize_prob(p, w, h)
            if progress is not None:
                progress(len(chunk))
        for i, im in enumerate(images):
            if out[i] is None:
                out[i] = self.predict_tiled(im, progress)
        return [o for o in out if o is not None]

    def window_count(self, shape: tuple[int, int]) -> int:
        """How many windows an image of ``shape`` (H, W) takes: 1 resized, or its tiles."""
        if not self._tiles(shape):
            return 1
        ys, xs = self._tile_starts(shape)
        return len(ys) * len(xs)

    def _tiles(self, shape: tuple[int, ...]) -> bool:
        if self.mode == "tile":
            return True
        if self.mode == "resize":
            return False
        return max(shape[:2]) > 2 * self.size

    def _tile_starts(self, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
        """The window corners along y and x of an image of ``shape`` (padded to at least one window)."""
        s = self.size
        stride = max(1, int(round(s * (1 - self.overlap))))
        return _starts(max(shape[0], s), s, stride), _starts(max(shape[1], s), s, stride)

    def predict_tiled(self, image: np.ndarray, progress: Callable[[int], object] | None = None) -> np.ndarray:
        """One image in overlapping windows, blended; ``progress`` as in :meth:`predict_many`."""
        s = self.size
        h, w = image.shape[:2]
        import cv2

        ph, pw = max(0, s - h), max(0, s - w)
        img = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if (ph or pw) else image
        H, W = img.shape[:2]
        ys, xs = self._tile_starts((H, W))
        weight = _blend_window(s)
        acc = np.zeros((H, W), np.float32)
        norm = np.zeros((H, W), np.float32)
        coords = [(y, x) for y in ys for x in xs]
        for start in range(0, len(coords), self.batch_size):
            chunk = coords[start : start + self.batch_size]
            probs = self.forward_batch(np.stack([img[y : y + s, x : x + s] for y, x in chunk]))
            for (y, x), p in zip(chunk, probs):
                acc[y : y + s, x : x + s] += p * weight
                norm[y : y + s, x : x + s] += weight
            if progress is not None:
                progress(len(chunk))
        return (acc / np.maximum(norm, 1e-8))[:h, :w]


def _starts(total: int, size: int, stride: int) -> list[int]:
    if total <= size:
        return [0]
    starts = list(range(0, total - size + 1, stride))
    if starts[-1] != total - size:
        starts.append(total - size)
    return starts


def _blend_window(s: int) -> np.ndarray:
    """Smooth weights that fall towards the tile border but never reach zero."""
    r = np.hanning(s + 2)[1:-1].astype(np.float32)
    w = np.outer(r, r)
    return np.maximum(w, 1e-3)


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if image.shape[0] == h and image.shape[1] == w:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)


def _resize_prob(p: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if p.shape == (h, w):
        return p.astype(np.float32)
    return np.clip(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0).astype(np.float32)


def postprocess(prob: np.ndarray, erosion_iterations: int = 0, minmax_normalize: bool = False) -> np.ndarray:
    """Probability map → ``uint8`` map (value/255 = probability) as saved and evaluated.

    ``minmax_normalize`` rescales each map to [0, 1] (the authors' test.py); erosion
    is grey-scale with a 3×3 rectangle, ``erosion_iterations`` times (the paper: 3).
    """
    p = prob.astype(np.float32)
    if minmax_normalize:
        lo, hi = float(p.min()), float(p.max())
        p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
    u8 = np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if erosion_iterations > 0:
        import cv2

        u8 = cv2.erode(u8, np.ones((3, 3), np.uint8), iterations=erosion_iterations)
    return u8
