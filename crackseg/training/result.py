"""What a trainer reports back when it is done (the engine builds it too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """What a trainer reports back (also what the engine's :meth:`~crackseg.training.engine.Engine.result` gives)."""

    epochs_done: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    #: training time of the whole training: every session of a resumed one; a reused finished one keeps its own
    seconds: float = 0.0
    images_per_s: float = 0.0
    #: why training stopped before its last epoch ("max_steps 5", "time budget 60s", "already finished")
    stopped_early: str = ""
