"""The layout of a compare RUNS_DIR: the saved grid, one folder per cell, and each cell's record.

::

    compare.yaml              the expanded grid and the preset (``--from`` reads it)
    cells/<name>-<key8>/      one run folder per cell (key8: hash of its configuration)
    _shared/                  labelers' artefacts and pseudo-labels, shared between cells (file locks)
    logs/cell-K.log           output of cells run with --workers
    <table>/table.{md,csv,tex,json}, pr-<test>.png, qualitative.png, bars.png
    results.md, results.json  every table

A finished cell holds ``compare-cell.json`` (its metrics per test set) and is never
recomputed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crackseg.apps.compare.grid import Cell, Grid, TestSet, expand
from crackseg.base.errors import CracksegError
from crackseg.base.io import write_text
from crackseg.config.layers import dump_yaml, load_yaml

CELL_FILE = "compare-cell.json"
GRID_FILE = "compare.yaml"
SHARED_DIR = "_shared"


def cell_dir(runs_dir: Path, cell: Cell) -> Path:
    """The run folder of ``cell``."""
    return Path(runs_dir) / "cells" / cell.dirname


def read_cell_record(runs_dir: Path, cell: Cell) -> dict[str, Any] | None:
    """The cell's ``compare-cell.json`` if it belongs to this very configuration, else None."""
    p = cell_dir(runs_dir, cell) / CELL_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if rec.get("key") == cell.key else None


def cell_is_done(runs_dir: Path, cell: Cell, tests: Sequence[TestSet]) -> bool:
    """Whether the cell has metrics for every test set of the grid."""
    rec = read_cell_record(runs_dir, cell)
    if rec is None:
        return False
    have = rec.get("tests") or {}
    return all(t.id in have and have[t.id].get("spec") == t.spec_key for t in tests)


def missing_cells(grid: Grid, runs_dir: Path) -> list[Cell]:
    """Cells of ``grid`` that have not finished in ``runs_dir``."""
    return [c for c in grid.cells if not cell_is_done(runs_dir, c, grid.tests)]


def save_grid(grid: Grid, runs_dir: Path, overrides: dict[str, Any]) -> None:
    """Write ``RUNS_DIR/compare.yaml`` (what ``--from RUNS_DIR`` rebuilds the tables from)."""
    write_text(runs_dir / GRID_FILE, dump_yaml({"preset": grid.preset, "overrides": overrides, "grid": grid.raw}))


def load_saved_grid(runs_dir: str | os.PathLike[str], preset: str | None = None) -> Grid:
    """The grid a previous ``compare`` saved to ``RUNS_DIR/compare.yaml``."""
    p = Path(runs_dir) / GRID_FILE
    if not p.is_file():
        raise CracksegError(f"{runs_dir}: no {GRID_FILE} here; pass the grid CONFIG too, or the --out of a compare run")
    saved = load_yaml(p, what="saved grid")
    return expand(saved.get("grid") or {}, preset or saved.get("preset"), saved.get("overrides") or {}, source=str(p))


def saved_preset(runs_dir: str | os.PathLike[str]) -> str | None:
    """The preset recorded in ``RUNS_DIR/compare.yaml``, if it can be read."""
    p = Path(runs_dir) / GRID_FILE
    try:
        preset = load_yaml(p, what="saved grid").get("preset")
    except CracksegError:
        return None
    return preset if isinstance(preset, str) else None
