"""Rendering of ``compare`` results: Markdown, CSV, LaTeX tables, PR curves, qualitative grids.

Input is one table of :func:`crackseg.apps.compare.results.gather` (scores in %). The layout is
the paper's: one row per method, one column group (ODS, OIS, AP) per test set.
With published numbers, each method row is followed by a "paper" row and a "Δ"
row (ours − paper). matplotlib is imported lazily with the Agg backend.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.io import atomic_write, read_gray
from crackseg.base.tables import DASH as _DASH
from crackseg.base.tables import markdown_table as _pipe_table
from crackseg.data.loading import load_samples

METRICS = ("ods", "ois", "ap")
_NA = "n/a"


# -- numbers ------------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return _DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    if ours is None or paper is None:
        return _DASH
    return f"{ours - paper:+.2f}"


def _label(row: dict[str, Any]) -> str:
    return row["label"] + (" †" if row.get("placeholder") else "")


def _lines(table: dict[str, Any], tests: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(kind, label, cells) per printed line; kind in ours / paper / diff."""
    out = []
    for row in table["rows"]:
        if row["status"] == "not implemented":
            ours = [_NA] * (3 * len(tests))
        else:
            ours = [_fmt(row["metrics"].get(t["id"], {}).get(m)) for t in tests for m in METRICS]
        out.append(("ours", _label(row), ours))
        pub = row.get("published")
        if pub:
            paper = [_fmt(pub.get(t["id"], {}).get(m)) for t in tests for m in METRICS]
            out.append(("paper", "paper", paper))
            if row["status"] != "not implemented":
                diff = [_diff(row["metrics"].get(t["id"], {}).get(m), pub.get(t["id"], {}).get(m))
                        for t in tests for m in METRICS]
                out.append(("diff", "Δ", diff))
    return out


def _best(lines: list[tuple[str, str, list[str]]]) -> set[tuple[int, int]]:
    """(line, column) of the best of our numbers per column (bold)."""
    best: set[tuple[int, int]] = set()
    ours = [(i, c) for i, (k, _, c) in enumerate(lines) if k == "ours"]
    if len(ours) < 2:
        return best
    for col in range(len(ours[0][1])):
        vals = [(float(c[col]), i) for i, c in ours if c[col] not in (_NA, _DASH)]
        if vals:
            top = max(v for v, _ in vals)
            best.update((i, col) for v, i in vals if v == top)
    return best


def table_lines(table: dict[str, Any], tests: Sequence[dict[str, Any]]
                ) -> tuple[list[tuple[str, str, list[str]]], set[tuple[int, int]]]:
    """The printed lines of a table, ``(kind, label, cells)`` with kind ours / paper / diff, and the
    ``(line, column)`` of the best of our numbers per column (every format shows these in bold)."""
    lines = _lines(table, tests)
    return lines, _best(lines)


# -- Markdown --------------------------------------------------------------------------------------
def markdown_table(table: dict[str, Any], tests: Sequence[dict[str, Any]]) -> str:
    """The table as Markdown: title, caption, header, rows (best in bold), footnotes."""
    head = ["Method"] + [f"{t['label']} {m.upper()}" for t in tests for m in METRICS]
    lines, bold = table_lines(table, tests)
    out = [f"### {table['title']}", ""]
    if table.get("caption"):
        out += [table["caption"], ""]
    body = [[label if kind == "ours" else f"↳ {label}",
             *[f"**{c}**" if (i, j) in bold else c for j, c in enumerate(cells)]]
            for i, (kind, label, cells) in enumerate(lines)]
    out.append(_pipe_table(head, body))
    notes = _notes(table)
    if notes:
        out.append("")
        out += [f"- {n}" for n in notes]
    return "\n".join(out)


