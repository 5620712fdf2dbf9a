"""``crackseg predict``: apply a finished run, or its exported ONNX model, to new photos of any size.

A run folder's masks are cut at its ODS threshold (``metrics.json``), a bare checkpoint's or ONNX model's at its
saved ``predict.threshold``; ``--threshold`` overrides either.

One unreadable photo does not stop a batch: every readable photo is predicted, and the photos that were not
(a :class:`~crackseg.base.errors.DataError`: corrupt, truncated, unsupported) are listed in ``OUT/failures.csv``
(``path,reason``; removed by a rerun without failures). ``strict`` stops at the first one instead. What is not
the photo's fault (a full disk, a plugin's bug) stops the batch either way. ``OUT/predict.json`` marks the
folder as predict's output, so a rerun may write into it (:func:`~crackseg.base.out_folder.check_out_folder`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crackseg.base.console import error_line, warn
from crackseg.base.errors import CracksegError, DataError
from crackseg.base.io import image_shape, write_json, write_text
from crackseg.base.out_folder import check_out_folder
from crackseg.base.storage import storage_errors
from crackseg.prediction.models import init_model
from crackseg.prediction.one_image import predict_one
from crackseg.prediction.photo_folders import MARKER, collect_photos

#: the exit status of ``crackseg predict`` when some photos could not be read (the others were written)
SOME_PHOTOS_FAILED = 3
#: the list of the photos that failed, in ``--out`` (absent when none did)
FAILURES_FILE = "failures.csv"
#: failures printed one per line before "... and N more"
SHOWN_FAILURES = 10


@dataclass(frozen=True)
class Failure:
    """A photo that was not predicted, and why (the :class:`DataError`'s message without the path)."""

    path: Path
    reason: str


@dataclass
class PredictResult:
    """What :func:`predict_paths` did: the masks written (with their photos), the photos that failed."""

    out: Path
    #: the binary masks written, in input order
    written: list[Path] = field(default_factory=list)
    #: the photo of each mask in ``written``
    sources: list[Path] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    #: ``OUT/failures.csv`` when a photo failed, else None
    failures_file: Path | None = None


def collect_images(inputs: Sequence[str]) -> list[Path]:
    """The photos of ``inputs`` (image files and folders, read flat), in name order; see :func:`collect_photos`."""
    return [ph.path for ph in collect_photos(inputs)[0]]


def predict_paths(source: str | Path, inputs: Sequence[str], out: str | Path, *, device: str = "auto",
                  threshold: float | None = None, mode: str | None = None, batch_size: int | None = None,
                  quiet: bool = False, log: Callable[[str], object] | None = None, recursive: bool = False,
                  strict: bool = False, note: Callable[[str], object] | None = warn) -> PredictResult:
    """Write ``out/<stem>.png`` (binary), ``out/prob/<stem>.png`` and ``out/overlay/<stem>.png`` per photo
    (``recursive``: also the photos of sub-folders, into the same sub-folders of ``out``).

    ``source``: a run folder, a checkpoint, or an exported ``.onnx`` model (run by onnxruntime,
    without importing torch). The masks are cut at ``threshold``, else at the threshold
    :func:`choose_threshold` picks; ``log`` gets the one line saying which and why, ``note`` the lines about
    sub-folders left out. The progress bar (off with ``quiet``) counts the windows the model sees, so tiled
    photos move it too. A photo that cannot be read is listed in the result and ``out/failures.csv``; with
    ``strict`` its :class:`DataError` is raised instead. ``out`` must be new, empty or predict's own.
    """
    from tqdm.auto import tqdm

    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise CracksegError(f"--threshold {threshold:g}: must be in [0, 1) (a probability; mask = p > T)")
    out = Path(out)
    photos, notes = collect_photos(inputs, recursive=recursive, out=out)
    check_out_folder(out, command="predict", marker=MARKER, looks_like_own=_earlier_output)
    if note is not None:
        for line in notes:
            note(line)
    model = init_model(source, device, mode=mode, batch_size=batch_size, threshold=threshold)
    predictor, pc, thr, why = model.predictor, model.settings, model.threshold, model.threshold_source
    if log is not None:
        shown = f"{thr:.2f}" if round(thr, 2) == thr else f"{thr:g}"
        log(f"threshold {shown} ({why})" + ("" if threshold is not None else "; --threshold to change"))
        precision = str(getattr(predictor, "precision", "fp32"))
        if precision != "fp32":  # an exported --int8 / --fp16 model says so
            log(f"model: {precision} ONNX ({source}); its agreement with fp32 was printed by crackseg export")
    failed: dict[int, Failure] = {}
    windows: dict[int, int] = {}
    for i, ph in enumerate(photos):  # sizes the progress bar; a photo that cannot be read fails here already
        try:
            windows[i] = predictor.window_count(image_shape(ph.path))
        except DataError as exc:
            if strict:
                raise
            failed[i] = _failure(ph.path, exc)
    res = PredictResult(out)
    manifest = {"command": "crackseg predict", "model": str(source), "threshold": thr, "recursive": recursive}
    with tqdm(total=sum(windows.values()), desc="predict", unit="window", disable=quiet) as bar:
        for i, ph in enumerate(photos):
            if i in failed:
                continue
            bar.set_postfix_str(f"image {i + 1}/{len(photos)}", refresh=False)
            done = [0]

            def progress(n: int, done: list[int] = done) -> None:
                done[0] += n
                bar.update(n)

            try:
                mask = predict_one(predictor, ph.path, out / ph.folder, pc, thr, progress=progress, log=log)
            except DataError as exc:
                if strict:
                    raise
                failed[i] = _failure(ph.path, exc)
                bar.update(max(0, windows[i] - done[0]))
                continue
            res.written.append(mask)
            res.sources.append(ph.path)
            if len(res.written) == 1:  # from the first mask on, a rerun may write here (even if this one stops)
                write_json(out / MARKER, {**manifest, "finished": False})
    res.failed = [failed[i] for i in sorted(failed)]
    res.failures_file = _write_failures(out, res.failed)
    write_json(out / MARKER, {**manifest, "finished": True, "photos": len(photos), "written": len(res.written),
                              "failed": len(res.failed)})
    return res


def _failure(path: Path, exc: DataError) -> Failure:
    msg = " ".join(str(exc).split())
    prefix = f"{path}: "
    return Failure(path, msg[len(prefix):] if msg.startswith(prefix) else msg)


def _write_failures(out: Path, failed: Sequence[Failure]) -> Path | None:
    """``out/failures.csv`` (``path,reason``) listing ``failed``; removes an earlier one when none failed."""
    path = out / FAILURES_FILE
    if not failed:
        with storage_errors(path):
            path.unlink(missing_ok=True)
        return None
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows([str(f.path), f.reason] for f in failed)
    return write_text(path, buf.getvalue())


def _earlier_output(folder: Path) -> bool:
    """A folder written by a predict that wrote no marker yet (crackseg 0.2): masks, ``prob/`` and ``overlay/``."""
    if not ((folder / "prob").is_dir() and (folder / "overlay").is_dir()):
        return False
    for e in folder.iterdir():
        if e.name.startswith("."):
            continue
        if e.is_dir() and e.name not in ("prob", "overlay", "measurements"):
            return False
        if e.is_file() and e.suffix.lower() != ".png" and e.name != FAILURES_FILE:
            return False
    return True


def failure_lines(res: PredictResult, limit: int = SHOWN_FAILURES) -> list[str]:
    """What ``crackseg predict`` prints on stderr when photos failed: a header, one line per photo (the first
    ``limit``), then ``... and N more``."""
    if not res.failed:
        return []
    n, total = len(res.failed), len(res.failed) + len(res.written)
    lines = [error_line(f"{n} of {total} photo{'s' if total != 1 else ''} could not be read"
                        f"{'; the others were written' if res.written else ''} (list: {res.failures_file}):")]
    lines += [f"  {f.path}: {f.reason}" for f in res.failed[:limit]]
    if n > limit:
        lines.append(f"  ... and {n - limit} more")
    return lines


def summary_line(res: PredictResult) -> str:
    """The last line ``crackseg predict`` prints: how many masks, where, and how many photos failed."""
    out = res.out
    folders = {m.parent for m in res.written}
    if folders <= {out}:
        where = f"{out} (probabilities in {out / 'prob'}, overlays in {out / 'overlay'})"
    else:
        where = f"{out} and {len(folders - {out})} sub-folders of it (each with its prob/ and overlay/)"
    line = f"wrote {len(res.written)} mask{'s' if len(res.written) != 1 else ''} to {where}"
    if res.failed:
        line += f"; {len(res.failed)} photo{'s' if len(res.failed) != 1 else ''} failed: {res.failures_file}"
    return line

