"""Samples and datasets: the first stage of the one-way data flow.

A dataset plugin returns a :class:`CrackDataset`; its ``samples(split)`` are
:class:`Sample` objects that load their image and (optional) mask lazily, so a
dataset never needs all its images in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from crackseg.base.errors import DataError
from crackseg.base.io import image_shape, read_image, read_mask
from crackseg.data.weak_labels import WeakLabels


@dataclass(frozen=True)
class Sample:
    """One image (and its mask, when known).

    ``load_image()`` returns ``uint8`` RGB ``[H,W,3]``; ``load_mask()`` returns
    ``bool [H,W]`` of the same size or raises :class:`DataError`; ``weak_labels()`` returns the
    image's :class:`~crackseg.data.weak_labels.WeakLabels` or None.
    ``source`` names the file (or generator) for error messages.
    """

    stem: str
    load_image: Callable[[], np.ndarray]
    load_mask: Callable[[], np.ndarray] | None = None
    source: str = ""
    #: the image's weak labels (an image label and/or patch labels), read when first asked for
    load_weak_labels: Callable[[], WeakLabels | None] | None = None

    @property
    def has_mask(self) -> bool:
        return self.load_mask is not None

    def weak_labels(self) -> WeakLabels | None:
        """The image's weak labels (:class:`~crackseg.data.weak_labels.WeakLabels`), or None when it has none."""
        return self.load_weak_labels() if self.load_weak_labels is not None else None

    def mask(self) -> np.ndarray:
        if self.load_mask is None:
            raise DataError(f"{self.source or self.stem}: no ground-truth mask for this image")
        return self.load_mask()


@runtime_checkable
class CrackDataset(Protocol):
    """What a dataset plugin's factory returns."""

    name: str

    def splits(self) -> list[str]:
        """Split names available, e.g. ``["train", "test", "all"]``."""
        ...

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` in a stable order; unknown split → DataError."""
        ...


def file_sample(image_path: Path, mask_path: Path | None, stem: str | None = None) -> Sample:
    """A :class:`Sample` backed by files; the mask is checked against the image size."""
    image_path = Path(image_path)

    def load_image() -> np.ndarray:
        return read_image(image_path)

    load_mask = None
    if mask_path is not None:
        mpath = Path(mask_path)

        def load_mask() -> np.ndarray:
            # size check needs the image size; read its header cheaply via the image itself
            shape = image_shape(image_path)
            return read_mask(mpath, shape)

    return Sample(stem=stem or image_path.stem, load_image=load_image, load_mask=load_mask, source=str(image_path))


class ListDataset:
    """A :class:`CrackDataset` over precomputed split → samples lists."""

    def __init__(self, name: str, splits: dict[str, list[Sample]]) -> None:
        self.name = name
        self._splits = splits

    def splits(self) -> list[str]:
        return list(self._splits)

    def samples(self, split: str) -> list[Sample]:
        if split not in self._splits:
            raise DataError(
                f"dataset {self.name!r} has no split {split!r} (available: {', '.join(self._splits) or 'none'})"
            )
        return list(self._splits[split])
