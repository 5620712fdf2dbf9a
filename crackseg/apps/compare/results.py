"""Gathering finished cells into the grid's tables (in %), and writing every table and figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crackseg.apps.compare import render
from crackseg.apps.compare.grid import Grid
from crackseg.apps.compare.store import read_cell_record
from crackseg.base.io import write_json, write_text


def gather(grid: Grid, runs_dir: str | os.PathLike[str], published: bool | None = None) -> dict[str, Any]:
    """Collect finished cells into the tables (percentages); computes nothing."""
    runs = Path(runs_dir)
    show_pub = grid.published if published is None else published
    records = {c.index: read_cell_record(runs, c) for c in grid.cells}
    out_tables = []
    for table in grid.tables:
        rows = []
        footnotes = list(table.footnotes)
        placeholders: list[str] = []
        for row in table.rows:
            entry: dict[str, Any] = {"id": row.id, "label": row.label, "note": row.note, "metrics": {}}
            if row.cell is None:
                entry.update(status="not implemented", cell=None, missing=row.missing)
                footnotes.append(f"{row.label}: {row.missing}")
            else:
                cell = grid.cells[row.cell]
                rec = records[row.cell] or {}
                texts = [str(t) for t in rec.get("placeholders") or []]
                entry.update(cell=cell.name, cell_index=cell.index, dir=str(Path("cells") / cell.dirname),
                             labeler=cell.labeler, backbone=cell.backbone, placeholder="; ".join(texts))
                placeholders.extend(t for t in texts if t not in placeholders)
                have = rec.get("tests") or {}
                for t in grid.tests:
                    got = have.get(t.id)
                    if got and got.get("spec") == t.spec_key:
                        m = got["metrics"]
                        entry["metrics"][t.id] = {k: _pct(m.get(k)) for k in ("ods", "ois", "ap")}
                        entry["metrics"][t.id]["n"] = m.get("n")
                        entry["metrics"][t.id]["dir"] = str(Path("cells") / cell.dirname / got.get("dir", ""))
                complete = len(entry["metrics"]) == len(grid.tests)
                entry["status"] = "done" if complete else ("partial" if entry["metrics"] else "not run")
            if show_pub and row.id in table.published:
                entry["published"] = {t: dict(zip(("ods", "ois", "ap"), v)) for t, v in table.published[row.id].items()}
            rows.append(entry)
        if placeholders:
            footnotes.append(f"† {'; '.join(placeholders)}: these rows test the pipeline; they are not results")
        caption = " ".join(x for x in (table.caption, grid.caption) if x)
        out_tables.append({"id": table.id, "title": table.title, "caption": caption, "footnotes": footnotes,
                           "chart": table.chart, "rows": rows, "published_shown": show_pub})
    return {"grid": grid.name, "preset": grid.preset, "unit": "%",
            "tests": [{"id": t.id, "label": t.label} for t in grid.tests], "tables": out_tables}


def _pct(x: Any) -> float | None:
    return None if x is None else round(100.0 * float(x), 4)


def write_outputs(grid: Grid, results: dict[str, Any], runs_dir: str | os.PathLike[str], *,
                  figures: bool = True) -> str:
    """Write every table (md/csv/tex/json) and figure; return the Markdown of all tables."""
    runs = Path(runs_dir)
    parts = []
    for table in results["tables"]:
        tdir = runs / table["id"]
        md = render.markdown_table(table, results["tests"])
        write_text(tdir / "table.md", md + "\n")
        write_text(tdir / "table.csv", render.csv_table(table, results["tests"]))
        write_text(tdir / "table.tex", render.latex_table(table, results["tests"]))
        head = {k: results[k] for k in ("grid", "preset", "unit", "tests")}
        write_json(tdir / "table.json", {**head, "table": table})
        if figures:
            render.pr_curves(table, results["tests"], runs, tdir)
            render.qualitative_grid(table, grid, runs, tdir / "qualitative.png")
            if table.get("chart") == "bars":
                render.bar_chart(table, results["tests"], tdir / "bars.png")
        parts.append(md)
    all_md = "\n\n".join(parts)
    write_text(runs / "results.md", all_md + "\n")
    write_json(runs / "results.json", results)
    return all_md
