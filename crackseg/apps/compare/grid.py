"""Grid configs: their schema, loading (``include:``, ``base_configs:``) and expansion into tables, rows and cells.

A *grid config* (YAML, see ``configs/paper/``) names the rows of one or more
tables: explicit ``(labeler, backbone)`` rows and/or the cross product of
labelers × backbones × trainers × prompt sets × losses. Every row resolves to a run
configuration; rows that resolve to the same configuration share one *cell* (one
training run). Cells are numbered in expansion order (tables in file order,
explicit rows, then the cross product), which makes ``--cell K`` stable for
cluster job arrays.

Layers of a cell's configuration, later wins::

    base_configs[labeler], base_configs[backbone], base_configs[trainer]   # e.g. configs/backbones/*.yaml
    shared                                          # the grid's settings for every cell
    the row (labeler, backbone, trainer, loss, set)
    presets[P].shared, presets[P].labelers[name], presets[P].backbones[name]
    --set overrides, then the row's prompts (the backbone's prompt parameter)

Relative paths inside run layers (dataset roots, model files) are resolved against
the current working directory, as for ``crackseg run``; ``include:`` and
``base_configs:`` paths are relative to the grid file that names them.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crackseg.base import schema
from crackseg.base.console import quote
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.base.hashing import content_key
from crackseg.base.names import safe_name
from crackseg.config.layers import deep_merge, flatten, load_yaml
from crackseg.config.run_config import resolve_config


# -- the schema of a grid file (validated with crackseg.base.schema, like every config) ----------------
@dataclass
class AxisItem:
    """One value of a cross-product axis: a plugin name, its label in the table, extra settings."""

    name: str
    label: str = ""
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class GridAxes:
    """A table's cross product: labelers × backbones × trainers × prompt sets × losses."""

    labelers: list[str | AxisItem] | None = None
    backbones: list[str | AxisItem] | None = None
    trainers: list[str | AxisItem] | None = None
    prompts: list[str | AxisItem] | None = None
    losses: list[str | AxisItem] | None = None


@dataclass
class RowSpec:
    """An explicit row: a (labeler, backbone) run, or a method crackseg lacks (``missing``)."""

    id: str | None = None
    label: str | None = None
    labeler: str | dict[str, Any] | None = None
    backbone: str | dict[str, Any] | None = None
    #: the training method (default: the default trainer)
    trainer: str | dict[str, Any] | None = None
    prompts: str | None = None
    loss: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    #: why the method has no cell (its published numbers are still shown)
    missing: str | None = None
    note: str | None = None


@dataclass
class TableSpec:
    """One table: rows and/or a cross product, published numbers, footnotes."""

    id: str | None = None
    title: str | None = None
    caption: str = ""
    rows: list[RowSpec] = field(default_factory=list)
    grid: GridAxes | None = None
    #: row id → test id → [ODS, OIS, AP] in %
    published: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)
    #: "bars": also draw a grouped bar chart (the paper's Figure 5)
    chart: Literal["", "bars"] = ""


@dataclass
class EvalSpec:
    """A test set: the run's own test split (``run_test: true``) or a data section (+ ``split``, ``limit``)."""

    id: str = ""
    label: str | None = None
    run_test: bool = False
    data: dict[str, Any] | None = None


@dataclass
class PathRequirement:
    """A file a preset needs, and how to get it."""

    path: str = ""
    what: str = ""
    hint: str = ""


@dataclass
class Requirements:
    gpu: bool = False
    paths: list[PathRequirement] = field(default_factory=list)


@dataclass
class Qualitative:
    #: images per test set in the qualitative figure
    images: int = 2


@dataclass
class PresetSpec:
    """A named variant of the grid (e.g. ``paper``, ``cpu-small``)."""

    description: str = ""
    caption: str = ""
    shared: dict[str, Any] = field(default_factory=dict)
    tests: list[EvalSpec] | None = None
    #: labeler name → a config layer for its cells
    labelers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: backbone name → a config layer for its cells
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)
    requires: Requirements = field(default_factory=Requirements)
    published: bool = True
    qualitative: Qualitative | None = None


@dataclass
class BaseConfigs:
    """Each plugin's documented recipe: a config file (relative to the grid file) or an inline layer."""

    labelers: dict[str, str | dict[str, Any]] = field(default_factory=dict)
    backbones: dict[str, str | dict[str, Any]] = field(default_factory=dict)
    trainers: dict[str, str | dict[str, Any]] = field(default_factory=dict)


