"""Crack response maps of the photos: what tracing follows and, with a labeler, which patches are suggested.

With ``--suggest LABELER`` a training-free labeler (any registered one that declares no artefact to train)
labels the photo when the page opens it: its binary label pre-marks the patches that hold at least one patch
side of crack pixels, and its soft map, with the dark-line response of :mod:`.trace` as a floor, is the
tracing response. The labeler is called through the registry by the name the user gives, like every command
that takes ``--labeler``. Without one the response is the dark-line response alone and nothing is suggested.
Maps are kept for the last few photos.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.apps.annotate.photos import PhotoSet
from crackseg.apps.annotate.trace import cost_map, dark_line_response
from crackseg.base.errors import ConfigError
from crackseg.base.io import read_image
from crackseg.data.samples import Sample
from crackseg.data.weak_labels import from_mask
from crackseg.labels.contract import LabelContext, declared_artefacts
from crackseg.labels.factory import create_labeler
from crackseg.plugins.blame import blamed, plugin_error

#: photos whose maps are kept
KEEP = 4


class Responses:
    """The crack response, cost map and suggested patches of each photo of a :class:`PhotoSet`."""

    def __init__(self, photos: PhotoSet, labeler: str | None = None) -> None:
        self.photos = photos
        self.labeler_name = labeler
        self._labeler: Any = None
        self._work: tempfile.TemporaryDirectory[str] | None = None
        self._context: LabelContext | None = None
        if labeler:
            self._labeler = _training_free(labeler)
            self._work = tempfile.TemporaryDirectory(prefix="crackseg-annotate-")
            self._context = LabelContext(device="cpu", work_dir=Path(self._work.name), quiet=True)
            with blamed("labelers", labeler, "prepare()"):
                self._labeler.prepare([], self._context)
        self._maps: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def _compute(self, stem: str) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_image(self.photos.path(stem))
        response = dark_line_response(image)
        if self._labeler is None:
            return cost_map(response), None
        name = str(self.labeler_name)
        sample = Sample(stem=stem, load_image=lambda: image, source=str(self.photos.path(stem)))
        with blamed("labelers", name, "label()"):
            [label] = self._labeler.label([sample], self._context)
            soft = np.clip(np.nan_to_num(np.asarray(label.soft, np.float32)), 0.0, 1.0)
            binary = np.asarray(label.binary, bool)
        if soft.shape != response.shape or binary.shape != response.shape:
            raise plugin_error("labelers", name, f"labelled {stem} at {soft.shape[::-1]}, not at the photo's "
                                                 f"{response.shape[::-1]}")
        return cost_map(np.maximum(soft, 0.5 * response)), binary

    def maps(self, stem: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(cost map ``float32 [H, W]``, the labeler's binary label or None) of photo ``stem``."""
        with self._lock:  # one photo at a time: a second request for it waits and finds it computed
            if stem not in self._maps:
                self._maps[stem] = self._compute(stem)
                while len(self._maps) > KEEP:
                    self._maps.popitem(last=False)
            self._maps.move_to_end(stem)
            return self._maps[stem]

    def cost(self, stem: str) -> np.ndarray:
        return self.maps(stem)[0]

    def suggestions(self, stem: str, patch_size: int) -> list[tuple[int, int]]:
        """Corners of the patches the labeler marks crack (none without a labeler)."""
        if self._labeler is None:
            return []
        binary = self.maps(stem)[1]
        if binary is None:
            return []
        labels = from_mask(binary, patch_size, min_crack_pixels=patch_size)
        return [(p.x, p.y) for p in labels.patches if p.crack]


def _training_free(name: str) -> Any:
    """The labeler ``name`` with its default parameters; one ConfigError line when it must train first."""
    labeler = create_labeler(name)
    with blamed("labelers", name, "artefacts()"):
        artefacts = declared_artefacts(labeler)
    if artefacts:
        raise ConfigError(f"--suggest {name}: labeler {name!r} trains a model first ({', '.join(artefacts)}); "
                          f"suggestions need a labeler that labels a photo as it is (crackseg list labelers)")
    return labeler
