"""``crackseg predict``: apply a finished run, or its exported ONNX model, to new photos of any size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import resolve_device
from .errors import CracksegError
from .io import IMAGE_SUFFIXES, images_by_stem, read_image, write_png
from .metrics import crack_mask
from .overlays import overlay
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
                  quiet: bool = False) -> list[Path]:
    """Write ``out/<stem>.png`` (binary), ``out/prob/<stem>.png`` and ``out/overlay/<stem>.png``.

    ``source``: a run folder, a checkpoint, or an exported ``.onnx`` model (run by onnxruntime,
    without importing torch).
    """
    from tqdm.auto import tqdm

    paths = collect_images(inputs)
    predictor, pc = _predictor(source, device, mode, batch_size)
    thr = pc.get("threshold", 0.5) if threshold is None else threshold
    out = Path(out)
    written = []
    for p in tqdm(paths, desc="predict", disable=quiet):
        img = read_image(p)
        prob = predictor.predict_many([img])[0]
        u8 = postprocess(prob, int(pc.get("erosion_iterations", 0)), bool(pc.get("minmax_normalize", False)))
        mask = crack_mask(u8, thr)
        written.append(write_png(out / f"{p.stem}.png", mask.astype(np.uint8) * 255))
        write_png(out / "prob" / f"{p.stem}.png", u8)
        write_png(out / "overlay" / f"{p.stem}.png", overlay(img, mask))
    return written


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