@dataclass
class GridSpec:
    """A grid config file."""

    name: str = ""
    title: str = ""
    description: str = ""
    include: list[str] | str | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    base_configs: BaseConfigs = field(default_factory=BaseConfigs)
    tests: list[EvalSpec] | None = None
    presets: dict[str, PresetSpec] = field(default_factory=dict)
    default_preset: str | None = None
    tables: list[TableSpec] = field(default_factory=list)
    qualitative: Qualitative | None = None


# -- the expanded grid ------------------------------------------------------------------------------
@dataclass
class TestSet:
    """One column group of the tables: a test dataset."""

    __test__ = False  # not a pytest class

    id: str
    label: str
    #: ``None``: the run's own test split (``data.test_split`` of the training data)
    data: dict[str, Any] | None = None

    @property
    def spec_key(self) -> str:
        return "run" if self.data is None else content_key(self.data)

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
    #: the row's prompt set, applied to the backbone's prompt parameter
    prompts: str | None = None

    @property
    def dirname(self) -> str:
        return f"{_safe(self.name)}-{self.key[:8]}"

    @property
    def labeler(self) -> str:
        return str(self.config["labeler"]["name"])

    @property
    def backbone(self) -> str:
        return str(self.config["backbone"]["name"])


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
    requires: Requirements
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
    path = path.expanduser()
    real = path.resolve()
    if real in stack:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(p.name for p in [*stack, real])})")
    raw = load_yaml(path)
    spec = _validate(raw, str(path))
    if raw.get("name") is not None:  # the default runs folder is named after it
        safe_name(raw["name"], f"{path}: name")
    includes = [spec.include] if isinstance(spec.include, str) else list(spec.include or [])
    raw.pop("include", None)
    merged: dict[str, Any] = {}
    tables: list[Any] = []
    for inc in includes:
        sub = _load(path.parent / inc, [*stack, real])
        tables.extend(sub.pop("tables", []) or [])
        merged = deep_merge(merged, sub)
    own_tables = raw.pop("tables", None) or []
    if "base_configs" in raw:
        raw["base_configs"] = _inline_base_configs(spec.base_configs, path)
    merged = deep_merge(merged, raw)
    merged["tables"] = [*tables, *own_tables]
    merged["name"] = str(raw.get("name") or path.stem)  # the including file names the grid
    return merged


