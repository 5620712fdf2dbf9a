"""Checks before a grid computes anything: the preset's files, every dataset folder, the GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import CracksegError
from .grid import Cell, Grid


def check_requirements(grid: Grid, device: str | None, cells: Sequence[Cell] | None = None) -> None:
    """Fail in one line when the preset's data, weights or GPU are missing."""
    for item in grid.requires.paths:
        p = Path(item.path).expanduser()
        if not p.exists():
            what = item.what or "required file"
            raise CracksegError(
                f"preset {grid.preset}: {what} not found at {item.path} (cwd {Path.cwd()}); {item.hint}".rstrip("; ")
            )
    roots: list[tuple[str, str]] = []
    for c in cells if cells is not None else grid.cells:
        if c.config["data"].get("root"):
            roots.append((str(c.config["data"]["root"]), f"cell {c.index} ({c.name}) training data"))
    for t in grid.tests:
        if t.data and t.data.get("root"):
            roots.append((str(t.data["root"]), f"test set {t.id!r}"))
    for root, what in roots:
        if not Path(root).expanduser().exists():
            raise CracksegError(
                f"preset {grid.preset}: {what}: dataset folder {root} not found (relative paths are read from the "
                f"current directory, {Path.cwd()}); run compare from the repository root or fix the path in the grid config"
            )
    if grid.requires.gpu and device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise CracksegError(
                f"preset {grid.preset} needs a CUDA GPU and none is visible; use --preset cpu-small on a CPU "
                f"(or --device cpu to force it, which takes days)"
            )
