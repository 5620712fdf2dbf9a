"""``crackseg predict``: apply a finished run, or its exported ONNX model, to new photos of any size.

A run folder's masks are cut at its ODS threshold (``metrics.json``), a bare checkpoint's or
ONNX model's at its saved ``predict.threshold``; ``--threshold`` overrides either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import resolve_device
from .errors import CracksegError
from .io import IMAGE_SUFFIXES, image_shape, images_by_stem, read_image, write_png
from .metrics import crack_mask
from .overlays import overlay
from .run_folder import METRICS_FILE
from .windows import WindowPredictor, postprocess


def collect_images(inputs: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(images_by_stem(p).values())
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise CracksegError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            paths.append(p)
        else:
            raise CracksegError(f"{p}: no such file or folder")
    if not paths:
        raise CracksegError("no images to predict")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise CracksegError(f"several input images share the name {dup[0]!r}; outputs would overwrite each other")
    return paths


def predict_paths(source: str | Path, inputs: Sequence[str], out: str | Path, *, device: str = "auto",
                  threshold: float | None = None, mode: str | None = None, batch_size: int | None = None,
                  quiet: bool = False, log: Callable[[str], object] | None = None) -> list[Path]:
    """Write ``out/<stem>.png`` (binary), ``out/prob/<stem>.png`` and ``out/overlay/<stem>.png``.

    ``source``: a run folder, a checkpoint, or an exported ``.onnx`` model (run by onnxruntime,
    without importing torch). The masks are cut at ``threshold``, else at the threshold
    :func:`choose_threshold` picks; ``log`` gets the one line saying which and why. The
    progress bar (off with ``quiet``) counts the windows the model sees, so tiled photos move it too.
    """
    from tqdm.auto import tqdm

    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise CracksegError(f"--threshold {threshold:g}: must be in [0, 1) (a probability; mask = p > T)")
    paths = collect_images(inputs)
    predictor, pc = _predictor(source, device, mode, batch_size)
    thr, why = choose_threshold(source, threshold, pc)
    if log is not None:
        shown = f"{thr:.2f}" if round(thr, 2) == thr else f"{thr:g}"
        log(f"threshold {shown} ({why})" + ("" if threshold is not None else "; --threshold to change"))
    total = sum(predictor.window_count(image_shape(p)) for p in paths)
    out = Path(out)
    written = []
    with tqdm(total=total, desc="predict", unit="window", disable=quiet) as bar:
        for i, p in enumerate(paths, 1):
            bar.set_postfix_str(f"image {i}/{len(paths)}", refresh=False)
            img = read_image(p)
            prob = predictor.predict_many([img], progress=bar.update)[0]
            u8 = postprocess(prob, int(pc.get("erosion_iterations", 0)), bool(pc.get("minmax_normalize", False)))
            mask = crack_mask(u8, thr)
            written.append(write_png(out / f"{p.stem}.png", mask.astype(np.uint8) * 255))
            write_png(out / "prob" / f"{p.stem}.png", u8)
            write_png(out / "overlay" / f"{p.stem}.png", overlay(img, mask))
    return written


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


def _predictor(source: str | Path, device: str, mode: str | None,
               batch_size: int | None) -> tuple[WindowPredictor, dict[str, Any]]:
    """The predictor for ``source`` and the run's prediction settings."""
    if Path(source).suffix.lower() == ".onnx":
        from .onnx_model import OnnxPredictor, load_onnx

        session, meta = load_onnx(source, "cpu" if device == "auto" else device)
        pc = dict(meta.get("predict") or {})
        return OnnxPredictor(session, meta, batch_size or pc.get("batch_size", 4), mode or pc.get("mode", "auto"),
                             pc.get("tile_overlap", 0.25)), pc
    from .checkpoints import load_model
    from .inference import Predictor

    model, ckpt = load_model(source)
    pc = dict(ckpt.get("predict") or {})
    predictor = Predictor(model, int(ckpt.get("image_size", 256)), resolve_device(device),
                          batch_size or pc.get("batch_size", 4), mode or pc.get("mode", "auto"),
                          pc.get("tile_overlap", 0.25), name=str(ckpt["backbone"]["name"]))
    return predictor, pc
