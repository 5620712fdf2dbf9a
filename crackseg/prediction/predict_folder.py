"""``crackseg predict``: apply a finished run, or its exported ONNX model, to new photos of any size.

A run folder's masks are cut at its ODS threshold (``metrics.json``), a bare checkpoint's or
ONNX model's at its saved ``predict.threshold``; ``--threshold`` overrides either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from crackseg.base.errors import CracksegError
from crackseg.base.io import IMAGE_SUFFIXES, image_shape, images_by_stem, what_was_read
from crackseg.prediction.models import init_model
from crackseg.prediction.one_image import predict_one


def collect_images(inputs: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    folders: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            folders.append(p)
            paths.extend(images_by_stem(p).values())
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise CracksegError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            paths.append(p)
        else:
            raise CracksegError(f"{p}: no such file or folder")
    if not paths:
        where = ", ".join(str(f) for f in folders) or "the inputs"
        raise CracksegError(f"{where}: no images to predict {what_was_read(folders)}")
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
    model = init_model(source, device, mode=mode, batch_size=batch_size, threshold=threshold)
    predictor, pc, thr, why = model.predictor, model.settings, model.threshold, model.threshold_source
    if log is not None:
        shown = f"{thr:.2f}" if round(thr, 2) == thr else f"{thr:g}"
        log(f"threshold {shown} ({why})" + ("" if threshold is not None else "; --threshold to change"))
        precision = str(getattr(predictor, "precision", "fp32"))
        if precision != "fp32":  # an exported --int8 / --fp16 model says so
            log(f"model: {precision} ONNX ({source}); its agreement with fp32 was printed by crackseg export")
    total = sum(predictor.window_count(image_shape(p)) for p in paths)
    out = Path(out)
    written = []
    with tqdm(total=total, desc="predict", unit="window", disable=quiet) as bar:
        for i, p in enumerate(paths, 1):
            bar.set_postfix_str(f"image {i}/{len(paths)}", refresh=False)
            written.append(predict_one(predictor, p, out, pc, thr, progress=bar.update))
    return written
