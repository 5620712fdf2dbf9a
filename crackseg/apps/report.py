"""``crackseg report``: one self-contained HTML page for a run folder or a ``compare`` grid folder.

A run's page holds its metrics and resolved config, the precision–recall and F–threshold
curves (recomputed from ``predictions/`` and checked against ``metrics.json``), the loss
curve, a per-image table sortable in the page (F, precision and recall at the run's ODS
threshold, crack fractions, crack measurements) and a gallery of image / ground truth /
overlay / probability map. A grid's page holds every table of ``results.json`` with its
PR curves and figures. Pictures are embedded as data URIs and charts are inline SVG, so
the file opens offline and can be mailed as it is. Rendering uses Jinja2 (``crackseg[report]``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.console import quote
from crackseg.base.errors import CracksegError, DataError
from crackseg.base.io import images_by_stem, read_gray, write_text
from crackseg.base.maps import crack_mask
from crackseg.base.names import safe_name
from crackseg.base.overlays import overlay
from crackseg.base.svg import Chart, Series, line_chart
from crackseg.base.tables import percent
from crackseg.base.version import __version__
from crackseg.config.run_folder import CONFIG_FILE, METRICS_FILE, load_run_config
from crackseg.data.loading import test_samples
from crackseg.data.samples import Sample
from crackseg.evaluation.metrics import MetricAccumulator

#: what ``crackseg compare`` leaves in a grid folder
GRID_RESULTS = "results.json"
REPORT_FILE = "report.html"
#: ``metrics.json`` and the recomputed scores may differ by float rounding only
_AGREE = 1e-6


@dataclass
class ReportOptions:
    """What goes into the page."""

    #: gallery images (spread evenly over the F range, worst first); 0 = no gallery
    gallery: int = 12
    #: longest side of the gallery thumbnails, pixels
    thumb: int = 320
    #: measure cracks for the per-image table when the run has no ``measurements/`` (needs skan)
    measure: bool = True

    def __post_init__(self) -> None:
        if self.gallery < 0:
            raise CracksegError(f"--gallery {self.gallery}: must be >= 0 images")
        if self.thumb < 32:
            raise CracksegError(f"--thumb {self.thumb}: must be >= 32 pixels")


def write_report(source: str | Path, out: str | Path | None = None, options: ReportOptions | None = None,
                 *, quiet: bool = True) -> Path:
    """Write the report of a run folder or grid folder ``source`` to ``out`` (default ``source/report.html``)."""
    opt = options or ReportOptions()
    src = Path(source)
    kind = source_kind(src)
    context = run_context(src, opt, quiet=quiet) if kind == "run" else grid_context(src)
    html = render_page(context)
    target = Path(out) if out is not None else src / REPORT_FILE
    if target.is_dir():
        raise CracksegError(f"--out {target}: is a folder; give the HTML file to write")
    if not target.parent.is_dir():
        raise CracksegError(f"--out {target}: the folder {target.parent} does not exist")
    return write_text(target, html)


def source_kind(src: Path) -> str:
    """``run`` or ``grid``, or a one-line error saying what the folder lacks."""
    if not src.exists():
        raise CracksegError(f"{src}: no such folder")
    if not src.is_dir():
        raise CracksegError(f"{src}: not a folder (give a run folder or a compare grid folder)")
    if (src / GRID_RESULTS).is_file():
        return "grid"
    if (src / CONFIG_FILE).is_file():
        if not (src / METRICS_FILE).is_file():
            raise CracksegError(f"{src}: this run has not finished (no {METRICS_FILE}); "
                                f"finish it with crackseg run --resume")
        return "run"
    raise CracksegError(f"{src}: not a run folder ({CONFIG_FILE} + {METRICS_FILE}) "
                        f"or a compare grid folder ({GRID_RESULTS})")


# -- a run ------------------------------------------------------------------------------------
def run_context(run_dir: Path, opt: ReportOptions, *, quiet: bool = True) -> dict[str, Any]:
    """Everything the page shows about one run (plain data for the template)."""
    from tqdm.auto import tqdm

    cfg = load_run_config(run_dir)
    metrics = _read_json(run_dir / METRICS_FILE)
    pred_dir = run_dir / "predictions"
    preds = images_by_stem(pred_dir) if pred_dir.is_dir() else {}
    if not preds:
        raise CracksegError(f"{pred_dir}: no predictions; finish the run with crackseg run --resume")
    samples = [s for s in test_samples(cfg.data) if s.stem in preds]
    if not samples:
        raise CracksegError(f"{pred_dir}: no prediction matches an image of the run's test split "
                            f"({cfg.data['name']}, split {cfg.data['test_split']!r}); is the data where it was?")
    threshold = _threshold(metrics)
    measured = _saved_measurements(run_dir)
    measure = None if measured is not None or not opt.measure else _measurer(threshold)
    acc = MetricAccumulator(str(metrics.get("protocol") or cfg.eval.protocol))
    rows: list[dict[str, Any]] = []
    for s in tqdm(samples, desc="report", disable=quiet, leave=False):
        pred = read_gray(preds[s.stem])
        gt = s.mask() if s.has_mask else None
        if gt is not None and gt.shape != pred.shape:
            raise DataError(f"{preds[s.stem]}: prediction is {pred.shape[1]}x{pred.shape[0]} but the ground truth "
                            f"of {s.source or s.stem} is {gt.shape[1]}x{gt.shape[0]} (W x H)")
        if gt is not None:
            acc.add(s.stem, pred, gt)
        row = _image_row(s.stem, pred, gt, threshold)
        if measured is not None:
            row["measures"] = measured.get(s.stem)
        elif measure is not None:
            row["measures"] = measure(s.stem, pred)
        rows.append(row)
    recomputed = acc.result() if len(acc) else None
    unit = str(measured["__unit__"]) if measured is not None else "px"
    return {
        "kind": "run",
        "title": run_dir.resolve().name,
        "subtitle": " · ".join(str(metrics.get(k) or "") for k in ("labeler", "backbone", "data") if metrics.get(k)),
        "generated": _now(),
        "version": __version__,
        "source": str(run_dir),
        "summary": _summary(metrics, cfg),
        "notes": _notes(metrics, recomputed),
        "details": [(k, _scalar(v)) for k, v in metrics.items() if not isinstance(v, (list, dict)) and v is not None],
        "config": (run_dir / CONFIG_FILE).read_text(encoding="utf-8"),
        "charts": _run_charts(recomputed, metrics),
        "threshold": threshold,
        "has_gt": recomputed is not None,
        "has_measures": any(r.get("measures") for r in rows),
        "unit": unit,
        "measure_note": _measure_note(measured, measure, opt, run_dir),
        "rows": rows,
        "gallery": _gallery(samples, preds, rows, threshold, opt),
        "gallery_total": len(rows),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CracksegError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CracksegError(f"{path}: not a JSON object")
    return data


def _threshold(metrics: dict[str, Any]) -> float:
    t = metrics.get("ods_threshold")
    try:
        return float(t) if t is not None and math.isfinite(float(t)) else 0.5
    except (TypeError, ValueError):
        return 0.5


def _image_row(stem: str, pred: np.ndarray, gt: np.ndarray | None, threshold: float) -> dict[str, Any]:
    m = crack_mask(pred, threshold)
    row: dict[str, Any] = {"stem": stem, "pred_pct": 100.0 * float(m.mean()), "gt_pct": None,
                           "f": None, "p": None, "r": None}
    if gt is not None:
        tp = int(np.count_nonzero(m & gt))
        fp = int(np.count_nonzero(m)) - tp
        fn = int(np.count_nonzero(gt)) - tp
        row["gt_pct"] = 100.0 * float(gt.mean())
        row["p"] = 100.0 * tp / (tp + fp) if tp + fp else None
        row["r"] = 100.0 * tp / (tp + fn) if tp + fn else None
        row["f"] = 100.0 * 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return row


def _saved_measurements(run_dir: Path) -> dict[str, Any] | None:
    """Per-image totals of ``RUN/measurements/measurements.json`` (``run --measure``), by stem."""
    path = run_dir / "measurements" / "measurements.json"
    if not path.is_file():
        return None
    data = _read_json(path)
    out: dict[str, Any] = {"__unit__": data.get("unit", "px")}
    for img in data.get("images") or []:
        out[str(img.get("image"))] = {k: img.get(k) for k in ("instances", "total_length", "max_width", "density")}
    return out


def _measurer(threshold: float) -> Any:
    """Measure predictions at ``threshold`` when crackseg[measure] is installed, else None."""
    try:
        import skan  # noqa: F401
    except ModuleNotFoundError:
        return None
    from crackseg.apps.measure import MeasureOptions, measure_mask

    opt = MeasureOptions(threshold=threshold)

    def measure(stem: str, pred: np.ndarray) -> dict[str, Any]:
        _, s = measure_mask(crack_mask(pred, threshold), stem, opt)
        return {"instances": s.instances, "total_length": s.total_length, "max_width": s.max_width,
                "density": s.density}

    return measure


def _measure_note(measured: Any, measure: Any, opt: ReportOptions, run_dir: Path) -> str:
    if measured is not None:
        return f"Measurements from {run_dir / 'measurements'} (crackseg run --measure or crackseg measure)"
    if measure is not None:
        return "Cracks measured on the predictions at the ODS threshold (crackseg measure gives every detail)"
    if not opt.measure:
        return ""
    return "No crack measurements: pip install 'crackseg[measure]' (or run crackseg measure RUN --out RUN/measurements)"


def _summary(metrics: dict[str, Any], cfg: Any) -> list[tuple[str, str]]:
    out = [(k.upper(), percent(metrics.get(k))) for k in ("ods", "ois", "ap")]
    out.append(("ODS threshold", _num(metrics.get("ods_threshold"), 2)))
    out.append(("test images", str(metrics.get("test_images", metrics.get("n", "")))))
    out.append(("protocol", str(metrics.get("protocol", cfg.eval.protocol))))
    if metrics.get("train_seconds") is not None:
        out.append(("training", f"{float(metrics['train_seconds']):.0f} s, {metrics.get('epochs_done', '?')} epochs"))
    return out


def _notes(metrics: dict[str, Any], recomputed: Any) -> list[str]:
    notes = [str(metrics[k]) for k in ("warning", "notes") if metrics.get(k)]
    notes += [f"placeholder: {p}" for p in metrics.get("placeholders") or []]
    if recomputed is not None:
        saved = [(k, metrics.get(k)) for k in ("ods", "ois", "ap")]
        mine = {"ods": recomputed.ods, "ois": recomputed.ois, "ap": recomputed.ap}
        off = [k for k, v in saved if v is not None and not (abs(float(v) - mine[k]) <= _AGREE)]
        if off:
            notes.append("predictions/ no longer match metrics.json (" + ", ".join(
                f"{k.upper()} {percent(mine[k])} here vs {percent(dict(saved)[k])} saved" for k in off)
                + "): the folder was changed after the run")
    return notes


def _run_charts(res: Any, metrics: dict[str, Any]) -> list[str]:
    charts = []
    if res is not None:
        ods_mark = None
        if np.isfinite(res.f1).any():
            best = int(np.nanargmax(res.f1))
            ods_mark = (float(res.recall[best]), float(res.precision[best]))
        charts.append(line_chart(Chart(
            title="precision–recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), iso_f=True,
            series=[Series(f"{metrics.get('backbone', 'model')} (ODS {percent(res.ods)})", res.recall, res.precision,
                           mark=ods_mark, mark_label=f"ODS at t={res.ods_threshold:.2f}")])))
        charts.append(line_chart(Chart(
            title="F1 against threshold", xlabel="threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02),
            series=[Series("pooled F1" if res.protocol == "crackclip" else "mean per-image F1", res.thresholds,
                           res.f1, mark=(res.ods_threshold, res.ods), mark_label=f"ODS {percent(res.ods)}")])))
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict)]
    keys = sorted({k for h in history for k, v in h.items()
                   if k not in ("epoch", "step", "lr") and isinstance(v, (int, float))})
    if history and keys:
        charts.append(line_chart(Chart(
            title="training", xlabel="epoch", ylabel="value",
            series=[Series(k, [float(h.get("epoch", i + 1)) for i, h in enumerate(history)],
                           [float(h.get(k, math.nan)) for h in history]) for k in keys])))
    return charts


def _gallery(samples: Sequence[Sample], preds: dict[str, Path], rows: list[dict[str, Any]], threshold: float,
             opt: ReportOptions) -> list[dict[str, Any]]:
    """``opt.gallery`` images spread evenly over the F range (worst first); name order without ground truth."""
    if opt.gallery <= 0:
        return []
    by_stem = {s.stem: s for s in samples}
    scored = sorted(rows, key=lambda r: (r["f"] is None, r["f"] if r["f"] is not None else 0.0, r["stem"]))
    n = min(opt.gallery, len(scored))
    picks = [scored[round(i * (len(scored) - 1) / max(n - 1, 1))] for i in range(n)] if n > 1 else scored[:n]
    seen: set[str] = set()
    out = []
    for row in picks:
        if row["stem"] in seen:
            continue
        seen.add(row["stem"])
        s = by_stem[row["stem"]]
        img = s.load_image()
        pred = read_gray(preds[s.stem])
        gt = s.mask() if s.has_mask else None
        m = crack_mask(pred, threshold)
        panels = [("image", img)]
        if gt is not None:
            panels.append(("ground truth", np.repeat((gt.astype(np.uint8) * 255)[..., None], 3, axis=2)))
        panels.append(("prediction (red) / missed (blue)" if gt is not None else "prediction (red)",
                       overlay(img, m, gt)))
        panels.append(("probability", np.repeat(pred[..., None], 3, axis=2)))
        out.append({"stem": s.stem, "f": row["f"],
                    "panels": [(name, data_uri(p, opt.thumb)) for name, p in panels]})
    return out


# -- a grid -----------------------------------------------------------------------------------
def grid_context(grid_dir: Path) -> dict[str, Any]:
    """Every table of a grid's ``results.json`` with its PR curves and figures."""
    from crackseg.apps.compare.render import METRICS, read_prf, table_lines

    results = _read_json(grid_dir / GRID_RESULTS)
    tests = results.get("tests") or []
    tables = []
    for ti, table in enumerate(results.get("tables") or []):
        safe_name(table.get("id"), f"{grid_dir / GRID_RESULTS}: tables[{ti}].id")  # a folder of grid_dir
        lines, bold = table_lines(table, tests)
        charts = []
        for t in tests:
            series = []
            for row in table["rows"]:
                m = (row.get("metrics") or {}).get(t["id"])
                pts = read_prf(grid_dir / _inside(m["dir"], grid_dir) / "prf.tsv") if m else None
                if m and pts:
                    series.append(Series(f"{row['label']} (ODS {_num(m.get('ods'), 2)})", pts[0], pts[1]))
            if series:
                charts.append(line_chart(Chart(title=f"{t['label']}", xlabel="recall", ylabel="precision",
                                               xlim=(0, 1), ylim=(0, 1.02), iso_f=True, series=series)))
        figures = [(name, _file_uri(grid_dir / table["id"] / f"{name}.png"))
                   for name in ("qualitative", "bars") if (grid_dir / table["id"] / f"{name}.png").is_file()]
        tables.append({"id": table["id"], "title": table.get("title", table["id"]),
                       "caption": table.get("caption", ""), "footnotes": table.get("footnotes") or [],
                       "header": ["Method"] + [f"{t['label']} {m.upper()}" for t in tests for m in METRICS],
                       "lines": [{"kind": kind, "label": label,
                                  "cells": [(c, (i, j) in bold) for j, c in enumerate(cells)]}
                                 for i, (kind, label, cells) in enumerate(lines)],
                       "charts": charts, "figures": figures})
    return {"kind": "grid", "title": str(results.get("grid") or grid_dir.resolve().name),
            "subtitle": f"preset {results['preset']}" if results.get("preset") else "",
            "generated": _now(), "version": __version__, "source": str(grid_dir), "tables": tables}


