"""Crack measurements from binary masks: per instance and per image (``crackseg measure``).

An *instance* is a connected component (8-connected) of the binary mask, after components
smaller than ``min_area`` pixels are removed. For each one:

- **length**: the skeleton's length (scikit-image ``skeletonize`` with Lee's method: Zhang's eats the tips
  of diagonal cracks; its paths from ``skan``, each smoothed over 5 pixels so that the pixel
  staircase does not count), plus the half-width at each free end, because a
  skeleton stops about half a width short of the crack's tip. Spurs shorter than the local
  width (artefacts of skeletonising a ragged edge) are pruned first.
- **width** along the skeleton: ``2·d − ½`` (see ``_widths``) where ``d`` is the Euclidean distance transform
  (SciPy) at a skeleton pixel, i.e. the distance from its centre to the first background pixel
  centre; mean, median, max and 95th percentile.
- **area**, **bounding box**, **orientation**: the principal direction of the skeleton pixels,
  as an angle from the image's x axis (0–180°, counter-clockwise as seen on screen), and a class:
  *longitudinal* within 30° of the direction of travel, *transverse* within 30° of its normal,
  *diagonal* otherwise. The direction of travel is the image's vertical axis by default
  (``travel="horizontal"`` for surveys whose road runs across the image).
- **topology**: *network* when the crack encloses at least one cell (a hole of at least
  ``min_cell_area`` px: alligator cracking), else *branched* when its skeleton has a junction,
  else *single*.

Per image: instance count, total length, max width, crack area and fraction, and density
(total length per image area, 1/px or 1/mm). With ``px_per_mm`` lengths are in mm and areas
in mm²; without it, in pixels.

Measurements are estimates with known biases (docs/guides/measure.md; ``benchmarks/measure.py``):
on drawn cracks 1.5–4 px wide the length is within 3 % and the mean width within 0.5 px; a 1-px
crack reads 1.5 px wide (the distance transform cannot see below one pixel).
"""

from __future__ import annotations

import csv
import io as _io
import math
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.errors import CracksegError
from crackseg.base.io import (
    images_by_stem,
    read_gray,
    read_image,
    read_mask,
    what_was_read,
    write_json,
    write_png,
    write_text,
)
from crackseg.base.maps import crack_mask
from crackseg.base.out_folder import check_out_folder

#: pixels averaged along a skeleton path before its length is summed (see _path_length)
_SMOOTH = 5
#: how far (degrees) from the direction of travel / its normal a crack still counts as longitudinal / transverse
ORIENTATION_TOLERANCE = 30.0
TRAVEL_DIRECTIONS = ("vertical", "horizontal")
INSTANCE_COLUMNS = ("image", "instance", "length", "width_mean", "width_median", "width_max", "width_p95", "area",
                    "x0", "y0", "x1", "y1", "angle_deg", "orientation", "topology", "branches", "junctions", "cells")
IMAGE_COLUMNS = ("image", "height", "width", "instances", "total_length", "max_width", "crack_area",
                 "crack_fraction", "density")


@dataclass
class Instance:
    """One crack instance. Lengths and widths in ``unit``; area in ``unit``²; bbox in pixels."""

    image: str
    instance: int
    length: float
    width_mean: float
    width_median: float
    width_max: float
    width_p95: float
    area: float
    x0: int
    y0: int
    x1: int
    y1: int
    angle_deg: float
    orientation: str
    topology: str
    branches: int
    junctions: int
    cells: int
    skeleton: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 2), np.int64))


@dataclass
class ImageMeasures:
    """Per-image totals. ``density`` is total length per image area (1/unit)."""

    image: str
    height: int
    width: int
    instances: int
    total_length: float
    max_width: float
    crack_area: float
    crack_fraction: float
    density: float


@dataclass
class MeasureOptions:
    """How masks are read and measured (``crackseg measure`` options)."""

    threshold: float | None = None
    px_per_mm: float | None = None
    min_area: int = 10
    min_cell_area: int = 16
    travel: str = "vertical"

    def __post_init__(self) -> None:
        if self.px_per_mm is not None and not (math.isfinite(self.px_per_mm) and self.px_per_mm > 0):
            raise CracksegError(f"--px-per-mm {self.px_per_mm:g}: must be a positive number of pixels per millimetre")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise CracksegError(f"--threshold {self.threshold:g}: must be in [0, 1) (a probability; mask = p > T)")
        if self.min_area < 0:
            raise CracksegError(f"--min-area {self.min_area}: must be >= 0 pixels")
        if self.travel not in TRAVEL_DIRECTIONS:
            raise CracksegError(f"--travel {self.travel!r}: must be one of {', '.join(TRAVEL_DIRECTIONS)}")

    @property
    def unit(self) -> str:
        return "mm" if self.px_per_mm else "px"