def _validate(raw: dict[str, Any], where: str) -> GridSpec:
    """The grid file as a :class:`GridSpec`; a problem is one line naming the file and the key."""
    try:
        return schema.build(GridSpec, raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _inline_base_configs(base: BaseConfigs, path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"labelers": {}, "backbones": {}, "trainers": {}}
    for kind in out:
        for name, value in getattr(base, kind).items():
            out[kind][name] = load_yaml(path.parent / value) if isinstance(value, str) else dict(value)
    return out


def load_grid(path: str | os.PathLike[str], preset: str | None = None,
              overrides: dict[str, Any] | None = None) -> Grid:
    """Load and expand a grid config file."""
    return expand(load_grid_file(path), preset, overrides, source=str(path))


def expand(raw: dict[str, Any], preset: str | None = None, overrides: dict[str, Any] | None = None,
           source: str = "") -> Grid:
    """Expand a loaded grid config for ``preset`` into tables, rows and numbered cells."""
    name = str(raw.get("name") or "grid")
    spec = _validate(raw, name)
    preset = preset or spec.default_preset or next(iter(spec.presets), "")
    if spec.presets and preset not in spec.presets:
        raise ConfigError(f"{name}: unknown preset {quote(preset)} (choose from {', '.join(spec.presets)})")
    if preset:  # the default runs folder is named after it
        safe_name(preset, f"{name}: preset")
    pre = spec.presets.get(preset) or PresetSpec()
    tests = _tests(pre.tests if pre.tests is not None else spec.tests, name)
    base = spec.base_configs
    over = overrides or {}

    cells: list[Cell] = []
    by_key: dict[str, int] = {}
    tables: list[Table] = []
    if not spec.tables:
        raise ConfigError(f"{name}: the grid has no tables (add a 'tables:' list with rows)")
    for ti, tspec in enumerate(spec.tables):
        tid = safe_name(tspec.id, f"{name}: tables[{ti}].id") if tspec.id is not None else f"table{ti + 1}"
        if tid in (t.id for t in tables):
            raise ConfigError(f"{name}: tables[{ti}]: duplicate table id {tid!r}")
        rows: list[Row] = []
        for row in _row_specs(tspec, f"{name}: {tid}"):
            if row.get("missing"):
                rows.append(Row(row["id"], row["label"], None, str(row["missing"]), str(row.get("note") or "")))
                continue
            lab, bb = row["labeler"]["name"], row["backbone"]["name"]
            row_layer: dict[str, Any] = {"labeler": row["labeler"], "backbone": dict(row["backbone"])}
            tr = row["trainer"]["name"] if row.get("trainer") else ""
            if tr:
                row_layer["trainer"] = row["trainer"]
            if row.get("loss"):
                row_layer["loss"] = row["loss"]
            layers: list[dict[str, Any]] = [
                _layer(base.labelers.get(lab)),
                _layer(base.backbones.get(bb)),
                _layer(base.trainers.get(tr)),
                copy.deepcopy(spec.shared),
                row_layer,
                copy.deepcopy(row.get("set") or {}),
                copy.deepcopy(pre.shared),
                copy.deepcopy(pre.labelers.get(lab) or {}),
                copy.deepcopy(pre.backbones.get(bb) or {}),
                copy.deepcopy(over),
            ]
            try:
                cfg = resolve_config(layers, prompts=row.get("prompts"))
            except CracksegError as exc:
                raise type(exc)(f"{name}: {tid} row {row['id']!r}: {exc}") from None
            cdict = schema.to_dict(cfg)
            for k in ("out", "device", "shared_dir"):
                cdict.pop(k, None)
            _check_row_settings(row.get("set") or {}, layers[layers.index(row_layer) + 2:], cdict,
                                f"{name}: {tid} row {row['id']!r}", preset)
            key = content_key(cdict)
            if key not in by_key:
                by_key[key] = len(cells)
                cname = _cell_name(row, {c.name for c in cells}, key)
                cells.append(Cell(len(cells), cname, key, layers, cdict, row.get("prompts")))
            rows.append(Row(row["id"], row["label"], by_key[key], note=str(row.get("note") or "")))
        ids = [r.id for r in rows]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"{name}: {tid}: duplicate row id {dup[0]!r}; give the rows distinct 'id's")
        for rid, per_test in tspec.published.items():
            for test_id, nums in per_test.items():
                if len(nums) != 3:
                    raise ConfigError(f"{name}: {tid}: published.{rid}.{test_id} must be [ODS, OIS, AP] in %")
        tables.append(Table(tid, tspec.title or tid, tspec.caption, rows,
                            {str(k): {str(t): list(v) for t, v in d.items()} for k, d in tspec.published.items()},
                            list(tspec.footnotes), tspec.chart))
    quali = pre.qualitative or spec.qualitative or Qualitative()
    return Grid(
        name=name, preset=str(preset), caption=pre.caption.strip(), tests=tests, tables=tables,
        cells=cells, requires=pre.requires, published=pre.published, qualitative_images=quali.images,
        raw=raw, source=source,
    )


