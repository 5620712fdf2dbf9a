"""Search spaces for ``crackseg tune``, read from a component's params dataclass.

A parameter is searched when its field declares a range in its metadata::

    @dataclass
    class MyParams:
        threshold: float = field(default=0.5, metadata={"tune": (0.1, 0.9)})           # float range
        sigma: float = field(default=3.0, metadata={"tune": (0.5, 50.0), "log": True})  # on a log scale
        iterations: int = field(default=5, metadata={"tune": (1, 10)})                  # int range
        method: str = field(default="a", metadata={"tune": ["a", "b", "c"]})            # these choices
        mode: Literal["x", "y"] = field(default="x", metadata={"tune": True})           # the Literal's choices

A tuple is a range ``(low, high)`` (both ends included) of an ``int`` or ``float`` field; a
list is a set of choices; ``True`` means every choice of a ``Literal`` (or ``bool``) field.
Only top-level fields are searched (a nested section, such as a model's settings, is not).

``crackseg tune --param NAME=SPEC`` adds or overrides one parameter's range (see
:func:`parse_spec`). No optuna here: :meth:`TuneParam.suggest` only calls the ``suggest_*``
methods of the trial it is handed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from crackseg.base import schema
from crackseg.base.console import MAX_QUOTE, quote
from crackseg.base.errors import ConfigError
from crackseg.config.layers import parse_value

#: the field-metadata keys this module reads
TUNE_KEY = "tune"
LOG_KEY = "log"

Kind = Literal["int", "float", "categorical"]


@dataclass(frozen=True)
class TuneParam:
    """One searched parameter: a numeric range or a set of choices."""

    name: str
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        """``threshold 0.1..0.9``, ``sigma 0.5..50 (log)``, ``mode in {x, y}``."""
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(str(c) for c in self.choices)}}}"
        return f"{self.name} {self.low:g}..{self.high:g}" + (" (log)" if self.log else "")

    def suggest(self, trial: Any) -> Any:
        """A value drawn by an optuna ``trial`` (``suggest_float`` / ``suggest_int`` / ``suggest_categorical``)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices, or a number inside the range."""
        if self.kind == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        """Plain data (what a study records to recognise its search space)."""
        if self.kind == "categorical":
            return {"name": self.name, "kind": self.kind, "choices": list(self.choices)}
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


class DeclarationError(ValueError):
    """A params dataclass declares a range that cannot be searched (the plugin's mistake)."""


def base_type(tp: Any) -> Any:
    """``int | None`` → ``int``; a Union of several non-None types and anything else stays as it is."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def literal_choices(tp: Any) -> tuple[Any, ...]:
    """The choices of a ``Literal`` (or ``bool``) type, optional or not; empty for any other type."""
    tp = base_type(tp)
    if get_origin(tp) is Literal:
        return tuple(get_args(tp))
    if tp is bool:
        return (True, False)
    return ()


def _numeric_kind(tp: Any) -> Kind | None:
    tp = base_type(tp)
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    return None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def param_from_declaration(name: str, tp: Any, decl: Any, log: bool = False) -> TuneParam:
    """The :class:`TuneParam` that a field's ``tune`` metadata declares; :class:`DeclarationError` if unsearchable."""
    if decl is True:
        choices = literal_choices(tp)
        if not choices:
            raise DeclarationError(f"parameter {name!r}: tune=True needs a Literal or bool field, "
                                   f"not {schema.describe_type(tp)}; declare a range (lo, hi) or a list of choices")
        return TuneParam(name, "categorical", choices=choices)
    if isinstance(decl, list):
        if not decl:
            raise DeclarationError(f"parameter {name!r}: the list of choices to tune over is empty")
        try:
            choices = tuple(schema.coerce(tp, c, name) for c in decl)
        except ConfigError as exc:
            raise DeclarationError(f"a tune choice does not fit its field: {exc}") from None
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise DeclarationError(f"parameter {name!r}: tune choices must be numbers, strings, booleans or null")
        return TuneParam(name, "categorical", choices=choices)
    if isinstance(decl, tuple):
        kind = _numeric_kind(tp)
        if kind is None:
            raise DeclarationError(f"parameter {name!r}: a range (lo, hi) needs an int or float field, not "
                                   f"{schema.describe_type(tp)}; declare a list of choices instead")
        return numeric_param(name, kind, decl, log)
    raise DeclarationError(f"parameter {name!r}: tune metadata must be a range (lo, hi), a list of choices or True, "
                           f"got {decl!r}")


def numeric_param(name: str, kind: Kind, bounds: tuple[Any, ...], log: bool = False) -> TuneParam:
    """A checked numeric range: two numbers, low < high, whole numbers for an int, positive on a log scale."""
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
        raise DeclarationError(f"parameter {name!r}: a range is two numbers (lo, hi), got {bounds!r}")
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise DeclarationError(f"parameter {name!r}: the range {low}..{high} is empty (lo must be below hi)")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise DeclarationError(f"parameter {name!r} is an integer: its range needs whole numbers, got {low}..{high}")
    if log and low <= 0:
        raise DeclarationError(f"parameter {name!r}: a log-scale range must be positive, got {low}..{high}")
    if kind == "int":
        return TuneParam(name, "int", int(low), int(high), log)
    return TuneParam(name, "float", float(low), float(high), log)


def declared_space(params_cls: type | None) -> dict[str, TuneParam]:
    """Every parameter ``params_cls`` declares a ``tune`` range for, in field order (empty for None)."""
    if params_cls is None:
        return {}
    hints = _hints(params_cls)
    out: dict[str, TuneParam] = {}
    for f in dataclasses.fields(params_cls):
        decl = f.metadata.get(TUNE_KEY)
        if decl is None or decl is False:
            continue
        out[f.name] = param_from_declaration(f.name, hints[f.name], decl, bool(f.metadata.get(LOG_KEY, False)))
    return out


def parse_spec(name: str, tp: Any, spec: str) -> TuneParam:
    """A ``--param NAME=SPEC`` range: ``LO:HI``, ``LO:HI:log`` (numbers) or ``a,b,c`` (choices).

    A mistake is a :class:`~crackseg.base.errors.ConfigError` saying what to write instead.
    """
    shown = spec if len(spec) <= MAX_QUOTE else spec[:MAX_QUOTE - 1] + "…"
    where = f"--param {name}={shown}"
    if ":" in spec:
        parts = spec.split(":")
        log = len(parts) == 3 and parts[2].strip().lower() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(f"{where}: write LO:HI or LO:HI:log, e.g. --param {name}=0.1:0.9")
        kind = _numeric_kind(tp)
        if kind is None:
            hint = f"list choices, e.g. --param {name}=a,b" if not literal_choices(tp) else \
                f"list choices, e.g. --param {name}={','.join(str(c) for c in literal_choices(tp))}"
            raise ConfigError(f"{where}: {name!r} is {schema.describe_type(tp)}, not a number; {hint}")
        bounds = tuple(parse_value(p.strip()) for p in parts[:2])
        try:
            return numeric_param(name, kind, bounds, log)
        except DeclarationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if "," in spec:
        try:
            choices = tuple(schema.coerce(tp, parse_value(c.strip()), name) for c in spec.split(",") if c.strip())
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if len(choices) < 2:
            raise ConfigError(f"{where}: give at least two choices, e.g. --param {name}=a,b")
        return TuneParam(name, "categorical", choices=tuple(dict.fromkeys(choices)))
    raise ConfigError(f"{where}: write a range LO:HI (or LO:HI:log) or choices a,b,c; to fix a parameter "
                      f"instead, use --set labeler.{name}={shown}")


def parse_param_options(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["threshold=0.2:0.8", "gate"]`` → ``{"threshold": "0.2:0.8", "gate": ""}``."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, spec = item.partition("=")
        name = name.strip()
        if not name or "." in name:
            raise ConfigError(f"--param {quote(item)}: expected NAME=LO:HI, NAME=a,b,c or NAME (a top-level parameter)")
        if eq and not spec.strip():
            raise ConfigError(f"--param {quote(item)}: nothing after '='; write NAME=LO:HI or NAME=a,b,c, or NAME "
                              f"alone to search its declared range")
        out[name] = spec.strip()
    return out


def build_space(params_cls: type | None, options: dict[str, str], fixed: set[str] | frozenset[str] = frozenset(),
                owner: str = "the component") -> dict[str, TuneParam]:
    """The searched parameters: the declared ranges, minus ``fixed`` ones, with ``options`` (``--param``) applied.

    ``options`` maps a parameter name to a :func:`parse_spec` spec, or ``""`` for its declared
    range (or, undeclared, the choices of a Literal/bool field). A name that is not a field of
    ``params_cls`` is a :class:`~crackseg.base.errors.ConfigError`; ``owner`` names the component in it.
    A malformed declaration raises :class:`DeclarationError`.
    """
    declared = declared_space(params_cls)
    names = [f.name for f in dataclasses.fields(params_cls)] if params_cls is not None else []
    hints = _hints(params_cls) if params_cls is not None else {}
    space = {k: v for k, v in declared.items() if k not in fixed}
    for name, spec in options.items():
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--param {quote(name)}: {owner} has no parameter {quote(name)}{hint} "
                              f"(its parameters: {', '.join(names) or 'none'})")
        if name in fixed:
            raise ConfigError(f"--param {name!r}: {name} is also set by --config/--set, which fixes it; "
                              f"drop one of the two")
        if spec:
            space[name] = parse_spec(name, hints[name], spec)
        elif name in declared:
            space[name] = declared[name]
        elif literal_choices(hints[name]):
            space[name] = TuneParam(name, "categorical", choices=literal_choices(hints[name]))
        else:
            raise ConfigError(f"--param {name!r}: {owner} declares no range for {name!r}; give one, "
                              f"e.g. --param {name}=LO:HI")
    return space
