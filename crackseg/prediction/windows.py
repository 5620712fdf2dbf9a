"""Applying a segmentation model to images of any size (numpy only; no torch).

``WindowPredictor.predict_many`` returns float32 maps in [0, 1] at each image's own size:

* ``resize``: squash to the model's window size, predict, resize back (the CrackCLIP
  authors' protocol);
* ``tile``: slide a window of that size with overlap over the image and blend the
  windows with smooth weights (a 4032×3024 phone photo works);
* ``auto``: ``tile`` when the image's longer side exceeds twice the window size.

A subclass supplies ``forward_batch`` (a torch module in ``inference``, an ONNX session in
``onnx_model``); the rest, and ``postprocess``, is shared so both give the same masks.

Memory: tiles are blended in a band one window high that slides down the image, finished rows
leaving it for the output, so a tiled photo costs its float32 map (``predict_many``) or only its
``uint8`` map (``predict_uint8`` without min-max normalisation) besides the image itself;
``postprocess`` works in row blocks with no full-size float temporaries.
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

    def tiles(self, shape: tuple[int, ...]) -> bool:
        """Whether an image of ``shape`` (H, W) is predicted in windows (else resized to one)."""
        return self._tiles(shape)

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
        h, w = image.shape[:2]
        out = np.empty((h, w), np.float32)

        def keep(top: int, rows: np.ndarray) -> None:
            out[top : top + len(rows)] = rows

        self._tiled_rows(image, keep, progress)
        return out

    def predict_uint8(self, image: np.ndarray, erosion_iterations: int = 0, minmax_normalize: bool = False,
                      progress: Callable[[int], object] | None = None) -> np.ndarray:
        """``postprocess(self.predict_many([image])[0], erosion_iterations, minmax_normalize)``: the same ``uint8``
        map, computed without the full-size float map where it is not needed.

        A tiled image without min-max normalisation goes from the blended windows straight to ``uint8``, band by
        band (1 byte a pixel besides the image); min-max normalisation (which needs the whole map's range) and
        resizing keep one float32 map (4 bytes a pixel) and convert it in row blocks.
        """
        if not self._tiles(image.shape[:2]):
            prob = self.predict_many([image], progress)[0]
            return postprocess(prob, erosion_iterations, minmax_normalize)
        if minmax_normalize:
            return postprocess(self.predict_tiled(image, progress), erosion_iterations, minmax_normalize)
        u8 = np.empty(image.shape[:2], np.uint8)

        def keep(top: int, rows: np.ndarray) -> None:
            _into_uint8(rows, None, u8[top : top + len(rows)])  # ``rows`` is a fresh array: its scratch

        self._tiled_rows(image, keep, progress)
        return _erode(u8, erosion_iterations)

    def _tiled_rows(self, image: np.ndarray, emit: Callable[[int, np.ndarray], None],
                    progress: Callable[[int], object] | None) -> None:
        """Predict ``image`` in overlapping windows and call ``emit(top, rows)`` with each band of finished rows
        (blended probabilities ``float32 [n, W]`` of the image's rows ``top .. top+n-1``), top to bottom.

        The windows are computed in the same batches and added to each pixel in the same order as one
        full-size accumulator would add them, so the values are bit for bit those of blending the whole image
        at once; only a band one window high is held.
        """
        s = self.size
        h, w = image.shape[:2]
        import cv2

        ph, pw = max(0, s - h), max(0, s - w)
        img = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if (ph or pw) else image
        H, W = img.shape[:2]
        ys, xs = self._tile_starts((H, W))
        weight = _blend_window(s)
        acc = np.zeros((s, W), np.float32)  # rows top .. top+s-1 of the image's accumulator
        norm = np.zeros((s, W), np.float32)
        top = 0

        def finish(until: int) -> int:
            """Emit rows top .. until-1 (no later window reaches them) and slide the band down to ``until``."""
            d = until - top
            n = min(d, h - top)
            if n > 0:
                rows = np.maximum(norm[:n, :w], 1e-8)
                emit(top, np.divide(acc[:n, :w], rows, out=rows))
            acc[: s - d] = acc[d:]
            acc[s - d :] = 0
            norm[: s - d] = norm[d:]
            norm[s - d :] = 0
            return until

        coords = [(y, x) for y in ys for x in xs]
        for start in range(0, len(coords), self.batch_size):
            chunk = coords[start : start + self.batch_size]
            probs = self.forward_batch(np.stack([img[y : y + s, x : x + s] for y, x in chunk]))
            for (y, x), p in zip(chunk, probs):
                if y > top:
                    top = finish(y)
                acc[y - top : y - top + s, x : x + s] += p * weight
                norm[y - top : y - top + s, x : x + s] += weight
            if progress is not None:
                progress(len(chunk))
        finish(top + s)


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
    big = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
    if big.dtype == np.float32:
        return np.clip(big, 0.0, 1.0, out=big)  # in place: the only full-size copy
    return np.clip(big, 0.0, 1.0).astype(np.float32)


#: rows converted at a time by :func:`postprocess`: its float temporaries stay a few MB
_BLOCK_PIXELS = 1 << 18


def postprocess(prob: np.ndarray, erosion_iterations: int = 0, minmax_normalize: bool = False) -> np.ndarray:
    """Probability map → ``uint8`` map (value/255 = probability) as saved and evaluated.

    ``minmax_normalize`` rescales each map to [0, 1] (the authors' test.py); erosion
    is grey-scale with a 3×3 rectangle, ``erosion_iterations`` times (the paper: 3).
    The map is converted in blocks of rows (float32 arithmetic, as on the whole map at once).
    """
    p = np.asarray(prob)
    span = None
    if minmax_normalize:
        lo, hi = (float(np.float32(v)) for v in (p.min(), p.max())) if p.size else (0.0, 0.0)
        span = (lo, hi)
    out = np.empty(p.shape, np.uint8)
    if p.ndim == 0:
        _into_uint8(p.astype(np.float32), span, out)
    else:
        step = max(1, _BLOCK_PIXELS // max(1, p[:1].size))
        for r in range(0, p.shape[0], step):
            _into_uint8(p[r : r + step].astype(np.float32), span, out[r : r + step])
    return _erode(out, erosion_iterations)


def _into_uint8(p: np.ndarray, span: tuple[float, float] | None, out: np.ndarray) -> None:
    """``out[...] = uint8(clip(p * 255 + 0.5, 0, 255))`` for float32 ``p``, min-max rescaled first by ``span`` =
    (lo, hi); ``p`` is scratch (overwritten): the same float32 operations as on a copy, without one."""
    if span is not None:
        lo, hi = span
        if hi > lo:
            p -= lo
            p /= hi - lo
        else:
            p[...] = 0
    p *= 255.0
    p += 0.5
    np.clip(p, 0, 255, out=p)
    out[...] = p.astype(np.uint8)


def _erode(u8: np.ndarray, iterations: int) -> np.ndarray:
    if iterations <= 0:
        return u8
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    if u8.ndim != 2:
        return cv2.erode(u8, kernel, iterations=iterations)
    return cv2.erode(u8, kernel, dst=u8, iterations=iterations)  # in place: no second full-size map
