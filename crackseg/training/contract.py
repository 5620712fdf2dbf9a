"""Phase 2 contract: what a training method is, and the job the pipeline hands it.

A trainer owns how the backbone learns from the pseudo-labels; the
:class:`~crackseg.training.engine.Engine` in the job owns the infrastructure every trainer shares
(device, distribution, precision, checkpoints and resume, time budgets, progress,
history, loggers). The built-in ``supervised`` trainer is the plain loop; a method that
refines its labels while it trains (CAC) is another trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from crackseg.config.run_config import TrainConfig
from crackseg.data.samples import Sample
from crackseg.labels.contract import LabelFiles
from crackseg.training.engine import Engine
from crackseg.training.result import TrainResult


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
    #: the shared training infrastructure (see :class:`crackseg.training.engine.Engine`)
    engine: Engine
    #: square size of the training images
    image_size: int
    #: a folder for the trainer's own files (e.g. labels it refines); kept across --resume
    work_dir: Path
    seed: int = 0
    #: registered names of the backbone and the dataset (errors in their code name their plugins)
    backbone: str = ""
    dataset: str = ""


@runtime_checkable
class Trainer(Protocol):
    """What a trainer plugin's factory returns."""

    def fit(self, job: TrainJob) -> TrainResult:
        """Train ``job.model`` in place (resuming from ``job.engine`` when it holds a checkpoint)."""
        ...
