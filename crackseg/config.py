"""The run configuration: dataclass schema, YAML loading, ``--set`` overrides.

Resolution order (later wins): built-in defaults → the backbone's training
defaults (from its plugin) → the dataset's suggestions (e.g. the synthetic
images' native size) → the ``--config`` YAML file → CLI flags → ``--set``.
Plugin sections (``data``, ``labeler``, ``backbone``) hold ``name`` plus that
plugin's own parameters, validated against the plugin's dataclass.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from . import schema
from .errors import ConfigError

#: keys of the ``data`` section that are not dataset-plugin parameters
DATA_KEYS = ("name", "train_split", "test_split", "limit_train", "limit_test")


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
    num_workers: int = 0


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
    #: probability above which ``predict`` writes crack in binary masks
    threshold: float = 0.5
    #: number of test images with overlays written to the run folder
    overlays: int = 4


@dataclass
class EvalConfig:
    protocol: Literal["crackclip", "paper"] = "crackclip"


@dataclass
class RunConfig:
    """Everything ``crackseg run`` needs; written to ``<run>/config.yaml``."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out: str = ""
    #: folder for stages shared between runs (patch classifiers, pseudo-labels), keyed by
    #: their inputs; empty = inside the run folder. ``compare`` points every cell at one.
    shared_dir: str = ""
    data: dict[str, Any] = field(default_factory=lambda: {"name": "synthetic"})
    labeler: dict[str, Any] = field(default_factory=lambda: {"name": "fsv"})
    backbone: dict[str, Any] = field(default_factory=lambda: {"name": "unet"})
    #: e.g. "focal+dice+edge"; empty = the backbone's own default
    loss: str = ""
    #: per-loss parameters, e.g. {"focal": {"alpha": 0.25}}
    loss_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: weights of named backbone outputs; empty = the backbone's default
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: patch-classifier settings for labelers that need one (see `crackseg list labelers`)
    classifier: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# -- loading ---------------------------------------------------------------------
def load_yaml(path: str | Path, what: str = "config file", expected: str = "a mapping of keys") -> dict[str, Any]:
    """Read a YAML mapping; every problem is one ConfigError line naming ``what`` and the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {p}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p}: not a UTF-8 text file") from None
    if data is None and what == "config file":
        return {}
    if not isinstance(data, dict):
        got = type(data).__name__ if data is not None else "an empty file"
        raise ConfigError(f"{what} {p}: expected {expected}, got {got}")
    return data


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars/lists, with numbers like ``1e-3`` understood."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                pass
    return value


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.epochs=3", "backbone.encoder=resnet18"]`` → nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: bad key {key!r}")
        set_dotted(out, key, parse_value(raw))
    return out


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("loss_weights",):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def data_spec(value: str) -> dict[str, Any]:
    """``--data``: a registered dataset name or a folder path (→ the ``folder`` dataset)."""
    from . import list_plugins

    if value in list_plugins("datasets"):
        return {"name": value}
    if "/" in value or Path(value).exists() or value.startswith("."):
        return {"name": "folder", "root": str(Path(value).resolve())}
    return {"name": value}  # unknown name: resolve_config reports it with suggestions


# -- resolution --------------------------------------------------------------------
def resolve_config(layers: list[dict[str, Any]]) -> RunConfig:
    """Merge raw layers (file, flags, --set) over defaults and validate everything."""
    from . import get_entry, validate_params

    raw: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            raise ConfigError("a config layer must be a mapping")
        raw = deep_merge(raw, layer)
    base = schema.to_dict(RunConfig())
    # plugin sections: a new name replaces the default's parameters instead of merging into them
    for section in ("data", "labeler", "backbone"):
        sec = raw.get(section)
        if isinstance(sec, dict) and "name" in sec and sec["name"] != base[section].get("name"):
            base[section] = {}
    backbone_name = (raw.get("backbone") or {}).get("name", base["backbone"].get("name"))
    if not isinstance(backbone_name, str):
        raise ConfigError("config key 'backbone.name' must be a string")
    entry = get_entry("backbones", backbone_name)
    base["train"] = deep_merge(base["train"], dict(entry.extras.get("train") or {}))
    # a dataset may suggest training settings for its images (e.g. their native size):
    # ``train=`` in its registration, a dict or a function of its parameters
    data_raw = deep_merge(base["data"], raw.get("data") or {}) if isinstance(raw.get("data", {}), dict) else {}
    data_name = data_raw.get("name")
    if isinstance(data_name, str):
        dentry = get_entry("datasets", data_name)
        suggest = dentry.extras.get("train") or {}
        if callable(suggest):
            dparams = validate_params(dentry, _without(data_raw, DATA_KEYS), "data")
            suggest = suggest(dparams)
        base["train"] = deep_merge(base["train"], dict(suggest))
    merged = deep_merge(base, raw)
    cfg: RunConfig = schema.build(RunConfig, merged)

    # validate the plugin sections against their plugins' schemas (fills defaults)
    cfg.backbone = {"name": backbone_name, **validate_params(entry, _without(cfg.backbone, ("name",)), "backbone")}
    lab = cfg.labeler.get("name")
    if not isinstance(lab, str):
        raise ConfigError("config key 'labeler.name' is required (e.g. fsv, gradcam, cam-location)")
    lentry = get_entry("labelers", lab)
    cfg.labeler = {"name": lab, **validate_params(lentry, _without(cfg.labeler, ("name",)), "labeler")}
    dname = cfg.data.get("name")
    if not isinstance(dname, str):
        raise ConfigError("config key 'data.name' is required (a dataset name or a folder path via --data)")
    dentry = get_entry("datasets", dname)
    extra = {k: cfg.data[k] for k in DATA_KEYS if k in cfg.data}
    for k, tp in (("train_split", str), ("test_split", str)):
        if k in extra and not isinstance(extra[k], tp):
            raise ConfigError(f"config key 'data.{k}' must be a string")
    for k in ("limit_train", "limit_test"):
        if k in extra and extra[k] is not None and (not isinstance(extra[k], int) or extra[k] < 0):
            raise ConfigError(f"config key 'data.{k}' must be a non-negative integer (0 = all)")
    cfg.data = {
        "name": dname,
        "train_split": extra.get("train_split", "train"),
        "test_split": extra.get("test_split", "test"),
        "limit_train": extra.get("limit_train", 0) or 0,
        "limit_test": extra.get("limit_test", 0) or 0,
        **validate_params(dentry, _without(cfg.data, DATA_KEYS), "data"),
    }
    if not cfg.loss:
        cfg.loss = str(entry.extras.get("loss") or "bce+dice")
    from .losses import parse_terms

    for _, name in parse_terms(cfg.loss):
        get_entry("losses", name)
    _check_train(cfg.train)
    return cfg


def _without(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


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
        raise ConfigError(f"train.augment: unknown augmentation {bad[0]!r} (choose from flip, rot90)")


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(schema.to_dict(cfg), sort_keys=False, default_flow_style=None)


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a resolved config (from a run folder) and re-validate it."""
    return resolve_config([d])


def diff_configs(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ("out", "device", "shared_dir")) -> list[str]:
    """Dotted keys whose values differ (for ``--resume`` safety)."""
    da, db = _flatten(schema.to_dict(a)), _flatten(schema.to_dict(b))
    keys = sorted(set(da) | set(db))
    return [k for k in keys if da.get(k) != db.get(k) and k.split(".")[0] not in ignore]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def dataclass_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