def _tests(value: list[EvalSpec] | None, name: str) -> list[TestSet]:
    if not value:
        raise ConfigError(f"{name}: 'tests' must list the test datasets (id, label, data or run_test: true)")
    out: list[TestSet] = []
    for i, t in enumerate(value):
        where = f"{name}: tests[{i}]"
        safe_name(t.id, f"{where}.id")
        if t.run_test == (t.data is not None):
            raise ConfigError(f"{where}: give either 'run_test: true' (the run's own test split) or a 'data' section")
        if t.data is not None and not isinstance(t.data.get("name"), str):
            raise ConfigError(f"{where}.data: 'name' (a dataset name, e.g. folder) is required")
        out.append(TestSet(t.id, t.label or t.id, t.data))
    ids = [t.id for t in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{name}: test ids must be distinct (got {', '.join(ids)})")
    return out


def _row_specs(table: TableSpec, where: str) -> Iterator[dict[str, Any]]:
    """Every row of a table as plain data: the explicit rows, then the cross product."""
    for i, r in enumerate(table.rows):
        if r.missing:
            rid = r.id or r.label or f"row{i}"
            yield {"id": rid, "label": r.label or rid, "missing": r.missing, "note": r.note}
            continue
        w = f"{where} rows[{i}]"
        lab, bb = _plugin(r.labeler, "labeler", w), _plugin(r.backbone, "backbone", w)
        tr = _plugin(r.trainer, "trainer", w) if r.trainer is not None else None
        rid = r.id or _auto_id(lab["name"], bb["name"], r.prompts, r.loss, tr and tr["name"])
        yield {"id": rid, "label": r.label or rid, "labeler": lab, "backbone": bb, "trainer": tr,
               "prompts": r.prompts, "loss": r.loss, "set": r.set, "note": r.note}
    if table.grid is None:
        return
    axes: dict[str, list[AxisItem | None]] = {}
    ids: dict[int, str] = {}
    for axis in ("labelers", "backbones", "trainers", "prompts", "losses"):
        items = getattr(table.grid, axis)
        if items is None:
            axes[axis] = [None]
            continue
        if not items:
            raise ConfigError(f"{where}: grid.{axis} must be a non-empty list")
        full = [AxisItem(it) if isinstance(it, str) else it for it in items]
        names = [it.name for it in full]
        for it in full:  # the same plugin twice (other settings): tell the rows apart by label
            it.label = it.label or it.name
            ids[id(it)] = it.name if names.count(it.name) == 1 else f"{it.name}[{it.label}]"
        axes[axis] = list(full)
    if axes["labelers"] == [None] or axes["backbones"] == [None]:
        raise ConfigError(f"{where}: grid needs 'labelers' and 'backbones' lists")
    varying = [a for a in axes if len(axes[a]) > 1] or ["labelers", "backbones"]
    for la, ba, ta, pa, lo in itertools.product(*(axes[a] for a in ("labelers", "backbones", "trainers",
                                                                   "prompts", "losses"))):
        assert la is not None and ba is not None
        chosen = {"labelers": la, "backbones": ba, "trainers": ta, "prompts": pa, "losses": lo}
        picked = {a: it for a, it in chosen.items() if it is not None}
        layer: dict[str, Any] = {}
        for it in picked.values():
            layer = deep_merge(layer, it.set)
        rid = _auto_id(ids[id(la)], ids[id(ba)], pa and ids[id(pa)], lo and ids[id(lo)], ta and ids[id(ta)])
        label = " / ".join(picked[a].label for a in varying if a in picked)
        yield {"id": rid, "label": label or rid, "labeler": {"name": la.name}, "backbone": {"name": ba.name},
               "trainer": ta and {"name": ta.name}, "prompts": pa and pa.name, "loss": lo and lo.name,
               "set": layer, "note": None}


def _layer(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """A copy of a base config layer (file names were inlined when the grid was loaded)."""
    if isinstance(value, str):
        raise ConfigError(f"base config {value!r} was not inlined; load grids with load_grid_file")
    return copy.deepcopy(value or {})


def _plugin(value: Any, what: str, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise ConfigError(f"{where}: '{what}' is required (a {what} name, or a mapping with 'name' and parameters)")


def _auto_id(lab: str, bb: str, prompts: Any, loss: Any, trainer: Any = None) -> str:
    parts = [lab, bb] + [str(x) for x in (trainer, prompts, loss) if x]
    return "+".join(parts)


def _check_row_settings(row_set: dict[str, Any], later: list[dict[str, Any]], resolved: dict[str, Any], where: str,
                        preset: str) -> None:
    """A row's ``set`` key that the cell's config lost, one line: a later layer replaced its whole section.

    (A preset's ``data:`` names a dataset and so replaces the data section; a row's ``set: {data: {...}}``
    would vanish without a word.) Keys that a later layer sets itself are overridden on purpose.
    """
    merged: dict[str, Any] = {}
    for layer in later:
        merged = deep_merge(merged, layer)
    overridden = set(flatten(merged))
    present = flatten(resolved)
    for dotted in flatten(row_set):
        if dotted in overridden or dotted in present or any(k.startswith(dotted + ".") for k in present):
            continue
        raise ConfigError(f"{where}: set.{dotted} does not reach the cell's config: preset {preset!r} replaces that "
                          f"section (a section that names its plugin or dataset replaces the row's); set it in "
                          f"presets.{preset}.labelers / backbones instead, or drop it")


def _cell_name(row: dict[str, Any], used: set[str], key: str) -> str:
    trainer = row["trainer"]["name"] if row.get("trainer") else None
    base = _auto_id(row["labeler"]["name"], row["backbone"]["name"], row.get("prompts"), row.get("loss"), trainer)
    if base not in used:
        return base
    return f"{base}@{key[:6]}"  # same plugins, other settings (e.g. a row's 'set')


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+@-]", "_", name)
