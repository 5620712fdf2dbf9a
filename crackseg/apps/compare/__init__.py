"""``crackseg compare``: experiment grids → cells → runs → benchmark tables.

* :mod:`.grid`: the grid-config schema, loading and expansion into tables, rows, cells;
* :mod:`.preflight`: checks before anything is computed (files, dataset folders, GPU);
* :mod:`.store`: the RUNS_DIR layout (saved grid, cell folders, cell records);
* :mod:`.cells`: computing cells (in this process, in order, or in worker processes);
* :mod:`.results`: gathering finished cells into tables and writing them;
* :mod:`.render`: Markdown / CSV / LaTeX tables and figures;
* :mod:`.command`: the click command.
"""

from __future__ import annotations

from crackseg.apps.compare.cells import run_cell, run_serial, run_workers
from crackseg.apps.compare.grid import Cell, Grid, Row, Table, TestSet, expand, load_grid, load_grid_file
from crackseg.apps.compare.preflight import check_requirements
from crackseg.apps.compare.results import gather, write_outputs
from crackseg.apps.compare.store import cell_dir, load_saved_grid, missing_cells, save_grid

__all__ = [
    "Cell", "Grid", "Row", "Table", "TestSet", "cell_dir", "check_requirements", "expand", "gather", "load_grid",
    "load_grid_file", "load_saved_grid", "missing_cells", "run_cell", "run_serial", "run_workers", "save_grid",
    "write_outputs",
]
