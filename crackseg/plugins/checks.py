"""Checks of a plugin's registrations, run as it registers: extras, parameter defaults, the factory's signature.

Problems that make an entry unusable raise :class:`~crackseg.base.errors.CracksegError`
(the hook call then registers nothing); problems that would otherwise surface later
as a confusing error blamed on the user are returned as warning texts, which the
manager prints in one line naming the plugin and keeps for ``crackseg plugins --check``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from crackseg.base import schema
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.plugins.registry import EXTRAS, SINGULAR


def check_registration(kind: str, name: str, factory: Callable[..., Any], params: type | None,
                       extras: dict[str, Any]) -> list[str]:
    """Validate one ``register(...)`` call; return warnings (fatal problems raise)."""
    what = f"{SINGULAR[kind]} {name!r}"
    if not isinstance(name, str) or not name:
        raise CracksegError(f"registered a {SINGULAR[kind]} without a name")
    if not callable(factory):
        raise CracksegError(f"{what}: the factory is not callable")
    if params is not None and not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise CracksegError(f"{what}: params= must be a dataclass (got {params!r})")
    _check_extras(what, params, extras)
    return [*_check_defaults(what, params), *_check_signature(what, factory, params)]


def unknown_extras(kind: str, extras: dict[str, Any]) -> list[str]:
    """Names of ``register`` keyword arguments that kind does not understand."""
    return [k for k in extras if k not in EXTRAS[kind]]


def _check_extras(what: str, params: type | None, extras: dict[str, Any]) -> None:
    opens = extras.get("opens")
    if opens is not None:
        if not (isinstance(opens, dict) and isinstance(opens.get("param"), str)):
            raise CracksegError(f"{what}: opens= must be a mapping with 'param' (and optional 'suffixes' or 'when')")
        if opens.get("when") is not None and not callable(opens["when"]):
            raise CracksegError(f"{what}: opens= 'when' must be a function of the folder's path")
        _check_param(what, params, opens["param"], "opens")
    for extra in ("prompt_param", "input_size_param"):
        if extras.get(extra) is not None:
            _check_param(what, params, extras[extra], extra)
    demo = extras.get("demo")
    if demo is not None and not isinstance(demo, (bool, dict)):
        raise CracksegError(f"{what}: demo= must be True (a dataset) or a mapping of settings (a labeler)")
    if isinstance(demo, dict):
        for key in demo:
            _check_param(what, params, key, "demo")
    if "default" in extras and not isinstance(extras["default"], bool):
        raise CracksegError(f"{what}: default= must be True or False")
    train = extras.get("train")
    if train is not None and not (isinstance(train, dict) or callable(train)):
        raise CracksegError(f"{what}: train= must be a mapping (or a function of the params returning one)")
    if extras.get("loss") is not None and not isinstance(extras["loss"], str):
        raise CracksegError(f"{what}: loss= must be a loss spec such as 'a+0.5*b' (names of registered losses)")


def _check_param(what: str, params: type | None, param: Any, extra: str) -> None:
    fields = [f.name for f in dataclasses.fields(params)] if params is not None else []
    if param not in fields:
        raise CracksegError(f"{what}: {extra}={param!r} names no parameter of its params dataclass")


def _check_defaults(what: str, params: type | None) -> list[str]:
    """Every default must have its field's declared type (else users get blamed for the plugin's default)."""
    if params is None:
        return []
    try:
        hints = typing.get_type_hints(params)
    except Exception as exc:  # noqa: BLE001 - an unresolvable annotation is the plugin's problem
        return [f"{what}: cannot read the type hints of {params.__name__} ({type(exc).__name__}: {exc})"]
    out = []
    for f in dataclasses.fields(params):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            out.append(f"{what}: parameter {f.name!r} has no default; every parameter needs one")
            continue
        try:
            schema.coerce(hints[f.name], schema.to_dict(default), f.name)
        except ConfigError:
            out.append(f"{what}: the default of parameter {f.name!r} is {default!r}, which is not "
                       f"{schema.describe_type(hints[f.name])} as its type hint says")
    return out


def _check_signature(what: str, factory: Callable[..., Any], params: type | None) -> list[str]:
    """The factory must accept every parameter of the dataclass, and need nothing else."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []  # a builtin or C callable: nothing to compare with
    fields = [f.name for f in dataclasses.fields(params)] if params is not None else []
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    accepted = {n for n, p in sig.parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    out = []
    refused = [f for f in fields if f not in accepted]
    if refused and not takes_any:
        out.append(f"{what}: its factory {getattr(factory, '__name__', factory)!r} does not accept "
                   f"parameter(s) {', '.join(map(repr, refused))} of its params dataclass")
    needed = [n for n, p in sig.parameters.items()
              if p.default is inspect.Parameter.empty and n not in fields
              and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    if needed:
        out.append(f"{what}: its factory needs {', '.join(map(repr, needed))}, which the params dataclass "
                   f"does not declare")
    return out
