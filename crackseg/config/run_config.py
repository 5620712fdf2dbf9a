"""The run configuration: its dataclass schema and how layers resolve into it.

Resolution order (later wins): built-in defaults → the backbone's training
defaults (its ``train`` extra) → the trainer's (its ``train`` extra: a training method's
recipe) → the dataset's suggestions (its ``train`` extra,
e.g. the images' native size; for demo data, ``demo=True``, the labeler's ``demo`` settings)
→ the ``--config`` YAML file → CLI flags → ``--set`` → ``--prompts`` → a backbone's fixed
input size (its ``input_size_param`` extra) as ``train.image_size``. Plugin sections (``data``,
``labeler``, ``backbone``, ``trainer``) hold ``name`` plus that plugin's own parameters,
validated against the plugin's dataclass; a layer that names another plugin replaces the
section instead of merging into it. A section
without a name gets the plugin that offers itself as the default (``default=True``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from crackseg.base import schema
from crackseg.base.console import quote
from crackseg.base.errors import ConfigError
from crackseg.base.protocols import PROTOCOLS, MetricProtocol  # noqa: F401 - PROTOCOLS: the config's choices
from crackseg.config.layers import deep_merge, dump_yaml, flatten
from crackseg.plugins import registry
from crackseg.plugins.factory import default_name, get_entry, path_section, validate_params


@dataclass
class TrainConfig:
    """Segmentation training (phase 2). Backbones provide their papers' defaults."""

    epochs: int = 20
    batch_size: int = 8
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    #: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs (0 = constant)
    lr_step: int = 0
    lr_gamma: float = 0.1
    #: training images (and labels) are resized to image_size × image_size
    image_size: int = 256
    #: any of flip, rot90
    augment: list[str] = field(default_factory=lambda: ["flip"])
    #: probability of a 2×2 mosaic of four training images (CrackCLIP: 0.2)
    mosaic_p: float = 0.0
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"
    grad_clip: float = 0.0
    #: stop after this many optimiser steps (0 = no limit); for smoke tests
    max_steps: int = 0
    #: stop after this many seconds of training (0 = no limit); for fixed-budget benchmarks
    time_budget_s: float = 0.0
    #: processes that load and augment training images from disk (null: from the CPU count, at most 4)
    num_workers: int | None = None
    #: write checkpoint.pt after an epoch once this many seconds passed since the last one (0: after every
    #: epoch); the last epoch's is always written, and so is the last finished epoch's on Ctrl-C or an error
    checkpoint_every_s: float = 60.0
    #: where each epoch's numbers go (crackseg list loggers); null: every default logger that is installed
    loggers: list[str] | None = None


@dataclass
class PredictConfig:
    """Inference and post-processing of probability maps."""

    #: "resize" squashes each image to the training size (as the CrackCLIP authors do);
    #: "tile" slides a window with overlap and blends; "auto" tiles images larger than 2× the size
    mode: Literal["auto", "resize", "tile"] = "auto"
    tile_overlap: float = 0.25
    batch_size: int = 4
    #: grey-scale 3×3 erosions applied to the uint8 map (the paper: 3)
    erosion_iterations: int = 0
    #: per-image min-max normalisation (the CrackCLIP authors' test.py)
    minmax_normalize: bool = False
    #: probability above which binary masks are crack where no ODS threshold is known (a run's own
    #: overlays and ``crackseg predict RUN_DIR`` use the run's ODS threshold, ``--threshold`` overrides)
    threshold: float = 0.5
    #: number of test images with overlays written to the run folder
    overlays: int = 4


@dataclass
class EvalConfig:
    """How predictions are scored (see :mod:`crackseg.evaluation.metrics`)."""

    protocol: MetricProtocol = "crackclip"


#: how a ``data:`` section gets its weak labels (see the module docstring)
WeakLabelSource = Literal["auto", "none", "masks", "csv"]


