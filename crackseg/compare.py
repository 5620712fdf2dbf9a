"""``crackseg compare``: experiment grids → cells → runs → benchmark tables.

A *grid config* (YAML, see ``configs/paper/``) names the rows of one or more
tables: explicit ``(labeler, backbone)`` rows and/or the cross product of
labelers × backbones × prompt sets × losses. Every row resolves to a run
configuration; rows that resolve to the same configuration share one *cell*
(one training run), so Table 1's CrackCLIP row and Table 2's CAM-Location row
are computed once. Cells are numbered in expansion order (tables in file order,
explicit rows, then the cross product), which makes ``--cell K`` stable for
cluster job arrays.

Layers of a cell's configuration, later wins::

    base_configs[labeler], base_configs[backbone]   # e.g. configs/backbones/crackclip.yaml
    shared                                          # the grid's settings for every cell
    the row (labeler, backbone, prompts, loss, set)
    presets[P].shared, presets[P].labelers[name], presets[P].backbones[name]
    --set overrides, then out / shared_dir / device (set by compare)

Layout of ``RUNS_DIR``::

    compare.yaml              the expanded grid and the preset (``--from`` reads it)
    cells/<name>-<key8>/      one run folder per cell (key8: hash of its configuration)
    _shared/                  patch classifiers and pseudo-labels, shared between cells (file locks)
    logs/cell-K.log           output of cells run with --workers
    <table>/table.{md,csv,tex,json}, pr-<test>.png, qualitative.png, bars.png
    results.md, results.json  every table

A finished cell holds ``compare-cell.json`` (its metrics per test set); it is
never recomputed. An unfinished one is continued with ``resume=True``.
Relative paths inside run layers (dataset roots, model files) are resolved
against the current working directory, as for ``crackseg run``; ``include:``
and ``base_configs:`` paths are relative to the grid file that names them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from .errors import ConfigError, CracksegError

CELL_FILE = "compare-cell.json"
GRID_FILE = "compare.yaml"
SHARED_DIR = "_shared"

_TOP_KEYS = ("name", "title", "description", "include", "shared", "base_configs", "tests", "presets",
             "default_preset", "tables", "qualitative")
_PRESET_KEYS = ("description", "caption", "shared", "tests", "labelers", "backbones", "requires", "published",
                "qualitative")
_TABLE_KEYS = ("id", "title", "caption", "rows", "grid", "published", "footnotes", "chart")
_ROW_KEYS = ("id", "label", "labeler", "backbone", "prompts", "loss", "set", "missing", "note")
_AXIS_KEYS = ("labelers", "backbones", "prompts", "losses")
_ITEM_KEYS = ("name", "label", "set")
_TEST_KEYS = ("id", "label", "run_test", "data")
_REQ_KEYS = ("gpu", "paths")


# -- data model ----------------------------------------------------------------------------------
@dataclass
class TestSet:
    """One column group of the tables: a test dataset."""

    id: str
    label: str
    #: ``None``: the run's own test split (``data.test_split`` of the training data)
    data: dict[str, Any] | None = None

    @property
    def spec_key(self) -> str:
        from .runner import stage_key

        return "run" if self.data is None else stage_key(self.data)

    @property
    def eval_name(self) -> str:
        """Folder name under ``<cell>/eval/`` (the id plus a hash of the data section)."""
        return f"{self.id}-{self.spec_key[:8]}"


@dataclass
class Cell:
    """One training run of the grid (shared by every row that resolves to it)."""

    index: int
    name: str
    key: str
    layers: list[dict[str, Any]]
    #: the resolved configuration (``out``/``device``/``shared_dir`` left empty)
    config: dict[str, Any]

    @property
    def dirname(self) -> str:
        return f"{_safe(self.name)}-{self.key[:8]}"

    @property
    def labeler(self) -> str:
        return str(self.config["labeler"]["name"])

    @property
    def backbone(self) -> str:
        return str(self.config["backbone"]["name"])

    @property
    def random_init(self) -> bool:
        return bool(self.config["backbone"].get("random_init"))


@dataclass
class Row:
    """One line of a table: a cell, or a method that crackseg does not implement."""

    id: str
    label: str
    cell: int | None
    missing: str = ""
    note: str = ""


@dataclass
class Table:
    id: str
    title: str
    caption: str
    rows: list[Row]
    #: row id → test id → [ODS, OIS, AP] in %
    published: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)
    #: "bars": also draw a grouped bar chart (the paper's Figure 5)
    chart: str = ""


@dataclass
class Grid:
    """A grid config expanded for one preset."""

    name: str
    preset: str
    caption: str
    tests: list[TestSet]
    tables: list[Table]
    cells: list[Cell]
    requires: dict[str, Any]
    published: bool
    qualitative_images: int
    #: the grid config with includes and base configs inlined (saved to RUNS_DIR/compare.yaml)
    raw: dict[str, Any]
    source: str = ""

    def cell(self, k: int) -> Cell:
        if not 0 <= k < len(self.cells):
            raise CracksegError(f"--cell {k}: this grid has cells 0..{len(self.cells) - 1} (see --list-cells)")
        return self.cells[k]


# -- loading -------------------------------------------------------------------------------------
def load_grid_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a grid config with its ``include:`` files merged in and ``base_configs`` inlined."""
    return _load(Path(path), [])


