"""What each request of the annotate page does: JSON in, ``(HTTP status, body)`` out, no HTTP here.

Every photo is named by its stem, looked up in the :class:`~.photos.PhotoSet` (an unknown stem is 404);
every change carries ``rev``, the revision the page last saw (:mod:`.store`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from crackseg.apps.annotate.photos import PhotoSet
from crackseg.apps.annotate.state import InvalidEdit, PhotoState
from crackseg.apps.annotate.store import Conflict, LabelStore
from crackseg.apps.annotate.suggest import Responses
from crackseg.apps.annotate.trace import route, stroke

#: the most points one stroke or trace may send, and the widest stroke (pixels)
MAX_POINTS = 20000
MAX_WIDTH = 256

Reply = tuple[int, Any]


class NotFound(Exception):
    """A photo (or anything else) the request names that is not there: 404."""


@dataclass
class AnnotateApi:
    """The operations of the page on one photo folder and its labels folder."""

    photos: PhotoSet
    store: LabelStore
    responses: Responses

    # -- reading -------------------------------------------------------------------------------------------
    def _stem(self, stem: str) -> str:
        if stem not in self.photos:
            raise NotFound(f"no photo {stem!r} in {self.photos.folder}")
        return stem

    def _state_json(self, state: PhotoState) -> dict[str, Any]:
        return {**state.to_json(), "done": state.done, "has_mask": self.store.has_mask(state.stem)}

    def progress(self) -> dict[str, int]:
        done, total = self.store.progress()
        return {"done": done, "total": total}

    def listing(self) -> Reply:
        """Every photo (stem, file name, decided or not), the progress and the settings the page needs."""
        photos = [{"stem": s, "name": self.photos.path(s).name, "done": self.store.done(s)} for s in self.photos.stems]
        return 200, {"photos": photos, "progress": self.progress(), "patch_size": self.store.patch_size,
                     "suggest": self.responses.labeler_name, "out": str(self.store.out)}

    def photo(self, stem: str) -> Reply:
        return 200, self._state_json(self.store.state(self._stem(stem)))

    def image(self, stem: str) -> tuple[bytes, str]:
        return self.photos.browser_image(self._stem(stem))

    def mask_overlay(self, stem: str) -> bytes:
        """The saved mask as a PNG the page lays over the photo: red and opaque on crack, transparent elsewhere."""
        import cv2

        mask = self.store.mask(self._stem(stem))
        if mask is None:
            raise NotFound(f"{stem} has no mask")
        bgra = np.zeros((*mask.shape, 4), np.uint8)
        bgra[mask] = (40, 40, 255, 255)
        ok, buf = cv2.imencode(".png", bgra)
        return buf.tobytes()

    def suggestions(self, stem: str) -> Reply:
        state = self.store.state(self._stem(stem))
        patches = self.responses.suggestions(stem, state.patch_size)
        return 200, {"patches": [list(p) for p in patches], "patch_size": state.patch_size,
                     "labeler": self.responses.labeler_name}

    # -- changing ------------------------------------------------------------------------------------------
    def _saved(self, state: PhotoState, **extra: Any) -> Reply:
        return 200, {"state": self._state_json(state), "progress": self.progress(), **extra}

    def _conflict(self, exc: Conflict) -> Reply:
        return 409, {"error": str(exc), "state": self._state_json(exc.state), "progress": self.progress()}

    def save_labels(self, stem: str, body: dict[str, Any]) -> Reply:
        """``{"rev", "image", "patches"}``: the photo's whole label state as the page now has it."""
        stem = self._stem(stem)
        try:
            return self._saved(self.store.set_labels(stem, _rev(body), body.get("image"), body.get("patches", [])))
        except Conflict as exc:
            return self._conflict(exc)

    def edit_mask(self, stem: str, body: dict[str, Any]) -> Reply:
        """``{"rev", "op": "trace" | "erase", "points": [[x, y], ...], "width"}``: trace a crack through the points
        (each step a minimal path on the cost map) or erase along them, ``width`` pixels wide."""
        stem = self._stem(stem)
        rev, op = _rev(body), body.get("op")
        h, w = self.photos.shape(stem)
        points = _points(body.get("points"), w, h)
        width = body.get("width", 3)
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= MAX_WIDTH:
            raise InvalidEdit(f"width {width!r}: expected a whole number of pixels from 1 to {MAX_WIDTH}")
        if op == "trace":
            if len(points) < 2:
                raise InvalidEdit("trace: send at least two points")
            self.store.state(stem)  # a bad state file is reported before the cost map is computed
            cost = self.responses.cost(stem)
            path = np.concatenate([route(cost, a, b) for a, b in zip(points[:-1], points[1:])])
            drawn = stroke((h, w), path, width)
            edit = lambda m: m | drawn  # noqa: E731
        elif op == "erase":
            path = np.asarray(points, np.float64)
            drawn = stroke((h, w), path, width)
            edit = lambda m: m & ~drawn  # noqa: E731
        else:
            raise InvalidEdit(f"op {op!r}: expected trace or erase")
        try:
            state = self.store.edit_mask(stem, rev, edit)
        except Conflict as exc:
            return self._conflict(exc)
        return self._saved(state, path=np.asarray(path).round().astype(int).tolist())

    def undo(self, stem: str, body: dict[str, Any]) -> Reply:
        stem = self._stem(stem)
        try:
            state, undone = self.store.undo(stem, _rev(body))
        except Conflict as exc:
            return self._conflict(exc)
        return self._saved(state, undone=undone)


def _rev(body: dict[str, Any]) -> int:
    rev = body.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise InvalidEdit(f"rev {rev!r}: send the revision of the photo the page shows")
    return rev


def _points(value: Any, w: int, h: int) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_POINTS:
        raise InvalidEdit(f"points: expected a list of 1 to {MAX_POINTS} [x, y] pairs")
    out = []
    for p in value:
        ok = isinstance(p, list) and len(p) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
        if not ok or not (0 <= p[0] <= w and 0 <= p[1] <= h):
            raise InvalidEdit(f"point {p!r}: expected [x, y] inside the photo ({w}x{h})")
        out.append((min(float(p[0]), w - 1.0), min(float(p[1]), h - 1.0)))
    return out
