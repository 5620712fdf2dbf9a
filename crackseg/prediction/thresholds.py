"""Which probability a model's masks are cut at: ``--threshold``, a run's ODS threshold, or the saved one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crackseg.base.errors import CracksegError
from crackseg.config.run_folder import METRICS_FILE


def choose_threshold(source: str | Path, threshold: float | None, pc: dict[str, Any]) -> tuple[float, str]:
    """(threshold, why): ``threshold`` when given; for a run folder its ODS threshold (``metrics.json``);
    otherwise ``predict.threshold`` as saved with the model (``pc``)."""
    if threshold is not None:
        return float(threshold), "--threshold"
    saved = float(pc.get("threshold", 0.5))
    kind = "the ONNX model" if Path(source).suffix.lower() == ".onnx" else "the checkpoint"
    if not Path(source).is_dir():
        return saved, f"predict.threshold saved in {kind}"
    metrics = Path(source) / METRICS_FILE
    if not metrics.is_file():
        return saved, f"the run's predict.threshold; no {METRICS_FILE} (not evaluated yet)"
    try:
        ods_t = json.loads(metrics.read_text()).get("ods_threshold")
    except (OSError, ValueError, AttributeError):
        raise CracksegError(f"{metrics}: unreadable; pass --threshold T") from None
    if not isinstance(ods_t, (int, float)) or isinstance(ods_t, bool) or not 0.0 <= ods_t < 1.0:
        return saved, f"the run's predict.threshold; {METRICS_FILE} has no ODS threshold (no ground truth)"
    return float(ods_t), f"the run's ODS threshold, {METRICS_FILE}"
