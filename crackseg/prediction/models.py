"""The script API: load a trained model by what the user has, and apply it to one image.

In the style of mmsegmentation's ``init_model`` / ``inference_model``::

    import crackseg
    model = crackseg.init_model("runs/demo")                 # run folder, model.pt, checkpoint.pt or .onnx
    result = crackseg.inference_model(model, "photo.jpg")    # or an RGB uint8 array
    result.prob, result.mask                                 # float32 [H, W] in [0, 1]; bool [H, W]

A run folder's masks are cut at its ODS threshold, a bare checkpoint's at its saved
``predict.threshold``, an ONNX model's at the threshold ``crackseg export`` recorded in it (what
``crackseg predict`` of the exported run folder or checkpoint uses; the saved ``predict.threshold``
of an ONNX model from an earlier crackseg). ``crackseg predict`` uses the same rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.distributed import resolve_device
from crackseg.base.errors import DataError
from crackseg.base.io import read_image
from crackseg.base.maps import crack_mask
from crackseg.prediction.thresholds import choose_threshold
from crackseg.prediction.windows import WindowPredictor


@dataclass
class CrackModel:
    """A loaded model with what predicting with it needs (what :func:`init_model` returns)."""

    #: does the forward passes: whole images resized, or sliding windows (``predict.mode``)
    predictor: WindowPredictor
    #: the run's ``predict:`` settings as saved with the model
    settings: dict[str, Any]
    #: probability above which a pixel is crack, and why that value
    threshold: float
    threshold_source: str
    #: what was loaded (a run folder, a checkpoint or an ONNX file)
    source: str


@dataclass
class Prediction:
    """What :func:`inference_model` returns for one image."""

    #: crack probability, float32 [H, W] in [0, 1], after the run's post-processing
    prob: np.ndarray
    #: ``prob`` cut at the model's threshold, bool [H, W]
    mask: np.ndarray


def init_model(source: str | os.PathLike[str], device: str = "auto", *, mode: str | None = None,
               batch_size: int | None = None, threshold: float | None = None) -> CrackModel:
    """Load a trained model: a run folder, a ``model.pt`` / ``checkpoint.pt``, or an exported ``.onnx`` file.

    ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ... (ONNX models run on the CPU unless
    given a CUDA device); ``mode`` (``auto`` / ``resize`` / ``tile``) and ``batch_size`` override the
    run's ``predict:`` settings; ``threshold`` overrides the run's cut.
    """
    src = str(source)
    recorded: dict[str, Any] | None = None
    if Path(src).suffix.lower() == ".onnx":
        from crackseg.prediction.onnx_predictor import OnnxPredictor, load_onnx

        session, meta = load_onnx(src, "cpu" if device == "auto" else device)
        pc = dict(meta.get("predict") or {})
        recorded = meta.get("threshold")
        predictor: WindowPredictor = OnnxPredictor(session, meta, batch_size or pc.get("batch_size", 4),
                                                   mode or pc.get("mode", "auto"), pc.get("tile_overlap", 0.25))
    else:
        from crackseg.prediction.predictor import Predictor
        from crackseg.training.factory import load_model

        model, ckpt = load_model(src)
        pc = dict(ckpt.get("predict") or {})
        predictor = Predictor(model, int(ckpt.get("image_size", 256)), resolve_device(device),
                              batch_size or pc.get("batch_size", 4), mode or pc.get("mode", "auto"),
                              pc.get("tile_overlap", 0.25), name=str(ckpt["backbone"]["name"]))
    thr, why = choose_threshold(src, threshold, pc, recorded)
    return CrackModel(predictor, pc, thr, why, src)


def inference_model(model: CrackModel, image: str | os.PathLike[str] | np.ndarray) -> Prediction:
    """The crack probability map and mask of one image (a path, or an RGB ``uint8`` array ``[H, W, 3]``)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"image array of {image.dtype} {list(image.shape)}: expected uint8 RGB [H, W, 3]")
        rgb = image
    else:
        rgb = read_image(image)
    u8 = model.predictor.predict_uint8(rgb, int(model.settings.get("erosion_iterations", 0)),
                                       bool(model.settings.get("minmax_normalize", False)))
    return Prediction(prob=u8.astype(np.float32) / 255.0, mask=crack_mask(u8, model.threshold))