def _notes(table: dict[str, Any]) -> list[str]:
    notes = list(table.get("footnotes") or [])
    pending = [r["label"] for r in table["rows"] if r["status"] in ("not run", "partial")]
    if pending:
        notes.append(f"not finished yet: {', '.join(pending)} (– = no result)")
    undefined = any(v is None for r in table["rows"] if r["status"] == "done"
                    for m in r["metrics"].values() for k, v in m.items() if k in METRICS)
    if undefined:
        notes.append("– = undefined: no true positive at the chosen thresholds (0/0 in the authors' F formula)")
    shows_paper = table.get("published_shown") and any(r.get("published") for r in table["rows"])
    notes.append("ODS / OIS / AP in %" + ("; paper = published numbers, Δ = ours − paper" if shows_paper else ""))
    return notes


# -- CSV ----------------------------------------------------------------------------------------
def csv_table(table: dict[str, Any], tests: Sequence[dict[str, Any]]) -> str:
    """One line per (method, source): source = ours | paper | diff; empty = no number."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "row_id", "method", "source", "status",
                *[f"{t['id']}_{m}" for t in tests for m in METRICS]])
    for row in table["rows"]:
        ours = [_csv_num(row["metrics"].get(t["id"], {}).get(m)) for t in tests for m in METRICS]
        w.writerow([table["id"], row["id"], row["label"], "ours", row["status"], *ours])
        pub = row.get("published")
        if pub:
            w.writerow([table["id"], row["id"], row["label"], "paper", "published",
                        *[_csv_num(pub.get(t["id"], {}).get(m)) for t in tests for m in METRICS]])
            if row["status"] != "not implemented":
                diffs = []
                for t in tests:
                    for m in METRICS:
                        a, b = row["metrics"].get(t["id"], {}).get(m), pub.get(t["id"], {}).get(m)
                        diffs.append("" if a is None or b is None else f"{a - b:.4f}")
                w.writerow([table["id"], row["id"], row["label"], "diff", row["status"], *diffs])
    return buf.getvalue()


def _csv_num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


# -- LaTeX --------------------------------------------------------------------------------------
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "†": r"$^\dagger$", "Δ": r"$\Delta$", "–": "--", "−": "$-$", "↳": ""}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def latex_table(table: dict[str, Any], tests: Sequence[dict[str, Any]]) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    lines, bold = table_lines(table, tests)
    n = len(tests)
    out = [r"\begin{table}[t]", r"\centering", r"\small"]
    cap = table["title"] + (f". {table['caption']}" if table.get("caption") else "")
    out.append(r"\caption{" + tex_escape(cap) + "}")
    out.append(r"\label{tab:" + tex_escape(table["id"]) + "}")
    out.append(r"\begin{tabular}{l" + " rrr" * n + "}")
    out.append(r"\toprule")
    out.append(" & " + " & ".join(r"\multicolumn{3}{c}{" + tex_escape(t["label"]) + "}" for t in tests) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(n)))
    out.append("Method & " + " & ".join(["ODS & OIS & AP"] * n) + r" \\")
    out.append(r"\midrule")
    for i, (kind, label, cells) in enumerate(lines):
        name = tex_escape(label) if kind == "ours" else r"\quad " + tex_escape(label)
        shown = [r"\textbf{" + tex_escape(c) + "}" if (i, j) in bold else tex_escape(c) for j, c in enumerate(cells)]
        out.append(" & ".join([name, *shown]) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    notes = _notes(table)
    if notes:
        out.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(tex_escape(x) for x in notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# -- figures ------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_prf(path: Path) -> tuple[list[float], list[float]] | None:
    """(recall, precision) points of a ``prf.tsv`` written by :func:`crackseg.evaluation.metrics.write_prf_table`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    rec, prec = [], []
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        try:
            p, r = float(parts[1]), float(parts[2])
        except ValueError:
            continue
        if not (math.isnan(p) or math.isnan(r)):
            rec.append(r)
            prec.append(p)
    return (rec, prec) if rec else None


