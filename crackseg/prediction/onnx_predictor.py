"""Running an exported ``.onnx`` model (``crackseg export``) with onnxruntime; never imports torch.

``OnnxPredictor`` resizes and tiles exactly like the torch ``Predictor`` (both are
``windows.WindowPredictor``), so ``crackseg predict model.onnx photos/`` writes the same
masks as ``crackseg predict RUN_DIR photos/``, on a machine without PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.console import first_line
from crackseg.base.errors import CracksegError
from crackseg.prediction.windows import WindowPredictor

META_KEY = "crackseg"


def load_onnx(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """An onnxruntime session for ``path`` and the crackseg metadata it carries (one-line errors)."""
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
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(p), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for corrupt files
        raise CracksegError(f"{p}: not a readable ONNX model ({first_line(exc, with_type=False)})") from None
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise CracksegError(f"{p}: an ONNX model without crackseg metadata; export it with crackseg export")
    try:
        meta = json.loads(raw)
        int(meta["image_size"])
    except (ValueError, KeyError, TypeError):
        raise CracksegError(f"{p}: its crackseg metadata is unreadable; export it again") from None
    return session, meta


class OnnxPredictor(WindowPredictor):
    """Batched inference of an exported model (``float32 [N,3,S,S]`` in [0,1] → ``[N,1,S,S]``)."""

    def __init__(self, session: Any, meta: dict[str, Any], batch_size: int = 4, mode: str = "auto",
                 overlap: float = 0.25) -> None:
        super().__init__(int(meta["image_size"]), batch_size, mode, overlap)
        self.session = session
        self.input = session.get_inputs()[0].name

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        out = self.session.run(None, {self.input: x})[0]
        return np.asarray(out[:, 0], dtype=np.float32)
