"""Phase 2 contract: what a training method is, and the job the pipeline hands it.

A trainer owns how the backbone learns from the pseudo-labels; the
:class:`~crackseg.engine.Engine` in the job owns the infrastructure every trainer shares
(device, distribution, precision, checkpoints and resume, time budgets, progress,
history, loggers). The built-in ``supervised`` trainer is the plain loop; a method that
refines its labels while it trains (CAC) is another trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .data import Sample

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig
    from .engine import Engine


@dataclass(frozen=True)
class LabelFiles:
    """The pseudo-label files of one training image (written by the label stage)."""

    #: binary mask, uint8 0/255
    binary: Path
    #: soft map, uint8 (value / 255 = the labeler's confidence)
    soft: Path


@dataclass
class TrainJob:
    """Everything a trainer gets."""

    #: the backbone, on the CPU (``engine.model`` is the same module on the device)
    model: Any
    #: the training images
    samples: Sequence[Sample]
    #: stem → its pseudo-label files
    labels: dict[str, LabelFiles]
    #: ``loss(outputs, target, weight=None) -> scalar``: the configured loss summed over the
    #: backbone's named outputs with their weights; ``weight`` ([B,1,H,W], 0 = ignore) masks pixels
    loss: Callable[..., Any]
    #: the ``train:`` settings
    config: TrainConfig
    #: the shared training infrastructure (see :class:`crackseg.engine.Engine`)
    engine: Engine
    #: square size of the training images
    image_size: int
    #: a folder for the trainer's own files (e.g. labels it refines); kept across --resume
    work_dir: Path
    seed: int = 0
    #: registered names of the backbone and the dataset (errors in their code name their plugins)
    backbone: str = ""
    dataset: str = ""
    #: extra things a caller may pass on (free-form)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a trainer reports back (also what the engine's :meth:`~crackseg.engine.Engine.result` gives)."""

    epochs_done: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    #: why training stopped before its last epoch ("max_steps 5", "time budget 60s", "already finished")
    stopped_early: str = ""


@runtime_checkable
class Trainer(Protocol):
    """What a trainer plugin's factory returns."""

    def fit(self, job: TrainJob) -> TrainResult:
        """Train ``job.model`` in place (resuming from ``job.engine`` when it holds a checkpoint)."""
        ...