@dataclass
class WeakLabelsConfig:
    """The ``data.weak_labels`` section: where a data set's weak labels come from."""

    #: ``auto``: the dataset's own (class folders), else none; ``masks``: derived from the masks;
    #: ``csv``: read from ``path``; ``none``: ignore every weak label
    source: WeakLabelSource = "auto"
    #: the CSV file (``source: csv``)
    path: str = field(default="", metadata={"path": "file"})
    #: patch size in pixels of the grid derived from masks (``source: masks``)
    patch_size: int = 64
    #: a patch is crack when it holds at least this many crack pixels (``source: masks``)
    min_crack_pixels: int = 1


@dataclass
class DataSplits:
    """The data section's own keys; every other key is a parameter of the dataset plugin."""

    train_split: str = "train"
    test_split: str = "test"
    #: use only the first N images of the training split (0 = all)
    limit_train: int = 0
    #: use only the first N images of the test split (0 = all)
    limit_test: int = 0
    #: where the images' weak labels come from (crackseg.data.weak_labels)
    weak_labels: WeakLabelsConfig = field(default_factory=WeakLabelsConfig)



#: keys of the ``data`` section that are not dataset-plugin parameters
DATA_KEYS: tuple[str, ...] = ("name", *(f.name for f in fields(DataSplits)))
#: config section → registry kind of its plugin
PLUGIN_SECTIONS: dict[str, str] = {"data": "datasets", "labeler": "labelers", "backbone": "backbones",
                                   "trainer": "trainers"}


@dataclass
class RunConfig:
    """Everything ``crackseg run`` needs; written to ``<run>/config.yaml``."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out: str = ""
    #: folder for stages shared between runs (labelers' trained artefacts, pseudo-labels),
    #: keyed by their inputs; empty = inside the run folder. ``compare`` points every cell at one.
    shared_dir: str = ""
    #: the dataset: ``name`` (default: the plugin offering itself), splits, and its parameters
    data: dict[str, Any] = field(default_factory=dict)
    #: the pseudo-labeler: ``name`` and its parameters (``crackseg list labelers``)
    labeler: dict[str, Any] = field(default_factory=dict)
    #: the segmentation backbone: ``name`` and its parameters (``crackseg list backbones``)
    backbone: dict[str, Any] = field(default_factory=dict)
    #: how the backbone is trained: ``name`` and its parameters (``crackseg list trainers``)
    trainer: dict[str, Any] = field(default_factory=dict)
    #: e.g. "focal+dice+edge"; empty = the backbone's own default
    loss: str = ""
    #: per-loss parameters, e.g. {"focal": {"alpha": 0.25}}
    loss_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: weights of named backbone outputs; empty = the backbone's default
    loss_weights: dict[str, float] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# -- resolution --------------------------------------------------------------------
def merge_layers(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge raw layers in order; a plugin section naming another plugin replaces the earlier one."""
    raw: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            raise ConfigError("a config layer must be a mapping")
        for section in PLUGIN_SECTIONS:
            new, old = layer.get(section), raw.get(section)
            if isinstance(new, dict) and isinstance(old, dict) and "name" in new and new["name"] != old.get("name"):
                raw = {**raw, section: {}}
        raw = deep_merge(raw, layer)
    return raw


def data_spec(value: str) -> dict[str, Any]:
    """``--data``: a registered dataset name, or a folder that a dataset plugin opens."""
    return path_section("datasets", value) or {"name": value}  # unknown name: reported with suggestions later


