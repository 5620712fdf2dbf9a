"""Computing cells: one in this process (locked, resumable), several in order, or in worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from crackseg.apps.compare.grid import Cell, Grid
from crackseg.apps.compare.store import CELL_FILE, SHARED_DIR, cell_dir, cell_is_done, read_cell_record
from crackseg.base.errors import CracksegError
from crackseg.base.io import write_json
from crackseg.base.locks import file_lock, lock_path
from crackseg.config.run_config import resolve_config
from crackseg.config.run_folder import CONFIG_FILE, METRICS_FILE

Log = Callable[[str], None]


def run_cell(grid: Grid, cell: Cell, runs_dir: str | os.PathLike[str], *, device: str | None = None,
             quiet: bool = False, log: Log | None = None) -> tuple[dict[str, Any], bool]:
    """Train/evaluate one cell unless it is finished; returns (its record, whether anything was computed).

    Holds ``cells/.<dir>.lock`` while working, so two processes never compute the
    same cell; labels and artefacts are shared through ``RUNS_DIR/_shared``.
    """
    from crackseg.apps.runner import run as run_one
    from crackseg.evaluation.scoring import evaluate_run

    log = log or (lambda _m: None)
    runs = Path(runs_dir)
    cdir = cell_dir(runs, cell)
    with file_lock(lock_path(cdir)):  # the lock the run in cdir takes again (re-entrant in this process)
        if cell_is_done(runs, cell, grid.tests):
            return read_cell_record(runs, cell) or {}, False
        log(f"cell {cell.index} {cell.name}: computing in {cdir}")
        extra: dict[str, Any] = {"out": str(cdir), "shared_dir": str(runs / SHARED_DIR)}
        if device:
            extra["device"] = device
        cfg = resolve_config([*cell.layers, extra], prompts=cell.prompts)
        metrics_path = cdir / METRICS_FILE
        if not metrics_path.is_file():
            with _stdout_to_stderr(quiet):
                run_one(cfg, resume=(cdir / CONFIG_FILE).is_file(), quiet=quiet)
        own = json.loads(metrics_path.read_text(encoding="utf-8"))
        rec = read_cell_record(runs, cell) or {"key": cell.key, "name": cell.name, "tests": {}}
        rec.update({"key": cell.key, "name": cell.name, "labeler": cell.labeler, "backbone": cell.backbone,
                    "placeholders": list(own.get("placeholders") or []), "train_seconds": own.get("train_seconds"),
                    "total_seconds": own.get("total_seconds"), "notes": own.get("notes", "")})
        for t in grid.tests:
            old = rec["tests"].get(t.id)
            if old and old.get("spec") == t.spec_key:
                continue
            if t.data is None:
                m, sub = own, ""
            else:
                with _stdout_to_stderr(quiet):
                    m = evaluate_run(cdir, t.data, t.eval_name, device=cfg.device, quiet=quiet)
                sub = f"eval/{t.eval_name}"
            rec["tests"][t.id] = {
                "spec": t.spec_key, "dir": sub,
                "metrics": {k: m.get(k) for k in ("ods", "ois", "ap", "n", "protocol", "ods_threshold")},
            }
            write_json(cdir / CELL_FILE, rec)  # after every test: an interruption loses one evaluation at most
        write_json(cdir / CELL_FILE, rec)
        return rec, True


@contextlib.contextmanager
def _stdout_to_stderr(quiet: bool) -> Iterator[None]:
    """A run prints its one-row table; compare's stdout is for compare's own tables."""
    target = open(os.devnull, "w") if quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(target):
            yield
    finally:
        if quiet:
            target.close()


def run_serial(grid: Grid, runs_dir: Path, indices: Sequence[int], *, device: str | None, quiet: bool,
               log: Log) -> list[int]:
    """Run cells one after the other in this process; returns the indices actually computed."""
    computed = []
    for k in indices:
        cell = grid.cell(k)
        t0 = time.perf_counter()
        _, did = run_cell(grid, cell, runs_dir, device=device, quiet=quiet, log=log)
        if did:
            computed.append(k)
            log(f"cell {k} {cell.name}: done in {time.perf_counter() - t0:.1f}s")
        else:
            log(f"cell {k} {cell.name}: finished earlier, skipped")
    return computed


def run_workers(grid: Grid, config_path: str, runs_dir: Path, indices: Sequence[int], workers: int, *,
                device: str | None, extra_args: Sequence[str], log: Log) -> list[int]:
    """Run cells in ``workers`` local processes (``python -m crackseg compare CONFIG --cell K``).

    Each child writes its output to ``RUNS_DIR/logs/cell-K.log`` and gets
    ``OMP_NUM_THREADS = cores // workers`` unless the variable is already set.
    """
    todo = [k for k in indices if not cell_is_done(runs_dir, grid.cell(k), grid.tests)]
    for k in indices:
        if k not in todo:
            log(f"cell {k} {grid.cells[k].name}: finished earlier, skipped")
    logs = runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, workers))))
    running: dict[int, tuple[subprocess.Popen[bytes], Any, float]] = {}
    failed: list[int] = []
    done: list[int] = []
    pending = list(todo)
    try:
        while pending or running:
            while pending and len(running) < workers:
                k = pending.pop(0)
                cmd = [sys.executable, "-m", "crackseg", "compare", config_path, "--preset", grid.preset,
                       "--out", str(runs_dir), "--cell", str(k), "--quiet", *extra_args]
                if device:
                    cmd += ["--device", device]
                fh = open(logs / f"cell-{k}.log", "wb")
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                running[k] = (proc, fh, time.perf_counter())
                log(f"cell {k} {grid.cells[k].name}: started (log {logs / f'cell-{k}.log'})")
            time.sleep(0.2)
            for k, (proc, fh, t0) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                fh.close()
                del running[k]
                if rc == 0:
                    done.append(k)
                    log(f"cell {k} {grid.cells[k].name}: done in {time.perf_counter() - t0:.1f}s")
                else:
                    failed.append(k)
                    log(f"cell {k} {grid.cells[k].name}: FAILED (exit {rc}); see {logs / f'cell-{k}.log'}")
    finally:
        for proc, _, _ in running.values():  # interrupted: stop the children this call started
            proc.terminate()
        for proc, fh, _ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
    if failed:
        first = logs / f"cell-{failed[0]}.log"
        raise CracksegError(
            f"{len(failed)} cell(s) failed ({', '.join(map(str, sorted(failed)))}); "
            f"last lines in {first}: {_tail(first)}"
        )
    return done


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"
