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


#: a note longer than this leaves the notes cell for a footnote under the table (the cell keeps its marker)
NOTE_CELL_CHARS = 48
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def footnote_marker(n: int) -> str:
    """The marker of footnote ``n`` (1 → ``¹``, 12 → ``¹²``)."""
    return str(n).translate(_SUPERSCRIPTS)


def results_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per run (its ``metrics.json``): labeler, backbone, data, ODS / OIS / AP in %, notes.

    ``notes`` is a list of notes or one string of them separated by ``"; "``. A note longer than
    :data:`NOTE_CELL_CHARS` (a warning that quotes an error and a path) is a marker in the cell and the
    whole text in a footnote under the table, so that the table stays readable.
    """
    header = ["labeler", "backbone", "data", "ODS", "OIS", "AP", "notes"]
    footnotes: list[str] = []
    rows = []
    for r in runs:
        cell = []
        for note in _note_list(r.get("notes")):
            if len(note) > NOTE_CELL_CHARS:
                footnotes.append(f"{footnote_marker(len(footnotes) + 1)} {note}")
                note = footnote_marker(len(footnotes))
            cell.append(note)
        rows.append([str(r.get("labeler", "")), str(r.get("backbone", "")), str(r.get("data", "")),
                     percent(r.get("ods")), percent(r.get("ois")), percent(r.get("ap")), "; ".join(cell)])
    table = markdown_table(header, rows, [False, False, False, True, True, True, False])
    if not footnotes:
        return table
    return table + "\n\n" + "\n".join(f"- {escape(f)}" for f in footnotes)


def _note_list(notes: Any) -> list[str]:
    """Notes as a list: a list as it is, a string split at ``"; "``; empty ones left out."""
    items = notes if isinstance(notes, (list, tuple)) else str(notes or "").split("; ")
    return [" ".join(str(n).split()) for n in items if str(n).strip()]


#: |ODS − OIS| above this (in points, i.e. percentage points) earns results.md an explanatory line
ODS_OIS_GAP = 15.0


def ods_ois_remark(metrics: dict[str, Any], gap: float = ODS_OIS_GAP) -> str:
    """One line for ``results.md`` when ODS and OIS differ by more than ``gap`` points; "" otherwise."""
    ods, ois = metrics.get("ods"), metrics.get("ois")
    if not isinstance(ods, (int, float)) or not isinstance(ois, (int, float)) or math.isnan(ods) or math.isnan(ois):
        return ""
    diff = 100 * (float(ods) - float(ois))
    if abs(diff) <= gap:
        return ""
    where = "see docs/guides/metrics.md (Metric protocols), 'When OIS is far from ODS'"
    if diff > 0 and metrics.get("protocol", "crackclip") == "crackclip":
        return (f"OIS is {diff:.1f} points below ODS: the crackclip protocol (the authors' script) binarises "
                f"each crack-free test image at 0.00, and an image with false but no true positives at some "
                f"threshold at the first such threshold (numpy's argmax picks the first NaN F), so OIS pools "
                f"their false positives — the authors' quirk, kept on purpose; {where}.")
    if diff > 0:
        return f"OIS is {diff:.1f} points below ODS; {where}."
    return (f"OIS is {-diff:.1f} points above ODS: the best threshold differs much between test images "
            f"(ODS uses one threshold for all of them); {where}.")