# -- rendering --------------------------------------------------------------------------------
def render_page(context: dict[str, Any]) -> str:
    """The HTML page of a context from :func:`run_context` or :func:`grid_context`."""
    try:
        import jinja2
    except ModuleNotFoundError:
        raise CracksegError("crackseg report needs Jinja2; pip install 'crackseg[report]'") from None
    env = jinja2.Environment(loader=jinja2.PackageLoader("crackseg", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct_cell
    env.filters["num"] = _num
    return env.get_template("report.html.j2").render(**context)


def data_uri(rgb: np.ndarray, max_side: int) -> str:
    """A JPEG data URI of an RGB image scaled so its longest side is at most ``max_side``."""
    from crackseg.base.io import _cv2

    cv2 = _cv2()
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise DataError("cannot encode a gallery image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _inside(relative: Any, folder: Path) -> str:
    """``relative``, a path that ``results.json`` gives inside ``folder``; one line if it leads elsewhere."""
    parts = Path(str(relative)).parts
    if Path(str(relative)).is_absolute() or ".." in parts:
        raise DataError(f"{folder / GRID_RESULTS}: {quote(relative)} is not a folder inside {folder}")
    return str(relative)


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _pct_cell(x: Any, digits: int = 1) -> str:
    """A value already in % (or None) for a table cell."""
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def _scalar(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
