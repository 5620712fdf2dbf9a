"""Config layers: reading YAML files, parsing ``--set KEY=VALUE`` overrides, merging layers.

Every YAML file crackseg reads (run configs, grid configs, saved run configs, prompt
files of plugins) goes through :func:`load_yaml`, so a missing or corrupt file is one
:class:`~crackseg.base.errors.ConfigError` line naming it. Every YAML text from a user (files and
``--set`` values) is parsed by :func:`safe_yaml`, which refuses alias bombs (a few hundred bytes
whose aliases expand to millions of values).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from crackseg.base.console import quote
from crackseg.base.errors import ConfigError

#: mappings replaced as a whole by a later layer instead of merged key by key
REPLACED_KEYS = ("loss_weights",)
#: how many values YAML aliases may add to a document once expanded (no honest config comes near)
MAX_ALIAS_EXPANSION = 10_000


class _AliasBomb(Exception):
    """A YAML document whose aliases expand beyond :data:`MAX_ALIAS_EXPANSION` values, or refer to themselves."""


class BudgetLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand to too many values.

    PyYAML shares an aliased value, so loading a bomb is cheap; everything after (validation,
    error messages, copies) walks the expanded tree. The expanded size is counted on the node
    graph, each node once, before anything is constructed.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
        else:
            self._nodes += 1
        return super().compose_node(parent, index)

    def compose_document(self) -> Any:
        node = super().compose_document()
        if self._aliases and node is not None:
            _check_expansion(node, self._nodes + MAX_ALIAS_EXPANSION)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node, limit: int) -> None:
    """Raise :class:`_AliasBomb` if ``root`` expanded (aliases copied) holds more than ``limit`` nodes or a cycle."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose children are being counted: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > limit:
                raise _AliasBomb(f"they add more than {MAX_ALIAS_EXPANSION:,} values")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise _AliasBomb("an alias refers to a value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def safe_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, but a document whose aliases expand too far (or nest too deep) is one
    ConfigError naming ``source``; other YAML errors propagate as ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=BudgetLoader)  # a SafeLoader: plain data only
    except _AliasBomb as exc:
        raise ConfigError(f"{source}: too many YAML aliases ({exc}), refused: an alias bomb?") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply, refused") from None


def load_yaml(path: str | Path, what: str = "config file", expected: str = "a mapping of keys") -> dict[str, Any]:
    """Read a YAML mapping; every problem is one ConfigError line naming ``what`` and the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} not found")
    try:
        data = safe_yaml(p.read_text(encoding="utf-8"), f"{what} {p}")
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


def parse_value(text: str, source: str = "--set value") -> Any:
    """A ``--set`` value: YAML scalars/lists, with numbers like ``1e-3`` understood (``source`` names it in errors)."""
    try:
        value = safe_yaml(text, source)
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
            raise ConfigError(f"--set {quote(item)}: expected KEY=VALUE, e.g. --set train.epochs=3")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {quote(item)}: bad key {quote(key)}")
        set_dotted(out, key, parse_value(raw, f"--set {key}"))
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
