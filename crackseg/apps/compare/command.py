"""The ``crackseg compare`` command: options → load the grid → check → compute cells → gather tables."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from crackseg.apps.compare.cells import run_serial, run_workers
from crackseg.apps.compare.grid import Grid, load_grid
from crackseg.apps.compare.preflight import check_requirements
from crackseg.apps.compare.results import gather, write_outputs
from crackseg.apps.compare.store import cell_dir, load_saved_grid, missing_cells, save_grid, saved_preset
from crackseg.base.console import warn
from crackseg.base.errors import CracksegError
from crackseg.config.layers import parse_set


@dataclass
class CompareOptions:
    """Everything ``crackseg compare`` was asked to do."""

    config: str | None
    preset: str | None
    runs_dir: str | None
    workers: int
    list_cells: bool
    cells: tuple[int, ...]
    from_dir: str | None
    published: bool | None
    device: str | None
    sets: tuple[str, ...]
    figures: bool
    quiet: bool


@click.command("compare")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--preset",
              help="Preset of the grid config (e.g. paper, cpu-small; default: the config's default_preset).")
@click.option("--out", "runs_dir", type=click.Path(file_okay=False),
              help="RUNS_DIR for cells, shared labels and tables (default runs/compare-<grid>-<preset>).")
@click.option("--workers", type=int, default=1, show_default=True, help="Run independent cells in N local processes.")
@click.option("--list-cells", is_flag=True, help="Print 'K<TAB>cell-name' for every cell and exit.")
@click.option("--cell", "cells", type=int, multiple=True, metavar="K",
              help="Run only cell K (repeatable); for job arrays. Gather afterwards with --from RUNS_DIR.")
@click.option("--from", "from_dir", type=click.Path(file_okay=False),
              help="Rebuild the tables from finished cells in RUNS_DIR without computing anything.")
@click.option("--published/--no-published", default=None,
              help="Show the paper's published numbers and the difference (default: the preset's choice).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where every cell computes.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key in every cell, e.g. train.epochs=1 (changes the cells' keys).")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Draw PR curves and qualitative grids.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output (the tables are still printed).")
def compare(**kw: Any) -> None:
    """Run an experiment grid (labelers x backbones x prompts x losses) and write benchmark tables.

    \b
    Examples:
      crackseg compare configs/paper/all.yaml --preset cpu-small
      crackseg compare configs/paper/table1.yaml --preset paper --out runs/table1
      crackseg compare configs/paper/all.yaml --preset cpu-small --list-cells
      crackseg compare configs/paper/all.yaml --preset cpu-small --out R --cell 3   # one cell (job arrays)
      crackseg compare --from R                                                     # tables only

    Finished cells are never recomputed; an interrupted compare continues where it stopped
    when started again with the same arguments.
    """
    try:
        run_compare(CompareOptions(**kw))
    except KeyboardInterrupt:
        click.echo("crackseg: compare interrupted; run the same command again to continue "
                   "(finished cells are kept, unfinished ones resume)", err=True)
        sys.exit(130)


def run_compare(o: CompareOptions) -> None:
    """What ``crackseg compare`` does with its options."""

    def log(msg: str) -> None:
        if not o.quiet:
            click.echo(f"compare: {msg}", err=True)

    if o.workers < 1:
        raise CracksegError("--workers must be at least 1")
    overrides = parse_set(list(o.sets))
    if o.from_dir is not None:
        if o.cells or o.list_cells:
            raise CracksegError("--from only gathers tables; it cannot be combined with --cell or --list-cells")
        runs = Path(o.from_dir)
        if not runs.is_dir():
            raise CracksegError(f"--from {o.from_dir}: folder not found")
        if o.config:
            grid = load_grid(o.config, o.preset or saved_preset(runs), overrides)
        else:
            grid = load_saved_grid(runs, o.preset)
        _gather_and_print(grid, runs, o.published, o.figures, log, warn_missing=True)
        return
    if not o.config:
        raise CracksegError("give a grid CONFIG (e.g. configs/paper/all.yaml), or --from RUNS_DIR to gather tables")
    grid = load_grid(o.config, o.preset, overrides)
    if o.list_cells:  # K<TAB>name on stdout for scripts; which preset resolved them on stderr
        how = "--preset" if o.preset else "the grid's default_preset; --preset to choose another"
        click.echo(f"{grid.name}: {len(grid.cells)} cells with preset {grid.preset} ({how})", err=True)
        for cell in grid.cells:
            click.echo(f"{cell.index}\t{cell.name}")
        return
    runs = Path(o.runs_dir) if o.runs_dir else Path("runs") / f"compare-{grid.name}-{grid.preset}"
    chosen = list(dict.fromkeys(o.cells)) if o.cells else list(range(len(grid.cells)))
    for k in chosen:
        grid.cell(k)  # range check with a clear message
    check_requirements(grid, o.device, [grid.cells[k] for k in chosen])
    save_grid(grid, runs, overrides)
    log(f"{grid.name} [{grid.preset}]: {len(grid.cells)} cells, {len(grid.tables)} tables → {runs}")
    if o.workers > 1 and len(chosen) > 1:
        extra = [a for s in o.sets for a in ("--set", s)]
        run_workers(grid, o.config, runs, chosen, o.workers, device=o.device, extra_args=extra, log=log)
    else:
        run_serial(grid, runs, chosen, device=o.device, quiet=o.quiet, log=log)
    if o.cells:
        for k in chosen:
            click.echo(f"cell {k}\t{grid.cells[k].name}\tdone\t{cell_dir(runs, grid.cells[k])}")
        log(f"gather the tables when every cell is done: crackseg compare --from {runs}")
        return
    _gather_and_print(grid, runs, o.published, o.figures, log, warn_missing=False)


def _gather_and_print(grid: Grid, runs: Path, published: bool | None, figures: bool, log: Callable[[str], None],
                      warn_missing: bool) -> None:
    missing = missing_cells(grid, runs)
    if missing and warn_missing:
        names = ", ".join(f"{c.index} ({c.name})" for c in missing[:6]) + (" ..." if len(missing) > 6 else "")
        warn(f"{len(missing)} of {len(grid.cells)} cells not finished: {names}; their numbers show as –")
    md = write_outputs(grid, gather(grid, runs, published), runs, figures=figures)
    click.echo(md)
    log(f"tables in {runs}/<table>/table.{{md,csv,tex,json}}; all tables in {runs / 'results.md'}")
