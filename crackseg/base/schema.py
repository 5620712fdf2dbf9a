"""Validate plain data (parsed YAML, ``--set`` values) against dataclass schemas.

Errors name the dotted path of the offending key and the valid keys, e.g.
``config key 'train.epohcs' is unknown; did you mean 'epochs'? (valid keys: ...)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from crackseg.base.console import quote
from crackseg.base.errors import ConfigError


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def unknown_key_message(path: str, key: str, valid: list[str]) -> str:
    dotted = f"{path}.{key}" if path else key
    msg = f"config key {quote(dotted)} is unknown"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {quote(close[0])}?"
    return msg + f" (valid keys{' under ' + quote(path) if path else ''}: {', '.join(valid) or 'none'})"


def build(cls: type, data: dict[str, Any] | None, path: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config key {quote(path or '<root>')} must be a mapping, got {_tname(data)}")
    hints = typing.get_type_hints(cls)
    names = field_names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(unknown_key_message(path, str(key), names))
        kwargs[key] = coerce(hints[key], value, f"{path}.{key}" if path else key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"config {quote(path or '<root>')}: {exc}") from None


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check (and gently convert) ``value`` to type ``tp``; raise ConfigError naming ``path``."""
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        shaped: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, path)
            except ConfigError as exc:
                if _same_shape(arg, value):
                    shaped = exc  # the member the value was meant to be: its error says most
        if shaped is not None:
            raise shaped
        raise ConfigError(f"config key {quote(path)}: expected {describe_type(tp)}, got {quote(value)}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        raise ConfigError(
            f"config key {quote(path)}: {quote(value)} is not one of {', '.join(repr(c) for c in choices)}"
        )
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {quote(path)}: expected a list, got {_tname(value)} {quote(value)}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key {quote(path)}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {quote(path)}: expected a mapping, got {_tname(value)}")
        kt, vt = get_args(tp) or (Any, Any)
        return {coerce(kt, k, path): coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {quote(path)}: expected true or false, got {quote(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {quote(path)}: expected an integer, got {_tname(value)} {quote(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {quote(path)}: expected a number, got {_tname(value)} {quote(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {quote(path)}: expected a string, got {_tname(value)} {quote(value)}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"config key {quote(path)}: expected {tp.__name__}, got {_tname(value)} {quote(value)}")
    return value


def _same_shape(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the container shape of ``tp``: a mapping for a dataclass or dict, a list for a list."""
    origin = get_origin(tp)
    if isinstance(value, dict):
        return dataclasses.is_dataclass(tp) or origin is dict
    if isinstance(value, (list, tuple)):
        return origin in (list, tuple)
    return False


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict/list data suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _tname(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(v), type(v).__name__)


def describe_type(tp: Any) -> str:
    """A type as words for messages: ``an integer``, ``a list``, ``'a' or 'b'``, ``a string or null``."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return " or ".join(describe_type(a) for a in get_args(tp))
    if origin is Literal:
        return " or ".join(repr(c) for c in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in words:
        return words[tp]
    return getattr(tp, "__name__", str(tp))


#: the public names of :func:`build` and :func:`to_dict`
dataclass_from_dict = build
dataclass_to_dict = to_dict
