"""Config layers: reading YAML files, parsing ``--set KEY=VALUE`` overrides, merging layers.

Every YAML file crackseg reads (run configs, grid configs, saved run configs, prompt
files of plugins) goes through :func:`load_yaml`, so a missing or corrupt file is one
:class:`~crackseg.base.errors.ConfigError` line naming it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from crackseg.base.errors import ConfigError

#: mappings replaced as a whole by a later layer instead of merged key by key
REPLACED_KEYS = ("loss_weights",)


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


def dump_yaml(data: Any) -> str:
    """Plain data as YAML, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


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
    """``d["a"]["b"] = value`` for ``dotted = "a.b"``, creating mappings on the way."""
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
    """``over`` merged into a copy of ``base``: mappings key by key (but :data:`REPLACED_KEYS`), the rest replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in REPLACED_KEYS:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (empty mappings are kept as values)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
