"""Phase 1 contract: labelers turn images into pixel pseudo-labels.

The label *stage* (running a labeler over a split with caching) lives in
:mod:`crackseg.label_stage`; this module only defines what a labeler is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .data import Sample


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
    #: folder a labeler may use for its own artefacts (e.g. a trained classifier)
    work_dir: Path = Path(".")
    seed: int = 0
    quiet: bool = False
    #: a classifier checkpoint given by the user (``--classifier``), if any
    classifier: str | None = None
    #: classifier training settings from the config (``classifier:`` section)
    classifier_config: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16


@runtime_checkable
class Labeler(Protocol):
    """What a labeler plugin's factory returns."""

    def prepare(self, train: Sequence[Sample], context: LabelContext) -> None:
        """Train or load what the labeler needs (may do nothing)."""
        ...

    def label(self, samples: Sequence[Sample], context: LabelContext) -> list[PseudoLabel]:
        """Pseudo-labels for ``samples`` (same order, each at its image's size)."""
        ...

    def fingerprint(self) -> str:
        """A string that changes whenever the labels would change (params, classifier)."""
        ...