def _load(path: Path, stack: list[Path]) -> dict[str, Any]:
    from .config import deep_merge, load_yaml

    path = path.expanduser()
    real = path.resolve()
    if real in stack:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(p.name for p in [*stack, real])})")
    raw = load_yaml(path)
    _check_keys(raw, _TOP_KEYS, str(path))
    merged: dict[str, Any] = {}
    tables: list[Any] = []
    includes = raw.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise ConfigError(f"{path}: 'include' must be a file name or a list of them")
    for inc in includes:
        sub = _load(path.parent / str(inc), [*stack, real])
        tables.extend(sub.pop("tables", []) or [])
        merged = deep_merge(merged, sub)
    own_tables = raw.pop("tables", None) or []
    if not isinstance(own_tables, list):
        raise ConfigError(f"{path}: 'tables' must be a list of tables")
    base = raw.pop("base_configs", None)
    if base is not None:
        raw["base_configs"] = _inline_base_configs(base, path)
    merged = deep_merge(merged, raw)
    merged["tables"] = [*tables, *own_tables]
    merged["name"] = str(raw.get("name") or path.stem)  # the including file names the grid
    return merged


def _inline_base_configs(base: Any, path: Path) -> dict[str, dict[str, Any]]:
    from .config import load_yaml

    if not isinstance(base, dict):
        raise ConfigError(f"{path}: 'base_configs' must map labelers/backbones to config files")
    _check_keys(base, ("labelers", "backbones"), f"{path}: base_configs")
    out: dict[str, dict[str, Any]] = {}
    for kind, entries in base.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: base_configs.{kind} must map plugin names to files or config layers")
        out[kind] = {}
        for name, value in entries.items():
            if isinstance(value, str):
                out[kind][name] = load_yaml(path.parent / value)
            elif isinstance(value, dict):
                out[kind][name] = value
            else:
                raise ConfigError(f"{path}: base_configs.{kind}.{name} must be a file name or a mapping")
    return out


