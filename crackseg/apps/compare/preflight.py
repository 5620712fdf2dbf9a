"""Checks before a grid computes anything: the preset's files, every path a cell names, the GPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crackseg.apps.compare.grid import Cell, Grid
from crackseg.base.errors import CracksegError
from crackseg.plugins.factory import get_entry, path_params


def check_requirements(grid: Grid, device: str | None, cells: Sequence[Cell] | None = None) -> None:
    """Fail in one line when the preset's files, a dataset folder, a weights file or the GPU is missing."""
    for item in grid.requires.paths:
        p = Path(item.path).expanduser()
        if not p.exists():
            what = item.what or "required file"
            raise CracksegError(
                f"preset {grid.preset}: {what} not found at {item.path} (cwd {Path.cwd()}); {item.hint}".rstrip("; ")
            )
    named: list[tuple[str, str]] = []
    for c in cells if cells is not None else grid.cells:
        for section, kind in (("data", "datasets"), ("labeler", "labelers"), ("backbone", "backbones")):
            named += [(path, f"cell {c.index} ({c.name}) {section}.{key}")
                      for key, path in _paths(kind, c.config[section])]
    for t in grid.tests:
        if t.data:
            named += [(path, f"test set {t.id!r} data.{key}") for key, path in _paths("datasets", t.data)]
    for path, what in named:
        if not Path(path).expanduser().exists():
            raise CracksegError(
                f"preset {grid.preset}: {what}: {path} not found (relative paths are read from the current "
                f"directory, {Path.cwd()}); run compare from the repository root or fix the path in the grid config"
            )
    if grid.requires.gpu and device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise CracksegError(
                f"preset {grid.preset} needs a CUDA GPU and none is visible; use --preset cpu-small on a CPU "
                f"(or --device cpu to force it, which takes days)"
            )


def _paths(kind: str, section: dict[str, Any]) -> list[tuple[str, str]]:
    """(parameter, path) for every path parameter the section's plugin declares and the section sets."""
    keys = path_params(get_entry(kind, str(section["name"])))
    return [(k, str(section[k])) for k in keys if section.get(k)]