def _skan() -> tuple[Any, Any]:
    try:
        import skan
        from skimage.morphology import skeletonize
    except ModuleNotFoundError as exc:
        raise CracksegError(
            f"crackseg measure needs the {exc.name!r} package; pip install 'crackseg[measure]'"
        ) from None
    return skan, skeletonize


def measure_mask(mask: np.ndarray, image: str = "", options: MeasureOptions | None = None
                 ) -> tuple[list[Instance], ImageMeasures]:
    """Measure the cracks of one binary mask (``H×W``, nonzero = crack)."""
    from scipy import ndimage  # here, not at the top: it doubles the CLI's start-up time
    opt = options or MeasureOptions()
    skan, skeletonize = _skan()
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise CracksegError(f"{image or 'mask'}: a mask must be one 2-D channel, got shape {m.shape}")
    s = 1.0 / opt.px_per_mm if opt.px_per_mm else 1.0
    eight = np.ones((3, 3), bool)
    labels, n = ndimage.label(m, structure=eight)
    if n and opt.min_area > 1:
        sizes = ndimage.sum_labels(m, labels, index=np.arange(1, n + 1))
        keep = np.concatenate([[False], sizes >= opt.min_area])
        m = keep[labels]
        labels, n = ndimage.label(m, structure=eight)
    # outside the image is background, as for the skeleton: scipy's transform never reaches past the
    # border, so a mask that touches it on every side (an all-crack image) would read wider than the image
    dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    skel = skeletonize(m, method="lee") > 0
    h, w = m.shape
    instances: list[Instance] = []
    objects = ndimage.find_objects(labels)
    for k, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        comp = labels[sl] == k
        sk = skel[sl] & comp
        d = dist[sl]
        inst = _measure_instance(skan, comp, sk, d, opt)
        y0, x0 = sl[0].start, sl[1].start
        instances.append(Instance(
            image=image, instance=len(instances) + 1, length=inst["length"] * s,
            width_mean=inst["widths"].mean() * s, width_median=float(np.median(inst["widths"])) * s,
            width_max=inst["widths"].max() * s, width_p95=float(np.percentile(inst["widths"], 95)) * s,
            area=float(comp.sum()) * s * s, x0=x0, y0=y0, x1=sl[1].stop - 1, y1=sl[0].stop - 1,
            angle_deg=inst["angle"], orientation=_orientation(inst["angle"], opt.travel),
            topology=inst["topology"], branches=inst["branches"], junctions=inst["junctions"], cells=inst["cells"],
            skeleton=inst["skeleton"] + np.array([y0, x0]),
        ))
    total = float(sum(i.length for i in instances))
    area_img = h * w * s * s
    crack_area = float(m.sum()) * s * s
    summary = ImageMeasures(image=image, height=h, width=w, instances=len(instances), total_length=total,
                            max_width=max((i.width_max for i in instances), default=0.0), crack_area=crack_area,
                            crack_fraction=crack_area / area_img, density=total / area_img)
    return instances, summary


