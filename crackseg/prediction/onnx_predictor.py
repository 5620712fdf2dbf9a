"""Running an exported ``.onnx`` model (``crackseg export``) with onnxruntime; never imports torch.

``OnnxPredictor`` resizes and tiles exactly like the torch ``Predictor`` (both are
``windows.WindowPredictor``), so ``crackseg predict model.onnx photos/`` writes the same
masks as ``crackseg predict RUN_DIR photos/``, on a machine without PyTorch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.console import first_line
from crackseg.base.errors import CracksegError, DataError
from crackseg.prediction.thresholds import valid_record
from crackseg.prediction.windows import WindowPredictor

META_KEY = "crackseg"


def default_threads() -> int:
    """The intra-op threads of an onnxruntime session when none are asked for: ``OMP_NUM_THREADS`` when set
    (as torch reads it), else 0, onnxruntime's default (one per physical core, torch's default too)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 0


def session_options(threads: int | None = None) -> Any:
    """The onnxruntime session settings crackseg runs its models with (the CPU tuning of ``crackseg export``).

    Every graph optimisation (``ORT_ENABLE_ALL``: constant folding, conv + activation fusion, and the
    blocked NCHWc conv layout, whose gain over ``ORT_ENABLE_EXTENDED`` was 1.3x here), applied at load time
    on the machine that runs it (an optimised file would be tied to the CPU it was made on); ``threads``
    intra-op threads (:func:`default_threads` when None), one inter-op thread and sequential execution
    (these graphs are chains of convolutions: nothing runs in parallel at the node level).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = default_threads() if threads is None else max(0, int(threads))
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = True  # the windows all have one shape: plan the buffers once
    options.enable_cpu_mem_arena = True
    return options


def open_session(path: str | Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session for the ``.onnx`` file ``path`` with :func:`session_options` (one-line errors)."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise CracksegError("running an .onnx model needs onnxruntime; pip install 'crackseg[onnx]'") from None
    p = Path(path)
    if not p.is_file():
        raise CracksegError(f"{p}: no such file")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CracksegError("--device cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(p), sess_options=session_options(threads), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for corrupt files
        raise CracksegError(f"{p}: not a readable ONNX model ({first_line(exc, with_type=False)})") from None


def load_onnx(path: str | Path, device: str = "cpu", threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An onnxruntime session for ``path`` (:func:`open_session`) and the crackseg metadata it carries."""
    p = Path(path)
    session = open_session(p, device, threads)
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise CracksegError(f"{p}: an ONNX model without crackseg metadata; export it with crackseg export")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise DataError(f"{p}: its crackseg metadata is not JSON; export it again") from None
    check_metadata(p, meta)
    return session, meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: the ``predict`` settings an exported model may carry: key → (check, what it must be)
_PREDICT_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "threshold": (_is_number, "a number"),
    "mode": (lambda v: v in ("auto", "resize", "tile"), "auto, resize or tile"),
    "tile_overlap": (_is_number, "a number"),
    "batch_size": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "erosion_iterations": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "minmax_normalize": (lambda v: isinstance(v, bool), "true or false"),
}


def check_metadata(path: Path, meta: Any) -> None:
    """One :class:`DataError` naming ``path`` and the key when an exported model's crackseg metadata is
    missing a key or holds a value crackseg cannot use (a file edited by hand, or tampered with)."""
    def bad(key: str, value: Any, want: str) -> DataError:
        shown = "missing" if value is _MISSING else f"{json.dumps(value, default=str)[:60]}"
        return DataError(f"{path}: crackseg metadata key {key!r} is {shown} (expected {want}); export it again")

    if not isinstance(meta, dict):
        raise DataError(f"{path}: its crackseg metadata is not a JSON object; export it again")
    size = meta.get("image_size", _MISSING)
    if not (_is_int(size) and size > 0):
        raise bad("image_size", size, "a positive integer")
    predict = meta.get("predict", {})
    if predict is None:
        predict = {}
    if not isinstance(predict, dict):
        raise bad("predict", predict, "a mapping of predict settings")
    for key, (ok, want) in _PREDICT_KEYS.items():
        if key in predict and not ok(predict[key]):
            raise bad(f"predict.{key}", predict[key], want)
    record = meta.get("threshold", _MISSING)  # recorded by crackseg export (absent in older exports)
    if record is not _MISSING and not valid_record(record):
        raise bad("threshold", record, 'a mapping {"value": a probability in [0, 1), "from": ...}')


_MISSING = object()


class OnnxPredictor(WindowPredictor):
    """Batched inference of an exported model (``float32 [N,3,S,S]`` in [0,1] → ``[N,1,S,S]``)."""

    def __init__(self, session: Any, meta: dict[str, Any], batch_size: int = 4, mode: str = "auto",
                 overlap: float = 0.25) -> None:
        super().__init__(int(meta["image_size"]), batch_size, mode, overlap)
        self.session = session
        self.input = session.get_inputs()[0].name
        #: ``fp32``, ``fp16`` or ``int8`` (how the model was exported)
        self.precision = str(meta.get("precision", "fp32"))

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        # uint8 NHWC → float32 NCHW / 255 in one pass into a contiguous array (no float64, no temporaries)
        x = np.empty((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), np.float32)
        np.divide(batch.transpose(0, 3, 1, 2), np.float32(255.0), out=x)
        out = self.session.run(None, {self.input: x})[0]
        return np.asarray(out[:, 0], dtype=np.float32)
