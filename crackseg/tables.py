"""Markdown tables: the one renderer behind a run's ``results.md`` and every ``compare`` table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DASH = "–"


def percent(x: float | None) -> str:
    """A fraction in [0, 1] as a percentage with 2 decimals; ``–`` when undefined."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{100 * float(x):.2f}"


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] | None = None) -> str:
    """A pipe table; ``numeric[i]`` right-aligns column ``i`` (default: every column but the first)."""
    numeric = list(numeric) if numeric is not None else [i > 0 for i in range(len(header))]
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    return "\n".join(lines)


def results_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per run (its ``metrics.json``): labeler, backbone, data, ODS / OIS / AP in %, notes."""
    header = ["labeler", "backbone", "data", "ODS", "OIS", "AP", "notes"]
    rows = [[str(r.get("labeler", "")), str(r.get("backbone", "")), str(r.get("data", "")),
             percent(r.get("ods")), percent(r.get("ois")), percent(r.get("ap")), str(r.get("notes", ""))]
            for r in runs]
    return markdown_table(header, rows, [False, False, False, True, True, True, False])
