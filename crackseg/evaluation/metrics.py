"""Crack segmentation metrics: ODS, OIS and AP from per-image histograms.

No torch here (``crackseg evaluate`` must start fast), and no cv2 at import
time: only numpy. Images are read through :mod:`crackseg.base.io`, which imports
cv2 lazily.

How it works
------------
A prediction is a ``uint8`` map (probability = value / 255); a ground-truth
mask is ``bool`` (:func:`~crackseg.base.io.read_mask`: a 0/1 mask is crack where 1, any
other where the stored grey value is > 127). Each image is
reduced, in one sweep (a histogram of all its pixels plus one of its few crack
pixels), to two 256-bin histograms of the prediction values: under crack
pixels (``pos``) and under background pixels (``neg``). A pixel is predicted
crack at threshold ``t_i = i / 100`` when
``value / 255 > t_i``, which for integers is exactly ``100 * value > 255 * i``,
i.e. ``value > k_i`` with ``k_i = (255 * i) // 100``. Cumulative sums of the
histograms then give TP, FP and FN at every threshold at once::

    TP_i = #pos(value > k_i)    FP_i = #neg(value > k_i)    FN_i = #pos - TP_i

Nothing is binarised once per threshold. The histograms are also what
:meth:`MetricAccumulator.histograms` and :meth:`MetricAccumulator.add_histograms`
exchange, so shards evaluated in different processes can be merged exactly.

Protocols
---------
``crackclip`` (default) reproduces the CrackCLIP authors' public script
(``eval/prf_metrics.py``, inherited from DeepSegmentor/CAC), quirks included;
the published numbers come from it.

* Thresholds ``t = 0.00, 0.01, ..., 0.99`` (100 values), ``value / 255 > t``.
* Counts are **pooled** over the data set at every threshold:
  ``P = TP / (TP + FP)`` (``P = 1`` when ``TP + FP = 0``),
  ``R = TP / (TP + FN)``, ``F = 2PR / (P + R)``, with numpy's float
  semantics: ``0/0`` gives NaN (so ``R`` is NaN when no pixel is crack, and
  ``F`` is NaN when ``P + R = 0``).
* ``ODS`` = the largest pooled ``F`` (NaN rows ignored).
* ``AP = sum_{t=1..99} (R[t-1] - R[t]) * P[t]`` over the pooled table (no
  interpolation, no normalisation).
* ``OIS``: each image gets its own threshold ``tau* = np.argmax`` of its own
  ``F`` over the 100 thresholds; the counts of every image at its ``tau*`` are
  pooled and **one** ``F`` is computed. Quirk kept on purpose: an image's ``F``
  is NaN when it has no true positive and (some false positive, or no crack in
  its ground truth), and ``np.argmax`` returns the index of the *first NaN*, so
  such an image is binarised at a degenerate threshold (often 0.00).

``paper`` implements the formulas written in section 4.2 of the paper:

* Thresholds ``t = 0.01, ..., 0.99`` (99 values), same ``value / 255 > t`` rule.
* Per image and threshold: ``P_i = TP/(TP+FP)`` (1 when nothing is predicted),
  ``R_i = TP/(TP+FN)``, ``F1_i = 2 P_i R_i / (P_i + R_i)``; **F1 := 0 whenever
  it is undefined** (no true positive, including crack-free images; no NaN is
  ever produced or propagated).
* ``ODS = max_t mean_i F1_i(t)``; ``OIS = mean_i max_t F1_i(t)``.
* ``AP = sum_{t=0.01..0.99} (Rbar(t - 0.01) - Rbar(t)) * Pbar(t)`` where
  ``Pbar`` is the mean per-image precision and ``Rbar`` the mean per-image
  recall over the images that contain crack (recall is undefined on a
  crack-free image); ``Rbar(0.00)`` is computed for the first term.

How they differ: ``crackclip`` pools pixel counts over the data set (large
images and images with many crack pixels weigh more), evaluates threshold 0.00
too, and its OIS is a pooled F at per-image thresholds chosen with the NaN
quirk. ``paper`` averages per-image scores (every image weighs the same,
crack-free images count as F1 = 0) and its OIS is a mean of per-image maxima.
The two give different numbers on the same predictions; compare only numbers
of the same protocol.

Undefined results (for example AP when no image contains any crack) are NaN in
:class:`MetricsResult` and ``null`` in :meth:`MetricsResult.to_json`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.errors import CracksegError, DataError
from crackseg.base.io import images_by_stem, mask_from_values, read_gray, read_mask, what_was_read, write_text
from crackseg.base.maps import crack_mask, pred_to_uint8
from crackseg.base.protocols import PROTOCOLS

__all__ = [
    "PROTOCOLS",
    "MetricsResult",
    "MetricAccumulator",
    "pred_to_uint8",
    "crack_mask",
    "image_histograms",
    "counts_from_histograms",
    "evaluate_dirs",
    "pair_by_stem",
    "prf_rows",
    "write_prf_table",
]


#: Number of thresholds on the full grid 0.00, 0.01, ..., 0.99.
N_THRESHOLDS = 100
#: Threshold i as an exact grey-level cut: crack when value > _CUTS[i].
_CUTS = (255 * np.arange(N_THRESHOLDS)) // 100
_GRID = np.arange(N_THRESHOLDS) / 100.0


# -- result -----------------------------------------------------------------------
@dataclass
class MetricsResult:
    """ODS / OIS / AP of one evaluation, with the per-threshold curves.

    ``precision``, ``recall`` and ``f1`` are pooled curves (``crackclip``) or
    per-image means (``paper``) over ``thresholds``. Scores are fractions in
    [0, 1]; NaN means undefined.
    """

    ods: float
    ois: float
    ap: float
    n: int
    protocol: str
    ods_threshold: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    per_image: list[dict[str, Any]] = field(default_factory=list)
    #: crack pixels in all the ground-truth masks together (0: every mask is empty, the scores are NaN;
    #: -1: unknown)
    gt_crack_pixels: int = -1

    def to_json(self) -> dict[str, Any]:
        """``ods``, ``ois``, ``ap`` (fractions), ``n``, ``protocol``, ``ods_threshold``.

        NaN becomes ``None`` so the object is valid JSON.
        """
        return {
            "ods": _json_float(self.ods),
            "ois": _json_float(self.ois),
            "ap": _json_float(self.ap),
            "n": int(self.n),
            "protocol": self.protocol,
            "ods_threshold": _json_float(self.ods_threshold),
        }


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _gt_to_bool(gt: np.ndarray, stem: str) -> np.ndarray:
    arr = np.asarray(gt)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype == np.uint8:  # the rule of read_mask: a 0/1 mask is crack where 1, any other where > 127
        return mask_from_values(arr)
    raise DataError(f"{stem}: ground truth must be a bool mask (or a uint8 0/1 or 0/255 mask), got {arr.dtype}")


def _as_2d(arr: np.ndarray, what: str, stem: str) -> np.ndarray:
    if arr.ndim > 2:
        squeezed = np.squeeze(arr)
        if squeezed.ndim == 2:
            return squeezed
    if arr.ndim != 2:
        raise DataError(f"{stem}: {what} must be a 2-D HxW map, got shape {tuple(arr.shape)}")
    return arr


def image_histograms(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """256-bin histograms of ``pred`` (uint8) under crack and background pixels.

    Returns ``(pos_hist, neg_hist)`` as ``int64``: one histogram of all pixels
    plus one of the (few) crack pixels; background = all - crack.
    """
    pos = np.bincount(pred[gt], minlength=256).astype(np.int64)
    return pos, _value_histogram(pred) - pos


def _value_histogram(pred: np.ndarray) -> np.ndarray:
    """Exact 256-bin histogram of a uint8 map (cv2 when exact and available: ~5x faster)."""
    if 0 < pred.size < 2**24:  # cv2 counts in float32: exact below 2**24 pixels
        try:
            import cv2  # lazy: keeps `import crackseg.evaluation.metrics` light
        except ImportError:  # pragma: no cover - cv2 is a dependency
            pass
        else:
            hist = cv2.calcHist([np.ascontiguousarray(pred)], [0], None, [256], [0, 256])
            return hist.ravel().astype(np.int64)
    return np.bincount(pred.ravel(), minlength=256).astype(np.int64)


def counts_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[np.ndarray, ...]:
    """TP, FP, FN at the 100 thresholds 0.00..0.99 from ``[..., 256]`` histograms.

    Works on one image (shape ``[256]``) or a stack (``[N, 256]``); returns
    arrays of shape ``[..., 100]``.
    """
    pos = np.asarray(pos_hist, dtype=np.int64)
    neg = np.asarray(neg_hist, dtype=np.int64)
    cpos = np.cumsum(pos, axis=-1)  # cpos[k] = #pos with value <= k
    cneg = np.cumsum(neg, axis=-1)
    fn = cpos[..., _CUTS]
    tp = cpos[..., -1:] - fn
    fp = cneg[..., -1:] - cneg[..., _CUTS]
    return tp, fp, fn


# -- the authors' P/R/F semantics ------------------------------------------------
def _prf_numpy(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    """P, R, F exactly as ``prf_metrics.py`` computes them (NaN for 0/0)."""
    tp = np.asarray(tp, dtype=np.int64)
    fp = np.asarray(fp, dtype=np.int64)
    fn = np.asarray(fn, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where((tp == 0) & (fp == 0), 1.0, tp / (tp + fp))
        r = tp / (tp + fn)
        f = 2 * p * r / (p + r)
    return p, r, f


# -- accumulator -------------------------------------------------------------------
class MetricAccumulator:
    """Collects per-image histograms; :meth:`result` computes ODS / OIS / AP.

    >>> acc = MetricAccumulator("crackclip")
    >>> acc.add("img1", pred_uint8, gt_bool)          # doctest: +SKIP
    >>> acc.result().to_json()                          # doctest: +SKIP
    """

    def __init__(self, protocol: str = "crackclip") -> None:
        if protocol not in PROTOCOLS:
            raise CracksegError(
                f"unknown metric protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}"
            )
        self.protocol = protocol
        self._stems: list[str] = []
        self._seen: set[str] = set()
        self._pos: list[np.ndarray] = []
        self._neg: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._stems)

    def add(self, stem: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` uint8 (or float in [0, 1]) HxW, ``gt`` bool HxW."""
        p = _as_2d(np.asarray(pred), "prediction", stem)
        g = _as_2d(np.asarray(gt), "ground truth", stem)
        if p.shape != g.shape:
            raise DataError(
                f"{stem}: prediction is {p.shape[1]}x{p.shape[0]} but ground truth is "
                f"{g.shape[1]}x{g.shape[0]} (W x H); predictions must have the mask's size"
            )
        pos, neg = image_histograms(pred_to_uint8(p), _gt_to_bool(g, stem))
        self._append(stem, pos, neg)

    def add_histograms(self, stem: str, pos_hist: np.ndarray, neg_hist: np.ndarray) -> None:
        """Add one image given as its 256-bin histograms (crack, background)."""
        pos = np.asarray(pos_hist)
        neg = np.asarray(neg_hist)
        for name, h in (("pos_hist", pos), ("neg_hist", neg)):
            if h.shape != (256,):
                raise DataError(f"{stem}: {name} must have shape (256,), got {tuple(h.shape)}")
            if not (np.issubdtype(h.dtype, np.integer) or np.all(h == np.round(h))):
                raise DataError(f"{stem}: {name} must hold integer counts")
            if h.size and h.min() < 0:
                raise DataError(f"{stem}: {name} has negative counts")
        self._append(stem, pos.astype(np.int64), neg.astype(np.int64))

    def _append(self, stem: str, pos: np.ndarray, neg: np.ndarray) -> None:
        stem = str(stem)
        if stem in self._seen:
            raise DataError(f"{stem}: image added twice; stems must be unique")
        self._seen.add(stem)
        self._stems.append(stem)
        self._pos.append(pos)
        self._neg.append(neg)

    def histograms(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(stem, pos_hist, neg_hist)`` per image, in the order they were added."""
        return [(s, p.copy(), n.copy()) for s, p, n in zip(self._stems, self._pos, self._neg)]

    def merge(self, other: MetricAccumulator) -> None:
        """Add every image of ``other`` (e.g. a shard from another process)."""
        for stem, pos, neg in other.histograms():
            self.add_histograms(stem, pos, neg)

    def result(self) -> MetricsResult:
        """ODS, OIS, AP and curves of everything added so far."""
        if not self._stems:
            raise DataError("no images to evaluate")
        pos = np.stack(self._pos)
        neg = np.stack(self._neg)
        tp, fp, fn = counts_from_histograms(pos, neg)  # [N, 100]
        if self.protocol == "crackclip":
            res = _result_crackclip(self._stems, tp, fp, fn)
        else:
            res = _result_paper(self._stems, tp, fp, fn)
        res.gt_crack_pixels = int(pos.sum())
        return res


def _result_crackclip(stems: list[str], tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> MetricsResult:
    p, r, f = _prf_numpy(tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0))
    if np.isnan(f).all():
        ods, ods_t = float("nan"), float("nan")
    else:
        best = int(np.nanargmax(f))
        ods, ods_t = float(f[best]), float(_GRID[best])
    ap = 0.0
    for t in range(1, N_THRESHOLDS):  # sequential, as the script sums
        ap += (float(r[t - 1]) - float(r[t])) * float(p[t])
    _, _, f_img = _prf_numpy(tp, fp, fn)  # [N, 100]
    star = np.argmax(f_img, axis=1)  # first NaN wins, as np.argmax does
    rows = np.arange(len(stems))
    _, _, f_ois = _prf_numpy(tp[rows, star].sum(), fp[rows, star].sum(), fn[rows, star].sum())
    per_image = [
        {"stem": s, "best_threshold": float(_GRID[k]), "f1": float(f_img[i, k])}
        for i, (s, k) in enumerate(zip(stems, star))
    ]
    return MetricsResult(
        ods=ods, ois=float(f_ois), ap=float(ap), n=len(stems), protocol="crackclip",
        ods_threshold=ods_t, thresholds=_GRID.copy(), precision=p, recall=r, f1=f,
        per_image=per_image,
    )


def _result_paper(stems: list[str], tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> MetricsResult:
    p, r, f = _prf_numpy(tp, fp, fn)  # per image [N, 100]
    f = np.nan_to_num(f, nan=0.0)  # F1 := 0 when undefined
    has_crack = (tp[:, 0] + fn[:, 0]) > 0
    p_mean = p.mean(axis=0)
    r_mean = r[has_crack].mean(axis=0) if has_crack.any() else np.full(N_THRESHOLDS, np.nan)
    f_mean = f.mean(axis=0)
    sel = slice(1, N_THRESHOLDS)  # the paper's grid 0.01..0.99
    best = 1 + int(np.argmax(f_mean[sel]))
    star = 1 + np.argmax(f[:, sel], axis=1)
    rows = np.arange(len(stems))
    ap = 0.0
    for t in range(1, N_THRESHOLDS):
        ap += (float(r_mean[t - 1]) - float(r_mean[t])) * float(p_mean[t])
    per_image = [
        {"stem": s, "best_threshold": float(_GRID[k]), "f1": float(f[i, k])}
        for i, (s, k) in enumerate(zip(stems, star))
    ]
    return MetricsResult(
        ods=float(f_mean[best]), ois=float(f[rows, star].mean()), ap=float(ap), n=len(stems),
        protocol="paper", ods_threshold=float(_GRID[best]), thresholds=_GRID[sel].copy(),
        precision=p_mean[sel].copy(), recall=r_mean[sel].copy(), f1=f_mean[sel].copy(),
        per_image=per_image,
    )


# -- folders --------------------------------------------------------------------
def _name_some(stems: list[str], limit: int = 5) -> str:
    shown = ", ".join(stems[:limit])
    return shown + (f", ... ({len(stems) - limit} more)" if len(stems) > limit else "")


def pair_by_stem(
    pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]
) -> list[tuple[str, Path, Path]]:
    """``(stem, pred_path, gt_path)`` for every stem, sorted; any image suffix.

    Missing or extra files raise :class:`DataError` naming up to 5 stems on each side.
    """
    preds = images_by_stem(pred_dir, what="prediction")
    gts = images_by_stem(gt_dir, what="ground-truth")
    if not gts:
        raise DataError(f"{gt_dir}: no ground-truth images found {what_was_read(gt_dir)}")
    if not preds:
        raise DataError(f"{pred_dir}: no prediction images found {what_was_read(pred_dir)}")
    no_gt = sorted(set(preds) - set(gts))
    no_pred = sorted(set(gts) - set(preds))
    if no_gt or no_pred:
        parts = []
        if no_pred:
            parts.append(
                f"{len(no_pred)} ground-truth mask(s) in {gt_dir} have no prediction: "
                f"{_name_some(no_pred)}"
            )
        if no_gt:
            parts.append(
                f"{len(no_gt)} prediction(s) in {pred_dir} have no ground truth: {_name_some(no_gt)}"
            )
        raise DataError("; ".join(parts) + " (files are paired by stem)")
    return [(s, preds[s], gts[s]) for s in sorted(gts)]


def evaluate_dirs(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    protocol: str = "crackclip",
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    workers: int | None = None,
) -> MetricsResult:
    """Evaluate a folder of predictions against a folder of masks, paired by stem.

    Predictions are read as ``uint8`` grey (probability = value / 255); masks
    by :func:`~crackseg.base.io.read_mask` (a 0/1 mask is crack where 1, any other
    where grey > 127). ``progress`` may wrap the pair iterator (for
    example ``tqdm``).

    ``workers`` threads decode the pairs (default: one per CPU this process may use; OpenCV decodes without
    the GIL). The histograms are added in stem order whatever the number of workers, so the result is the
    same bit for bit; a file that cannot be read is reported as when read in order (the first in stem order).
    """
    acc = MetricAccumulator(protocol)
    pairs = pair_by_stem(pred_dir, gt_dir)
    results = _pair_histograms(pairs, _decode_workers(len(pairs), workers))
    try:
        for stem, _, _ in progress(pairs) if progress is not None else pairs:
            pos, neg = next(results)
            acc._append(stem, pos, neg)
    finally:
        results.close()  # a failure stops the decoding of the pairs not yet started
    return acc.result()


def _decode_workers(n_pairs: int, workers: int | None = None) -> int:
    """Threads that decode ``n_pairs`` image pairs: ``workers``, else one per CPU this process may use (at
    most 32); never more than there are pairs, at least 1."""
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            workers = os.cpu_count() or 1
        workers = min(workers, 32)
    return max(1, min(int(workers), n_pairs))


def _read_pair(pair: tuple[str, Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The (crack, background) histograms of one prediction and its mask; each file decoded once."""
    _, pred_path, gt_path = pair
    pred = read_gray(pred_path)
    gt = read_mask(gt_path)
    if pred.shape != gt.shape:
        raise DataError(
            f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} but {gt_path.name} is "
            f"{gt.shape[1]}x{gt.shape[0]} (W x H); predictions must have the mask's size"
        )
    return image_histograms(pred, gt)


def _pair_histograms(
    pairs: list[tuple[str, Path, Path]], workers: int
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """:func:`_read_pair` of every pair, in order, decoded by ``workers`` threads."""
    if workers <= 1:
        yield from map(_read_pair, pairs)
        return
    from concurrent.futures import ThreadPoolExecutor  # lazy: only a folder of many pairs needs it

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crackseg-decode")
    try:
        yield from pool.map(_read_pair, pairs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- reporting ----------------------------------------------------------------------
def _fmt(x: float) -> str:
    return "nan" if math.isnan(float(x)) else f"{float(x):.6f}"


def prf_rows(result: MetricsResult) -> Iterator[str]:
    """Lines of the per-threshold table (header first), tab-separated."""
    yield "threshold\tprecision\trecall\tf1"
    for t, p, r, f in zip(result.thresholds, result.precision, result.recall, result.f1):
        yield f"{float(t):.2f}\t{_fmt(p)}\t{_fmt(r)}\t{_fmt(f)}"


def write_prf_table(result: MetricsResult, path: str | os.PathLike[str]) -> None:
    """Write ``threshold, precision, recall, f1`` per row as TSV, atomically."""
    write_text(path, "\n".join(prf_rows(result)) + "\n")
