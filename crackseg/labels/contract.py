"""Phase 1 contract: what a labeler is, and what the pipeline hands it.

Running a labeler over a split, with caching, is :mod:`crackseg.labels.pseudo_labels`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crackseg.data.samples import Sample


@dataclass(frozen=True)
class LabelFiles:
    """The pseudo-label files of one training image (written by the label stage)."""

    #: binary mask, uint8 0/255
    binary: Path
    #: soft map, uint8 (value / 255 = the labeler's confidence)
    soft: Path


@dataclass
class PseudoLabel:
    """A labeler's answer for one image."""

    #: float32 [H, W] in [0, 1] — the activation / confidence map
    soft: np.ndarray
    #: bool [H, W] — the pseudo-label mask used for training
    binary: np.ndarray


@dataclass
class LabelContext:
    """What the pipeline hands to a labeler."""

    device: str = "cpu"
    #: folder for the labeler's own files that are not shared artefacts
    work_dir: Path = Path(".")
    seed: int = 0
    quiet: bool = False
    #: artefact name → its folder, for every artefact the labeler declared (see :meth:`Labeler.artefacts`)
    artefact_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Deprecated (0.2, gone in 0.3): the pipeline never set it; a labeler's batch size is its own parameter."""
        warnings.warn("LabelContext.batch_size is deprecated since crackseg 0.2 (it was always 16): give the labeler "
                      "a batch_size parameter of its own", DeprecationWarning, stacklevel=2)
        return 16

    def artefact_dir(self, name: str) -> Path:
        """The folder of the declared artefact ``name`` (``work_dir/name`` when undeclared)."""
        return Path(self.artefact_dirs.get(name, Path(self.work_dir) / name))


@runtime_checkable
class Labeler(Protocol):
    """What a labeler plugin's factory returns.

    Optional: ``artefacts() -> dict[str, Any]`` names the models a labeler trains in
    ``prepare`` (e.g. ``{"classifier": {...its settings...}}``). The pipeline gives each
    one a folder, ``context.artefact_dir(name)``, keyed by those settings, the training
    images and the seed, locked while ``prepare`` runs, and shared between runs (and
    ``compare`` cells) that use the same ``shared_dir``, so one artefact is trained once
    for every labeler that asks for the same settings. The settings are plain JSON-able
    data; an empty mapping means nothing is trained (e.g. a checkpoint was given).
    ``distributed_prepare = True`` (class attribute): under ``torchrun`` every rank calls
    ``prepare`` together (the labeler distributes its training itself); otherwise rank 0
    prepares first and the others afterwards, loading what rank 0 wrote.
    """

    def prepare(self, train: Sequence[Sample], context: LabelContext) -> None:
        """Train or load what the labeler needs (may do nothing)."""
        ...

    def label(self, samples: Sequence[Sample], context: LabelContext) -> list[PseudoLabel]:
        """Pseudo-labels for ``samples`` (same order, each at its image's size)."""
        ...

    def fingerprint(self) -> str:
        """A string that changes whenever the labels would change (parameters, trained weights)."""
        ...


def declared_artefacts(labeler: Any) -> dict[str, Any]:
    """The labeler's ``artefacts()`` (empty when it declares none)."""
    fn = getattr(labeler, "artefacts", None)
    if not callable(fn):
        return {}
    out = fn() or {}
    if not isinstance(out, dict) or not all(isinstance(k, str) and k for k in out):
        raise TypeError("Labeler.artefacts() must return a mapping of artefact names to their settings")
    return out