def _measure_instance(skan: Any, comp: np.ndarray, sk: np.ndarray, dist: np.ndarray,
                      opt: MeasureOptions) -> dict[str, Any]:
    from scipy import ndimage  # here, not at the top: it doubles the CLI's start-up time
    if sk.sum() < 2:  # a blob: its skeleton is one pixel; length = width = its diameter
        ys, xs = np.nonzero(sk if sk.any() else comp)
        d = float(dist[ys, xs].max())
        wid = _widths(np.array([d]))
        return {"length": float(wid[0]), "widths": wid, "angle": 0.0, "topology": "single", "branches": 0,
                "junctions": 0, "cells": _cells(comp, opt.min_cell_area), "skeleton": np.stack([ys, xs], 1)}
    graph = _pruned_skeleton(skan, sk, dist)
    coords = graph.coordinates.astype(np.int64)
    on = np.zeros(sk.shape, bool)
    on[coords[:, 0], coords[:, 1]] = True
    ys, xs = np.nonzero(on)
    widths = _widths(dist[ys, xs])
    degrees = np.zeros(sk.shape, np.int64)
    degrees[coords[:, 0], coords[:, 1]] = graph.degrees
    ends = degrees == 1
    # a skeleton stops about half a width short of each tip: add it back
    end_gain = float(np.maximum(0.0, dist[ends] - 0.5).sum())
    length = sum(_path_length(graph.path_coordinates(i)) for i in range(graph.n_paths)) + end_gain
    junctions = int(ndimage.label(degrees >= 3, structure=np.ones((3, 3), bool))[1])
    cells = _cells(comp, opt.min_cell_area)
    topology = "network" if cells else ("branched" if junctions else "single")
    return {"length": length, "widths": widths, "angle": _principal_angle(ys, xs), "topology": topology,
            "branches": int(graph.n_paths), "junctions": junctions, "cells": cells, "skeleton": np.stack([ys, xs], 1)}


def _path_length(coords: np.ndarray) -> float:
    """Length of a skeleton path after smoothing away its pixel staircase.

    Summing pixel steps (1 or √2) overestimates a straight line at 22.5° by 8 % and a random
    direction by about 6 %; a moving average over ``_SMOOTH`` pixels (ends kept) removes the staircase.
    """
    from scipy import ndimage  # here, not at the top: it doubles the CLI's start-up time
    c = coords.astype(np.float64)
    if len(c) > _SMOOTH:
        inner = ndimage.uniform_filter1d(c, _SMOOTH, axis=0, mode="nearest")
        inner[0], inner[-1] = c[0], c[-1]
        c = inner
    return float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum())


def _pruned_skeleton(skan: Any, sk: np.ndarray, dist: np.ndarray) -> Any:
    """The skan graph of ``sk`` without spurs: junction-to-tip branches shorter than the local width."""
    graph = skan.Skeleton(sk)
    lengths = graph.path_lengths()
    spur = []
    for i in range(graph.n_paths):
        ends = graph.degrees[graph.path(i)[[0, -1]]]
        if sorted(ends.tolist())[0] != 1 or max(ends) < 3:  # only junction-to-tip branches can be spurs
            continue
        path = graph.path_coordinates(i).astype(np.int64)
        if lengths[i] < 2 * float(dist[path[:, 0], path[:, 1]].max()):
            spur.append(i)
    if spur and len(spur) < graph.n_paths:
        graph = graph.prune_paths(spur)
    return graph


def _widths(d: np.ndarray) -> np.ndarray:
    """Crack widths from distance-transform values ``d`` at skeleton pixels: ``2·d − 0.5``, at least 1.

    ``d`` runs from a skeleton pixel's centre to the first background pixel's centre: half the width,
    minus the skeleton pixel's offset from the centre line (¼ px on average), plus the gap between the
    crack's edge and that background centre (½ px on average), so ``w ≈ 2·(d − ¼)``.
    """
    return np.maximum(1.0, 2.0 * d - 0.5)


def _cells(comp: np.ndarray, min_cell_area: int) -> int:
    """Enclosed background regions (holes) of at least ``min_cell_area`` pixels."""
    from scipy import ndimage  # here, not at the top: it doubles the CLI's start-up time
    holes = ndimage.binary_fill_holes(comp) & ~comp
    if not holes.any():
        return 0
    lab, n = ndimage.label(holes)
    sizes = ndimage.sum_labels(holes, lab, index=np.arange(1, n + 1))
    return int((sizes >= min_cell_area).sum())


def _principal_angle(ys: np.ndarray, xs: np.ndarray) -> float:
    """Angle (degrees, 0–180) of the principal axis of the points, from +x, counter-clockwise on screen."""
    if len(xs) < 2:
        return 0.0
    pts = np.stack([xs - xs.mean(), -(ys - ys.mean())], 1).astype(np.float64)
    _, vecs = np.linalg.eigh(pts.T @ pts)
    vx, vy = vecs[:, -1]
    return float(math.degrees(math.atan2(vy, vx)) % 180.0)