def expand(raw: dict[str, Any], preset: str | None = None, overrides: dict[str, Any] | None = None,
           source: str = "") -> Grid:
    """Expand a loaded grid config for ``preset`` into tables, rows and numbered cells."""
    from .config import resolve_config
    from .runner import stage_key
    from .schema import to_dict

    name = str(raw.get("name") or "grid")
    presets = raw.get("presets") or {}
    if not isinstance(presets, dict):
        raise ConfigError(f"{name}: 'presets' must map preset names to settings")
    preset = preset or raw.get("default_preset") or (next(iter(presets)) if presets else "")
    if presets and preset not in presets:
        raise ConfigError(f"{name}: unknown preset {preset!r} (choose from {', '.join(presets)})")
    pre = presets.get(preset) or {}
    _check_keys(pre, _PRESET_KEYS, f"{name}: presets.{preset}")
    tests = _tests(pre.get("tests", raw.get("tests")), name)
    base = raw.get("base_configs") or {}
    shared = _mapping(raw.get("shared"), f"{name}: shared")
    pshared = _mapping(pre.get("shared"), f"{name}: presets.{preset}.shared")
    plab = _mapping(pre.get("labelers"), f"{name}: presets.{preset}.labelers")
    pbb = _mapping(pre.get("backbones"), f"{name}: presets.{preset}.backbones")
    over = overrides or {}

    cells: list[Cell] = []
    by_key: dict[str, int] = {}
    used_names: set[str] = set()
    tables: list[Table] = []
    raw_tables = raw.get("tables") or []
    if not raw_tables:
        raise ConfigError(f"{name}: the grid has no tables (add a 'tables:' list with rows)")
    seen_tables: set[str] = set()
    for ti, traw in enumerate(raw_tables):
        where = f"{name}: tables[{ti}]"
        traw = _mapping(traw, where)
        _check_keys(traw, _TABLE_KEYS, where)
        tid = str(traw.get("id") or f"table{ti + 1}")
        if tid in seen_tables:
            raise ConfigError(f"{where}: duplicate table id {tid!r}")
        seen_tables.add(tid)
        rows: list[Row] = []
        for spec in _row_specs(traw, f"{name}: {tid}"):
            if spec.get("missing"):
                rows.append(Row(spec["id"], spec["label"], None, str(spec["missing"]), str(spec.get("note") or "")))
                continue
            lab, bb = spec["labeler"]["name"], spec["backbone"]["name"]
            row_layer: dict[str, Any] = {"labeler": spec["labeler"], "backbone": dict(spec["backbone"])}
            if spec.get("prompts"):
                row_layer["backbone"]["prompts"] = spec["prompts"]
            if spec.get("loss"):
                row_layer["loss"] = spec["loss"]
            layers = [
                copy.deepcopy((base.get("labelers") or {}).get(lab) or {}),
                copy.deepcopy((base.get("backbones") or {}).get(bb) or {}),
                copy.deepcopy(shared),
                row_layer,
                copy.deepcopy(spec.get("set") or {}),
                copy.deepcopy(pshared),
                copy.deepcopy(plab.get(lab) or {}),
                copy.deepcopy(pbb.get(bb) or {}),
                copy.deepcopy(over),
            ]
            try:
                cfg = resolve_config(layers)
            except CracksegError as exc:
                raise type(exc)(f"{name}: {tid} row {spec['id']!r}: {exc}") from None
            cdict = to_dict(cfg)
            for k in ("out", "device", "shared_dir"):
                cdict.pop(k, None)
            key = stage_key(cdict)
            if key not in by_key:
                cname = _cell_name(spec, used_names, key)
                used_names.add(cname)
                by_key[key] = len(cells)
                cells.append(Cell(len(cells), cname, key, layers, cdict))
            rows.append(Row(spec["id"], spec["label"], by_key[key], note=str(spec.get("note") or "")))
        ids = [r.id for r in rows]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"{name}: {tid}: duplicate row id {dup[0]!r}; give the rows distinct 'id's")
        published = _published(traw.get("published"), f"{name}: {tid}")
        footnotes = traw.get("footnotes") or []
        if not isinstance(footnotes, list):
            raise ConfigError(f"{name}: {tid}: 'footnotes' must be a list of strings")
        tables.append(Table(tid, str(traw.get("title") or tid), str(traw.get("caption") or ""), rows,
                            published, [str(f) for f in footnotes], str(traw.get("chart") or "")))
    quali = pre.get("qualitative", raw.get("qualitative")) or {}
    return Grid(
        name=name, preset=str(preset), caption=str(pre.get("caption") or "").strip(), tests=tests, tables=tables,
        cells=cells, requires=_requires(pre.get("requires"), f"{name}: presets.{preset}"),
        published=bool(pre.get("published", True)), qualitative_images=int(_mapping(quali, "qualitative").get("images", 2)),
        raw=raw, source=source,
    )


