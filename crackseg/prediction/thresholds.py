"""Which probability a model's masks are cut at: ``--threshold``, a run's ODS threshold, or the saved one.

``crackseg export`` records the threshold ``crackseg predict SOURCE`` would use (:func:`model_threshold`)
in the ONNX model (its ``threshold`` metadata entry, :func:`threshold_record`), so that ``crackseg predict
MODEL.onnx`` cuts the same masks as ``crackseg predict RUN_DIR``. An ONNX model exported before that
(no ``threshold`` entry) is cut at the ``predict.threshold`` saved in it, as it always was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crackseg.base.errors import CracksegError
from crackseg.config.run_folder import METRICS_FILE

#: where a threshold came from (the ``from`` of an exported model's ``threshold`` entry): a run's ODS
#: threshold, a run's ``predict.threshold`` (no ODS threshold), a checkpoint's ``predict.threshold``
FROM_ODS, FROM_RUN, FROM_CHECKPOINT = "ods", "run", "checkpoint"


def model_threshold(source: str | Path, pc: Mapping[str, Any], *,
                    remedy: str = "pass --threshold T") -> tuple[float, str, str]:
    """(threshold, why, where from) of a run folder or checkpoint ``source`` when no ``--threshold`` is given:
    a run folder's ODS threshold (``metrics.json``), else its ``predict.threshold`` (``pc``); a checkpoint's
    ``predict.threshold``. ``remedy`` ends the error for an unreadable ``metrics.json``."""
    saved = float(pc.get("threshold", 0.5))
    if not Path(source).is_dir():
        return saved, "predict.threshold saved in the checkpoint", FROM_CHECKPOINT
    metrics = Path(source) / METRICS_FILE
    if not metrics.is_file():
        return saved, f"the run's predict.threshold; no {METRICS_FILE} (not evaluated yet)", FROM_RUN
    try:
        ods_t = json.loads(metrics.read_text()).get("ods_threshold")
    except (OSError, ValueError, AttributeError):
        raise CracksegError(f"{metrics}: unreadable; {remedy}") from None
    if not isinstance(ods_t, (int, float)) or isinstance(ods_t, bool) or not 0.0 <= ods_t < 1.0:
        return saved, f"the run's predict.threshold; {METRICS_FILE} has no ODS threshold (no ground truth)", FROM_RUN
    return float(ods_t), f"the run's ODS threshold, {METRICS_FILE}", FROM_ODS


def threshold_record(source: str | Path, pc: Mapping[str, Any], *,
                     remedy: str = "pass --threshold T") -> dict[str, Any]:
    """The ``threshold`` entry ``crackseg export`` writes into an ONNX model's metadata: ``value`` (what
    ``crackseg predict SOURCE`` cuts at), ``from`` (:data:`FROM_ODS`, :data:`FROM_RUN` or
    :data:`FROM_CHECKPOINT`), ``why`` (the phrase ``crackseg predict SOURCE`` prints) and ``saved`` (the
    model's own ``predict.threshold``)."""
    value, why, origin = model_threshold(source, pc, remedy=remedy)
    return {"value": value, "from": origin, "why": why, "saved": float(pc.get("threshold", 0.5))}


def valid_record(record: Any) -> bool:
    """Whether ``record`` is a usable ``threshold`` entry: a mapping with a ``value`` in [0, 1) and a ``from``."""
    if not isinstance(record, Mapping):
        return False
    value = record.get("value")
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
            and isinstance(record.get("from"), str))


def choose_threshold(source: str | Path, threshold: float | None, pc: Mapping[str, Any],
                     recorded: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """(threshold, why): ``threshold`` when given; for a run folder its ODS threshold (``metrics.json``);
    for an ONNX model the threshold ``crackseg export`` recorded in it (``recorded``, its ``threshold``
    entry), else its saved ``predict.threshold`` (an export of an earlier crackseg); otherwise
    ``predict.threshold`` as saved with the model (``pc``)."""
    if threshold is not None:
        return float(threshold), "--threshold"
    if Path(source).suffix.lower() != ".onnx":
        value, why, _ = model_threshold(source, pc)
        return value, why
    name = Path(source).name
    if recorded is None or not valid_record(recorded):
        return float(pc.get("threshold", 0.5)), "predict.threshold saved in the ONNX model"
    value, origin = float(recorded["value"]), str(recorded["from"])
    if origin == FROM_ODS:
        return value, f"the run's ODS threshold, recorded in {name} by crackseg export"
    if origin == FROM_RUN:
        return value, (f"the run's predict.threshold, recorded in {name} by crackseg export; "
                       f"the run had no ODS threshold")
    if origin == FROM_CHECKPOINT:
        return value, "predict.threshold saved in the ONNX model"
    return value, f"the threshold recorded in {name} by crackseg export"