def _orientation(angle: float, travel: str) -> str:
    from_horizontal = min(angle, 180.0 - angle)  # 0..90
    from_travel = 90.0 - from_horizontal if travel == "vertical" else from_horizontal
    if from_travel <= ORIENTATION_TOLERANCE:
        return "longitudinal"
    if from_travel >= 90.0 - ORIENTATION_TOLERANCE:
        return "transverse"
    return "diagonal"


# -- folders -----------------------------------------------------------------
#: what an overlay is drawn on: a photo's file, or a function that loads it (a run's test image)
Background = Path | Callable[[], np.ndarray]


@dataclass
class MeasureSource:
    """Where masks come from: a folder of masks, or a run folder's predictions."""

    masks: dict[str, Path]
    threshold: float | None
    backgrounds: dict[str, Background]


def resolve_source(source: str | Path, threshold: float | None,
                   images: str | Path | Mapping[str, Path] | None = None) -> MeasureSource:
    """Masks to measure in ``source``: a run folder (its ``predictions/``) or a folder of masks.

    For a run folder the threshold defaults to the run's ODS threshold (``metrics.json``; its
    ``predict.threshold`` when it had no ground truth to choose one) and overlays are drawn on the run's
    test images (its ``config.yaml``'s data; on the masks, with a warning, when that data is gone);
    ``images`` (a folder) puts them on those photos instead.
    """
    src = Path(source)
    if not src.exists():
        raise CracksegError(f"{src}: no such folder")
    if not src.is_dir():
        raise CracksegError(f"{src}: not a folder (give a folder of masks or a run folder)")
    backgrounds: dict[str, Background] = {}
    if (src / "config.yaml").is_file():
        pred = src / "predictions"
        if not pred.is_dir():
            raise CracksegError(f"{src}: this run has no predictions/ yet; finish it (crackseg run --resume)")
        if threshold is None:  # the run's ODS threshold; without ground truth, its predict.threshold (as predict)
            from crackseg.config.layers import load_yaml
            from crackseg.prediction.thresholds import choose_threshold

            predict = load_yaml(src / "config.yaml", what="run config").get("predict") or {}
            threshold = choose_threshold(src, None, predict if isinstance(predict, dict) else {})[0]
        if images is None:
            backgrounds = _run_test_images(src)
        src = pred
    masks = images_by_stem(src)
    if not masks:
        raise CracksegError(f"{src}: no mask images to measure {what_was_read(src)}")
    if isinstance(images, Mapping):
        backgrounds = {stem: path for stem, path in images.items()}
    elif images is not None:
        if not Path(images).is_dir():
            raise CracksegError(f"--images {images}: no such folder")
        backgrounds = {stem: path for stem, path in images_by_stem(images).items()}
    return MeasureSource(masks=masks, threshold=threshold, backgrounds=backgrounds)


def binary_mask(path: Path, threshold: float | None) -> np.ndarray:
    """The binary mask in ``path``: ``value/255 > threshold``, or a 0/255 (0/1) mask read by
    :func:`~crackseg.base.io.read_mask` (the rule of every command: 0/1 is crack where 1)."""
    grey = read_gray(path)
    if threshold is not None:
        return crack_mask(grey, threshold)
    values = np.unique(grey)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        raise CracksegError(f"{path}: not a binary mask ({len(values)} grey levels); "
                            f"pass --threshold T to binarise probability maps")
    return read_mask(path)


#: the file that marks a folder as measure's output (an ``--out`` holding it may be replaced)
MEASURE_MARKER = "measurements.json"