def load_grid(path: str | os.PathLike[str], preset: str | None = None,
              overrides: dict[str, Any] | None = None) -> Grid:
    """Load and expand a grid config file."""
    return expand(load_grid_file(path), preset, overrides, source=str(path))


def load_saved_grid(runs_dir: str | os.PathLike[str], preset: str | None = None) -> Grid:
    """The grid a previous ``compare`` saved to ``RUNS_DIR/compare.yaml``."""
    p = Path(runs_dir) / GRID_FILE
    if not p.is_file():
        raise CracksegError(f"{runs_dir}: no {GRID_FILE} here; pass the grid CONFIG too, or the --out of a compare run")
    from .config import load_yaml

    saved = load_yaml(p, what="saved grid")
    return expand(saved.get("grid") or {}, preset or saved.get("preset"), saved.get("overrides") or {}, source=str(p))


def saved_preset(runs_dir: str | os.PathLike[str]) -> str | None:
    """The preset recorded in ``RUNS_DIR/compare.yaml``, if any."""
    p = Path(runs_dir) / GRID_FILE
    try:
        return (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("preset")
    except (OSError, yaml.YAMLError):
        return None


def _tests(value: Any, name: str) -> list[TestSet]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{name}: 'tests' must list the test datasets (id, label, data or run_test: true)")
    out: list[TestSet] = []
    for i, t in enumerate(value):
        where = f"{name}: tests[{i}]"
        t = _mapping(t, where)
        _check_keys(t, _TEST_KEYS, where)
        tid = t.get("id")
        if not isinstance(tid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", tid):
            raise ConfigError(f"{where}: 'id' must be a short name (letters, digits, _ . -)")
        run_test = bool(t.get("run_test"))
        data = t.get("data")
        if run_test == (data is not None):
            raise ConfigError(f"{where}: give either 'run_test: true' (the run's own test split) or a 'data' section")
        if data is not None:
            data = _mapping(data, f"{where}.data")
            if not isinstance(data.get("name"), str):
                raise ConfigError(f"{where}.data: 'name' (a dataset name, e.g. folder) is required")
        out.append(TestSet(tid, str(t.get("label") or tid), data))
    ids = [t.id for t in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{name}: test ids must be distinct (got {', '.join(ids)})")
    return out


def _row_specs(traw: dict[str, Any], where: str) -> Iterator[dict[str, Any]]:
    rows = traw.get("rows") or []
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: 'rows' must be a list")
    for i, r in enumerate(rows):
        w = f"{where} rows[{i}]"
        r = _mapping(r, w)
        _check_keys(r, _ROW_KEYS, w)
        if r.get("missing"):
            rid = str(r.get("id") or r.get("label") or f"row{i}")
            yield {"id": rid, "label": str(r.get("label") or rid), "missing": r["missing"], "note": r.get("note")}
            continue
        lab, bb = _plugin(r.get("labeler"), "labeler", w), _plugin(r.get("backbone"), "backbone", w)
        rid = str(r.get("id") or _auto_id(lab["name"], bb["name"], r.get("prompts"), r.get("loss")))
        yield {"id": rid, "label": str(r.get("label") or rid), "labeler": lab, "backbone": bb,
               "prompts": r.get("prompts"), "loss": r.get("loss"), "set": _mapping(r.get("set"), f"{w}.set"),
               "note": r.get("note")}
    grid = traw.get("grid")
    if grid is None:
        return
    grid = _mapping(grid, f"{where}: grid")
    _check_keys(grid, _AXIS_KEYS, f"{where}: grid")
    axes = {}
    for axis in _AXIS_KEYS:
        items = grid.get(axis)
        if items is None:
            axes[axis] = [None]
            continue
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{where}: grid.{axis} must be a non-empty list")
        axes[axis] = [_axis_item(it, f"{where}: grid.{axis}") for it in items]
        names = [it["name"] for it in axes[axis]]
        for it in axes[axis]:  # the same plugin twice (other settings): tell the rows apart by label
            it["id"] = it["name"] if names.count(it["name"]) == 1 else f"{it['name']}[{it['label']}]"
    if axes["labelers"] == [None] or axes["backbones"] == [None]:
        raise ConfigError(f"{where}: grid needs 'labelers' and 'backbones' lists")
    varying = [a for a in _AXIS_KEYS if len(axes[a]) > 1] or ["labelers", "backbones"]
    for lab in axes["labelers"]:
        for bb in axes["backbones"]:
            for pr in axes["prompts"]:
                for loss in axes["losses"]:
                    chosen = {"labelers": lab, "backbones": bb, "prompts": pr, "losses": loss}
                    layer: dict[str, Any] = {}
                    from .config import deep_merge

                    for it in chosen.values():
                        if it is not None:
                            layer = deep_merge(layer, it["set"])
                    rid = _auto_id(lab["id"], bb["id"], pr and pr["id"], loss and loss["id"])
                    label = " / ".join(chosen[a]["label"] for a in varying if chosen[a] is not None)
                    yield {"id": rid, "label": label or rid, "labeler": {"name": lab["name"]},
                           "backbone": {"name": bb["name"]}, "prompts": pr and pr["name"],
                           "loss": loss and loss["name"], "set": layer, "note": None}


def _axis_item(it: Any, where: str) -> dict[str, Any]:
    if isinstance(it, str):
        return {"name": it, "label": it, "set": {}}
    it = _mapping(it, where)
    _check_keys(it, _ITEM_KEYS, where)
    if not isinstance(it.get("name"), str):
        raise ConfigError(f"{where}: each item needs a 'name'")
    return {"name": it["name"], "label": str(it.get("label") or it["name"]), "set": _mapping(it.get("set"), where)}


def _plugin(value: Any, what: str, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise ConfigError(f"{where}: '{what}' is required (a {what} name, or a mapping with 'name' and parameters)")


def _auto_id(lab: str, bb: str, prompts: Any, loss: Any) -> str:
    parts = [lab, bb] + [str(x) for x in (prompts, loss) if x]
    return "+".join(parts)


def _cell_name(spec: dict[str, Any], used: set[str], key: str) -> str:
    base = _auto_id(spec["labeler"]["name"], spec["backbone"]["name"], spec.get("prompts"), spec.get("loss"))
    if base not in used:
        return base
    return f"{base}@{key[:6]}"  # same plugins, other settings (e.g. a row's 'set')


def _published(value: Any, where: str) -> dict[str, dict[str, list[float]]]:
    if value is None:
        return {}
    value = _mapping(value, f"{where}: published")
    out: dict[str, dict[str, list[float]]] = {}
    for rid, per_test in value.items():
        per_test = _mapping(per_test, f"{where}: published.{rid}")
        out[str(rid)] = {}
        for tid, nums in per_test.items():
            if not (isinstance(nums, list) and len(nums) == 3 and all(isinstance(x, (int, float)) for x in nums)):
                raise ConfigError(f"{where}: published.{rid}.{tid} must be [ODS, OIS, AP] in %")
            out[str(rid)][str(tid)] = [float(x) for x in nums]
    return out


def _requires(value: Any, where: str) -> dict[str, Any]:
    req = _mapping(value, f"{where}.requires")
    _check_keys(req, _REQ_KEYS, f"{where}.requires")
    paths = req.get("paths") or []
    if not isinstance(paths, list) or not all(isinstance(p, dict) and isinstance(p.get("path"), str) for p in paths):
        raise ConfigError(f"{where}.requires.paths must be a list of {{path, what, hint}}")
    return {"gpu": bool(req.get("gpu")), "paths": paths}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _check_keys(d: dict[str, Any], valid: Sequence[str], where: str) -> None:
    import difflib

    for k in d:
        if k not in valid:
            close = difflib.get_close_matches(str(k), list(valid), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown key {k!r}{hint} (valid keys: {', '.join(valid)})")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+@-]", "_", name)


# -- preflight -----------------------------------------------------------------------------------
def check_requirements(grid: Grid, device: str | None, cells: Sequence[Cell] | None = None) -> None:
    """Fail in one line when the preset's data, weights or GPU are missing."""
    for item in grid.requires["paths"]:
        p = Path(str(item["path"])).expanduser()
        if not p.exists():
            what = item.get("what") or "required file"
            raise CracksegError(
                f"preset {grid.preset}: {what} not found at {item['path']} (cwd {Path.cwd()}); {item.get('hint', '')}".rstrip("; ")
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
    if grid.requires["gpu"] and device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise CracksegError(
                f"preset {grid.preset} needs a CUDA GPU and none is visible; use --preset cpu-small on a CPU "
                f"(or --device cpu to force it, which takes days)"
            )


# -- running cells --------------------------------------------------------------------------------
def cell_dir(runs_dir: Path, cell: Cell) -> Path:
    return Path(runs_dir) / "cells" / cell.dirname


def read_cell_record(runs_dir: Path, cell: Cell) -> dict[str, Any] | None:
    p = cell_dir(runs_dir, cell) / CELL_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if rec.get("key") == cell.key else None


def cell_is_done(runs_dir: Path, cell: Cell, tests: Sequence[TestSet]) -> bool:
    rec = read_cell_record(runs_dir, cell)
    if rec is None:
        return False
    have = rec.get("tests") or {}
    return all(t.id in have and have[t.id].get("spec") == t.spec_key for t in tests)


def run_cell(grid: Grid, cell: Cell, runs_dir: str | os.PathLike[str], *, device: str | None = None,
             quiet: bool = False, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], bool]:
    """Train/evaluate one cell unless it is finished; returns (its record, whether anything was computed).

    Holds ``cells/<dir>.lock`` while working, so two processes never compute the
    same cell; labels and classifiers are shared through ``RUNS_DIR/_shared``.
    """
    from .io import write_json
    from .locks import file_lock

    log = log or (lambda _m: None)
    runs = Path(runs_dir)
    cdir = cell_dir(runs, cell)
    with file_lock(cdir.parent / f".{cell.dirname}.lock"):
        if cell_is_done(runs, cell, grid.tests):
            return read_cell_record(runs, cell) or {}, False
        log(f"cell {cell.index} {cell.name}: computing in {cdir}")
        from .config import resolve_config

        extra: dict[str, Any] = {"out": str(cdir), "shared_dir": str(runs / SHARED_DIR)}
        if device:
            extra["device"] = device
        cfg = resolve_config([*cell.layers, extra])
        metrics_path = cdir / "metrics.json"
        if not metrics_path.is_file():
            from .runner import run as run_one

            resume = (cdir / "config.yaml").is_file()
            with _stdout_to_stderr(quiet):
                run_one(cfg, resume=resume, quiet=quiet)
        own = json.loads(metrics_path.read_text(encoding="utf-8"))
        rec = read_cell_record(runs, cell) or {"key": cell.key, "name": cell.name, "tests": {}}
        rec.update({"key": cell.key, "name": cell.name, "labeler": cell.labeler, "backbone": cell.backbone,
                    "random_init": cell.random_init, "train_seconds": own.get("train_seconds"),
                    "total_seconds": own.get("total_seconds"), "notes": own.get("notes", "")})
        for t in grid.tests:
            old = rec["tests"].get(t.id)
            if old and old.get("spec") == t.spec_key:
                continue
            if t.data is None:
                m, sub = own, ""
            else:
                from .runner import evaluate_run

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
    """``runner.run`` prints its one-row table; compare's stdout is for compare's own tables."""
    target = open(os.devnull, "w") if quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(target):
            yield
    finally:
        if quiet:
            target.close()


def run_serial(grid: Grid, runs_dir: Path, indices: Sequence[int], *, device: str | None, quiet: bool,
               log: Callable[[str], None]) -> list[int]:
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
                device: str | None, extra_args: Sequence[str], log: Callable[[str], None]) -> list[int]:
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
                running[k] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env), fh, time.perf_counter())
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
        for proc, fh, _ in running.values():  # interrupted: stop the children this call started
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
            f"{len(failed)} cell(s) failed ({', '.join(map(str, sorted(failed)))}); last lines in {first}: {_tail(first)}"
        )
    return done


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def save_grid(grid: Grid, runs_dir: Path, overrides: dict[str, Any]) -> None:
    """Write ``RUNS_DIR/compare.yaml`` (what ``--from RUNS_DIR`` rebuilds the tables from)."""
    from .io import write_text

    doc = {"preset": grid.preset, "overrides": overrides, "grid": grid.raw}
    write_text(runs_dir / GRID_FILE, yaml.safe_dump(doc, sort_keys=False))