def resolve_config(layers: list[dict[str, Any]], prompts: str | None = None) -> RunConfig:
    """Merge raw layers (file, flags, --set) over defaults and validate everything.

    ``prompts`` (the ``--prompts`` flag, a grid's prompts axis) sets the backbone's
    prompt-set parameter, whatever the backbone calls it (its ``prompt_param`` extra).
    """
    raw = merge_layers(layers)
    # the plugins a config names are checked before defaults are looked up: a missing package of
    # a plugin the user asked for is the error to report
    named = {s: _section_name(raw, s, default=False) for s in PLUGIN_SECTIONS}
    for section, name in named.items():
        if name:
            get_entry(PLUGIN_SECTIONS[section], name)
    names = {s: named[s] or _section_name(raw, s) for s in PLUGIN_SECTIONS}
    bentry = get_entry("backbones", names["backbone"])
    if prompts is not None:
        param = bentry.extras.get("prompt_param")
        if not param:
            takers = [n for n in registry("backbones").names() if get_entry("backbones", n).extras.get("prompt_param")]
            raise ConfigError(f"--prompts {quote(prompts)}: backbone {quote(names['backbone'])} takes no prompt set "
                              f"(backbones that do: {', '.join(takers) or 'none installed'})")
        raw = deep_merge(raw, {"backbone": {param: prompts}})
    base = schema.to_dict(RunConfig())
    base["train"] = deep_merge(base["train"], dict(bentry.extras.get("train") or {}))
    base["train"] = deep_merge(base["train"], dict(get_entry("trainers", names["trainer"]).extras.get("train") or {}))
    base["train"] = deep_merge(base["train"], _dataset_suggestion(raw, names["data"]))
    base = deep_merge(base, demo_layer(names["data"], names["labeler"]))
    for section, name in names.items():
        raw = deep_merge(raw, {section: {"name": name}})
    cfg: RunConfig = schema.build(RunConfig, deep_merge(base, raw))
    cfg.backbone = resolve_section("backbones", cfg.backbone, "backbone")
    size_param = bentry.extras.get("input_size_param")
    if size_param and cfg.backbone.get(size_param):
        cfg.train.image_size = int(cfg.backbone[size_param])  # what training really uses: show it
    cfg.labeler = resolve_section("labelers", cfg.labeler, "labeler")
    cfg.trainer = resolve_section("trainers", cfg.trainer, "trainer")
    cfg.data = resolve_data_section(cfg.data)
    if not cfg.loss:
        cfg.loss = str(bentry.extras.get("loss") or "+".join(registry("losses").defaults()))
        if not cfg.loss:
            raise ConfigError(f"backbone {cfg.backbone['name']!r} declares no loss and no installed plugin "
                              f"offers a default one; set loss: (crackseg list losses)")
    check_loss(cfg.loss, cfg.loss_params)
    _check_train(cfg.train)
    return cfg


def _section_name(raw: dict[str, Any], section: str, default: bool = True) -> str:
    """The plugin name a section gives; without one the default plugin's (``default``) or ``""``."""
    sec = raw.get(section)
    if sec is not None and not isinstance(sec, dict):
        raise ConfigError(f"config key {section!r} must be a mapping with 'name' and parameters")
    name = (sec or {}).get("name")
    if name is None:
        return default_name(PLUGIN_SECTIONS[section]) if default else ""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key '{section}.name' must be a {section} name (a string)")
    return name


def resolve_section(kind: str, section: dict[str, Any], path: str, own: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """``{"name": N, **params}`` with every parameter of plugin N validated and defaulted.

    Keys in ``own`` belong to the section itself and are kept as they are.
    """
    name = section["name"]
    params = {k: v for k, v in section.items() if k not in own}
    kept = {k: section[k] for k in own if k in section}
    return {**kept, **validate_params(get_entry(kind, name), params, path)}


def resolve_data_section(section: dict[str, Any]) -> dict[str, Any]:
    """The data section: name, the :class:`DataSplits` keys (validated, defaulted), the dataset's params."""
    splits = schema.build(DataSplits, {k: v for k, v in section.items() if k in DATA_KEYS and k != "name"}, "data")
    for k in ("limit_train", "limit_test"):
        if getattr(splits, k) < 0:
            raise ConfigError(f"config key 'data.{k}' must be a non-negative integer (0 = all)")
    params = {k: v for k, v in resolve_section("datasets", section, "data", own=DATA_KEYS).items()
              if k not in DATA_KEYS}
    own = schema.to_dict(splits)
    if splits.weak_labels == WeakLabelsConfig():  # the default is left out: configs and stage keys stay as before
        del own["weak_labels"]
    return {"name": section["name"], **own, **params}


def _dataset_suggestion(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """Training settings the dataset suggests for its images (its ``train`` extra), given its params."""
    entry = get_entry("datasets", name)
    suggest = entry.extras.get("train") or {}
    if callable(suggest):
        section = raw.get("data") or {}
        params = {k: v for k, v in section.items() if k not in DATA_KEYS}
        suggest = suggest(validate_params(entry, params, "data"))
    if not isinstance(suggest, dict):
        raise ConfigError(f"dataset {name!r}: its training suggestion is not a mapping")
    return dict(suggest)


def demo_layer(data: str, labeler: str) -> dict[str, Any]:
    """The labeler's ``demo`` settings when dataset ``data`` is demo data (registered with ``demo=True``).

    Demo data (the embedded synthetic images) is for trying the pipeline in minutes on a
    CPU; a labeler that would train a large model declares smaller settings for it
    (``demo={...}``, keys of its params). They sit under the user's layers: any
    ``--config`` or ``--set`` value wins.
    """
    if not get_entry("datasets", data).extras.get("demo"):
        return {}
    settings = get_entry("labelers", labeler).extras.get("demo")
    return {"labeler": {"name": labeler, **copy.deepcopy(settings)}} if settings else {}


_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z0-9_.-]+)\s*$")