def measure_folder(source: str | Path, out: str | Path, options: MeasureOptions | None = None, *,
                   images: str | Path | Mapping[str, Path] | None = None, overlays: bool = True,
                   quiet: bool = True
                   ) -> tuple[list[Instance], list[ImageMeasures]]:
    """Measure every mask in ``source`` and write ``out/{instances.csv, images.csv, measurements.json}``
    and ``out/overlays/<stem>.png``.

    Every mask is read (and checked) before anything is written or a progress bar starts, so a bad
    mask is one line. The results are written to a hidden sibling folder that replaces ``out`` when
    complete, so ``out`` is never half-written; an ``out`` that holds anything but earlier
    measurements is refused.
    """
    from tqdm.auto import tqdm

    opt = options or MeasureOptions()
    src = resolve_source(source, opt.threshold, images)
    out = check_out_folder(out, command="measure", marker=MEASURE_MARKER)
    masks = [(stem, binary_mask(p, src.threshold)) for stem, p in src.masks.items()]
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    all_instances: list[Instance] = []
    summaries: list[ImageMeasures] = []
    per_image: list[dict[str, Any]] = []
    try:
        for stem, m in tqdm(masks, desc="measure", disable=quiet):
            inst, summary = measure_mask(m, stem, opt)
            all_instances.extend(inst)
            summaries.append(summary)
            per_image.append({**asdict(summary), "instances": [_instance_json(i) for i in inst]})
            if overlays:
                write_png(tmp / "overlays" / f"{stem}.png", draw_measurements(_background(src, stem, m), inst))
        write_text(tmp / "instances.csv", _csv(INSTANCE_COLUMNS, (asdict(i) for i in all_instances)))
        write_text(tmp / "images.csv", _csv(IMAGE_COLUMNS, (asdict(s) for s in summaries)))
        write_json(tmp / "measurements.json", {
            "unit": opt.unit, "px_per_mm": opt.px_per_mm, "threshold": src.threshold, "min_area": opt.min_area,
            "min_cell_area": opt.min_cell_area, "travel": opt.travel,
            "images": per_image,
        })
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return all_instances, summaries


def _instance_json(inst: Instance) -> dict:
    d = asdict(inst)
    d.pop("skeleton")
    return d


def _csv(columns: Sequence[str], rows: Iterator[dict]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _run_test_images(run_dir: Path) -> dict[str, Background]:
    """The run's test images by stem (loaded when drawn); none, with a warning, when its data cannot be opened."""
    from crackseg.base.console import warn
    from crackseg.evaluation.scoring import run_test_split

    try:
        samples = run_test_split(run_dir)[1]
    except CracksegError as exc:
        warn(f"{run_dir}: the run's test images cannot be read ({exc}); overlays are drawn on the masks")
        return {}
    return {s.stem: s.load_image for s in samples}


def _background(src: MeasureSource, stem: str, mask: np.ndarray) -> np.ndarray:
    source = src.backgrounds.get(stem)
    if source is not None:
        img = read_image(source) if isinstance(source, Path) else source()
        if img.shape[:2] == mask.shape:
            return img
    grey = np.where(mask, 90, 0).astype(np.uint8)
    return np.stack([grey] * 3, -1)


_PALETTE = np.array([[255, 220, 0], [0, 230, 255], [255, 80, 255], [120, 255, 80], [255, 150, 40], [80, 160, 255]],
                    np.uint8)


def draw_measurements(image: np.ndarray, instances: Sequence[Instance]) -> np.ndarray:
    """RGB image with each instance's skeleton in its own colour and its number and length beside it."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    for inst in instances:
        colour = _PALETTE[(inst.instance - 1) % len(_PALETTE)]
        sk = inst.skeleton
        if len(sk):
            out[sk[:, 0], sk[:, 1]] = colour
        text = f"{inst.instance}: {inst.length:.0f}"
        org = (int(inst.x0), max(10, int(inst.y0) - 2))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35, tuple(int(c) for c in colour), 1, cv2.LINE_AA)
    return out


# -- what the commands print (measure, predict --measure, run --measure) ------------------------------
def measure_summary(instances: Sequence[Instance], images: Sequence[ImageMeasures], opt: MeasureOptions,
                    out: str | Path) -> str:
    """The lines ``measure`` prints: counts, totals, where the files are."""
    unit = opt.unit
    total = sum(i.length for i in instances)
    widest = max((i.width_max for i in instances), default=0.0)
    return (f"{len(instances)} cracks in {len(images)} images: total length {total:.1f} {unit}, "
            f"max width {widest:.1f} {unit}\n"
            f"wrote {Path(out) / 'instances.csv'}, images.csv, measurements.json and overlays/")


def measure_and_summarise(source: str | Path, out: str | Path, opt: MeasureOptions, *,
                          images: str | Path | Mapping[str, Path] | None = None, quiet: bool = False) -> str:
    """Measure the masks of ``source`` into ``out`` (:func:`~crackseg.apps.measure.measure_folder`); the summary."""
    instances, measured = measure_folder(source, out, opt, images=images, quiet=quiet)
    return measure_summary(instances, measured, opt, out)