# -- gathering --------------------------------------------------------------------------------------
def gather(grid: Grid, runs_dir: str | os.PathLike[str], published: bool | None = None) -> dict[str, Any]:
    """Collect finished cells into the tables (percentages); computes nothing."""
    runs = Path(runs_dir)
    show_pub = grid.published if published is None else published
    records = {c.index: read_cell_record(runs, c) for c in grid.cells}
    out_tables = []
    for table in grid.tables:
        rows = []
        footnotes = list(table.footnotes)
        dagger = False
        for row in table.rows:
            entry: dict[str, Any] = {"id": row.id, "label": row.label, "note": row.note, "metrics": {}}
            if row.cell is None:
                entry.update(status="not implemented", cell=None, missing=row.missing)
                footnotes.append(f"{row.label}: {row.missing}")
            else:
                cell = grid.cells[row.cell]
                rec = records[row.cell] or {}
                entry.update(cell=cell.name, cell_index=cell.index, dir=str(Path("cells") / cell.dirname),
                             labeler=cell.labeler, backbone=cell.backbone, random_init=cell.random_init)
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
                if cell.random_init:
                    dagger = True
            if show_pub and row.id in table.published:
                entry["published"] = {t: dict(zip(("ods", "ois", "ap"), v)) for t, v in table.published[row.id].items()}
            rows.append(entry)
        if dagger:
            footnotes.append("† random-init CLIP (no pretrained weights): these rows test the pipeline, "
                             "they are not CrackCLIP results")
        caption = " ".join(x for x in (table.caption, grid.caption) if x)
        out_tables.append({"id": table.id, "title": table.title, "caption": caption, "footnotes": footnotes,
                           "chart": table.chart, "rows": rows, "published_shown": show_pub})
    return {"grid": grid.name, "preset": grid.preset, "unit": "%",
            "tests": [{"id": t.id, "label": t.label} for t in grid.tests], "tables": out_tables}