def pr_curves(table: dict[str, Any], tests: Sequence[dict[str, Any]], runs_dir: Path, out_dir: Path) -> list[Path]:
    """One PNG per test set (``pr-<test>.png``): a precision–recall curve per method."""
    plt = _plt()
    written = []
    for t in tests:
        curves = []
        for row in table["rows"]:
            m = row["metrics"].get(t["id"])
            if not m:
                continue
            pts = read_prf(runs_dir / m["dir"] / "prf.tsv")
            if pts:
                curves.append((f"{_label(row)} (ODS {_fmt(m.get('ods'))})", pts))
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
        for f in (0.2, 0.4, 0.6, 0.8):  # iso-F1 lines
            r = np.linspace(f / (2 - f) + 1e-3, 1, 100)
            ax.plot(r, f * r / (2 * r - f), color="0.85", lw=0.8, zorder=0)
            ax.annotate(f"F={f:.1f}", (1.0, f / (2 - f)), fontsize=6, color="0.6", ha="right", va="bottom")
        for name, (rec, prec) in curves:
            ax.plot(rec, prec, lw=1.5, label=name)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{table['title'][:60]} — {t['label']}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"pr-{t['id']}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def bar_chart(table: dict[str, Any], tests: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars (the paper's Figure 5): groups = test set × metric, one bar per method."""
    rows = [r for r in table["rows"] if r["metrics"]]
    if not rows:
        return None
    plt = _plt()
    groups = [(t, m) for t in tests for m in METRICS]
    x = np.arange(len(groups))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(groups)), 3.6), dpi=120)
    for i, row in enumerate(rows):
        vals = [row["metrics"].get(t["id"], {}).get(m) or 0.0 for t, m in groups]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=_label(row))
        ax.bar_label(bars, fmt="%.1f", fontsize=5, padding=1)
    ax.set_xticks(x, [f"{t['label']}\n{m.upper()}" for t, m in groups], fontsize=6)
    ax.set_ylabel("%")
    ax.set_title(table["title"][:90], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def qualitative_grid(table: dict[str, Any], grid: Any, runs_dir: Path, path: Path) -> Path | None:
    """Figures 3/4 of the paper: image, ground truth and each method's map for a few test images.

    For each test set, the first ``grid.qualitative_images`` images (dataset order)
    that contain crack and have a prediction from every finished method.
    """
    rows = [r for r in table["rows"] if r["metrics"]]
    if not rows or grid.qualitative_images <= 0:
        return None
    picks = []  # (test label, sample, [pred path per method])
    for t in grid.tests:
        if not all(t.id in r["metrics"] for r in rows):
            continue
        dirs = [runs_dir / r["metrics"][t.id]["dir"] / "predictions" for r in rows]
        samples = _test_samples(grid, t, rows[0]["cell_index"])
        n = 0
        for s in samples:
            if n >= grid.qualitative_images:
                break
            preds = [d / f"{s.stem}.png" for d in dirs]
            if not all(p.is_file() for p in preds) or not s.has_mask:
                continue
            if not s.mask().any():
                continue
            picks.append((t.label, s, preds))
            n += 1
    if not picks:
        return None
    plt = _plt()
    cols = 2 + len(rows)
    fig, axes = plt.subplots(len(picks), cols, figsize=(1.7 * cols, 1.35 * len(picks) + 0.3), dpi=130, squeeze=False)
    titles = ["image", "ground truth", *[_label(r) for r in rows]]
    for i, (tlabel, s, preds) in enumerate(picks):
        panels = [s.load_image(), s.mask(), *[read_gray(p) for p in preds]]
        for j, img in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(img, cmap=None if j == 0 else "gray", vmin=0, vmax=1 if j == 1 else 255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=6)
            if j == 0:
                ax.set_ylabel(f"{tlabel}\n{s.stem}", fontsize=5)
    fig.tight_layout(pad=0.3)
    _save(fig, path)
    plt.close(fig)
    return path


def _test_samples(grid: Any, t: Any, cell_index: int) -> list[Any]:
    """The samples of test set ``t``: a cell's own test split, or the test set's data section."""
    if t.data is None:
        data = grid.cells[cell_index].config["data"]
        return load_samples(data, data["test_split"], int(data.get("limit_test") or 0))
    spec = dict(t.data)
    split = str(spec.pop("split", "test"))
    return load_samples(spec, split, int(spec.pop("limit", 0) or 0))


def _save(fig: Any, path: Path) -> None:
    """Save a figure atomically (write to a temporary name, then rename)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
