"""Tracing a crack between clicked points: a minimal path on a crack cost map, drawn into the mask.

The cost map is low where the crack response is high (:func:`cost_map`); the path between two points is the
cheapest 8-connected route (scikit-image's :func:`skimage.graph.route_through_array`, geometric costs) inside
the box of the two points widened by a margin, so a long photo costs no more than the stretch being traced.
Without a labeler's soft map the response is :func:`dark_line_response`: how much darker each pixel is than
its surroundings (morphological black top-hats at a few widths), which is what a crack looks like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the cheapest step (on the strongest response) and the widths (pixels) the dark-line response looks for
FLOOR = 0.05
WIDTHS = (7, 15, 31)


def dark_line_response(image: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` in [0, 1]: dark thin structures of an RGB or grey image (1 at the 99.5th percentile)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    response = np.zeros_like(grey)
    for k in WIDTHS:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        np.maximum(response, cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel), out=response)
    top = float(np.percentile(response, 99.5))
    return np.clip(response / max(top, 1e-6), 0.0, 1.0).astype(np.float32)


def cost_map(response: np.ndarray) -> np.ndarray:
    """The cost of stepping on each pixel: :data:`FLOOR` on the strongest response, about 1 + FLOOR on none."""
    r = np.clip(np.nan_to_num(response.astype(np.float32)), 0.0, 1.0)
    return (FLOOR + (1.0 - r) ** 2).astype(np.float32)


def route(cost: np.ndarray, start: Sequence[float], end: Sequence[float], margin: int | None = None) -> np.ndarray:
    """The cheapest path from ``start`` to ``end`` (``(x, y)`` pixels) over ``cost``: ``int [N, 2]`` of ``(x, y)``."""
    from skimage.graph import route_through_array

    h, w = cost.shape
    (sx, sy), (ex, ey) = (_pixel(start, w, h), _pixel(end, w, h))
    if margin is None:
        margin = max(16, int(0.5 * np.hypot(ex - sx, ey - sy)))
    x0, x1 = max(0, min(sx, ex) - margin), min(w - 1, max(sx, ex) + margin)
    y0, y1 = max(0, min(sy, ey) - margin), min(h - 1, max(sy, ey) + margin)
    path, _ = route_through_array(cost[y0 : y1 + 1, x0 : x1 + 1], (sy - y0, sx - x0), (ey - y0, ex - x0),
                                  fully_connected=True, geometric=True)
    return np.array([(c + x0, r + y0) for r, c in path], dtype=np.int64).reshape(-1, 2)


def _pixel(point: Sequence[float], w: int, h: int) -> tuple[int, int]:
    x, y = int(round(float(point[0]))), int(round(float(point[1])))
    return min(max(x, 0), w - 1), min(max(y, 0), h - 1)


def stroke(shape: tuple[int, int], points: np.ndarray, width: int) -> np.ndarray:
    """``bool [H, W]``: the polyline through ``points`` (``(x, y)``) drawn ``width`` pixels wide, round ends."""
    import cv2

    canvas = np.zeros(shape, np.uint8)
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    width = max(1, int(width))
    if len(pts) == 1 or width > 1:
        for p in pts[[0, -1], 0]:
            cv2.circle(canvas, (int(p[0]), int(p[1])), width // 2, 1, thickness=-1)
    if len(pts) > 1:
        cv2.polylines(canvas, [pts], False, 1, thickness=width, lineType=cv2.LINE_8)
    return canvas.astype(bool)