def missing_cells(grid: Grid, runs_dir: Path) -> list[Cell]:
    return [c for c in grid.cells if not cell_is_done(runs_dir, c, grid.tests)]


def _pct(x: Any) -> float | None:
    return None if x is None else round(100.0 * float(x), 4)


def write_outputs(grid: Grid, results: dict[str, Any], runs_dir: str | os.PathLike[str], *,
                  figures: bool = True) -> str:
    """Write every table (md/csv/tex/json) and figure; return the Markdown of all tables."""
    from . import compare_render as R
    from .io import write_json, write_text

    runs = Path(runs_dir)
    parts = []
    for table in results["tables"]:
        tdir = runs / table["id"]
        md = R.markdown_table(table, results["tests"])
        write_text(tdir / "table.md", md + "\n")
        write_text(tdir / "table.csv", R.csv_table(table, results["tests"]))
        write_text(tdir / "table.tex", R.latex_table(table, results["tests"]))
        write_json(tdir / "table.json", {**{k: results[k] for k in ("grid", "preset", "unit", "tests")}, "table": table})
        if figures:
            R.pr_curves(table, results["tests"], runs, tdir)
            R.qualitative_grid(table, grid, runs, tdir / "qualitative.png")
            if table.get("chart") == "bars":
                R.bar_chart(table, results["tests"], tdir / "bars.png")
        parts.append(md)
    all_md = "\n\n".join(parts)
    write_text(runs / "results.md", all_md + "\n")
    write_json(runs / "results.json", results)
    return all_md