def parse_terms(spec: str) -> list[tuple[float, str]]:
    """A loss spec: ``"focal+0.5*edge"`` → ``[(1.0, "focal"), (0.5, "edge")]``."""
    terms = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if not m:
            raise ConfigError(f"loss {quote(spec)}: cannot parse term {quote(part.strip())} (write names of registered "
                              f"losses joined by '+', each optionally weighted: 'a+0.5*b'; crackseg list losses)")
        terms.append((float(m.group("w") or 1.0), m.group("name")))
    return terms


def check_loss(spec: str, loss_params: dict[str, dict[str, Any]]) -> None:
    """Every term of ``spec`` is a registered loss and ``loss_params`` fit those losses' schemas."""
    terms = [name for _, name in parse_terms(spec)]
    for name in terms:
        get_entry("losses", name)
    extra = sorted(set(loss_params) - set(terms))
    if extra:
        key = quote(f"loss_params.{extra[0]}")
        raise ConfigError(f"config key {key}: {quote(extra[0])} is not a term of loss {quote(spec)}")
    for name, params in loss_params.items():
        validate_params(get_entry("losses", name), params, f"loss_params.{name}")


def _check_train(t: TrainConfig) -> None:
    checks = [
        (t.epochs >= 1, "train.epochs must be at least 1"),
        (t.batch_size >= 1, "train.batch_size must be at least 1"),
        (t.lr > 0, "train.lr must be positive"),
        (t.image_size >= 16, "train.image_size must be at least 16"),
        (0.0 <= t.mosaic_p <= 1.0, "train.mosaic_p must be in [0, 1]"),
        (len(t.betas) == 2, "train.betas must hold two numbers"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    bad = [a for a in t.augment if a not in ("flip", "rot90")]
    if bad:
        raise ConfigError(f"train.augment: unknown augmentation {quote(bad[0])} (choose from flip, rot90)")
    if not t.checkpoint_every_s >= 0:
        raise ConfigError("train.checkpoint_every_s must be 0 or more (seconds; 0: a checkpoint after every epoch)")
    if t.num_workers is not None and t.num_workers < 0:
        raise ConfigError("train.num_workers must be 0 or more (null: from the CPU count)")
    for name in t.loggers or []:
        get_entry("loggers", name)


def to_yaml(cfg: RunConfig) -> str:
    """The config as YAML (what ``config.yaml`` and ``config show`` hold)."""
    return dump_yaml(schema.to_dict(cfg))


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a resolved config (from a run folder) and re-validate it."""
    return resolve_config([d])


#: keys a resumed run may change: where and how it runs, not what it computes
RESUME_MAY_CHANGE = ("out", "device", "shared_dir", "train.num_workers", "train.checkpoint_every_s")


def diff_configs(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = RESUME_MAY_CHANGE) -> list[str]:
    """Dotted keys whose values differ (for ``--resume`` safety), less ``ignore`` (keys or top-level sections)."""
    da, db = flatten(schema.to_dict(a)), flatten(schema.to_dict(b))
    keys = sorted(set(da) | set(db))
    return [k for k in keys if da.get(k) != db.get(k) and k not in ignore and k.split(".")[0] not in ignore]
