"""MkDocs hooks of crackseg's documentation site: the reference pages are generated from the code.

A page holds a marker, an HTML comment on a line of its own, that this hook replaces while the site builds:

``<!-- crackseg:cli -->``
    every ``crackseg`` command, walked from the click group ``crackseg.cli:cli`` (plugin commands
    included): its help text, usage line and options, as ``--help`` prints them.
``<!-- crackseg:config -->``
    every key of the run configuration (``crackseg.config.run_config.RunConfig`` and its sections),
    with its type, default and the ``#:`` comment above its field.
``<!-- crackseg:components -->``
    every registered component of every kind (datasets, labelers, backbones, ...): description,
    plugin and parameters (its params dataclass: type, default, ``#:`` comment).
``<!-- crackseg:api -->``
    one mkdocstrings directive per public name of ``crackseg`` (``crackseg.__all__``), grouped by the
    module that defines it; mkdocstrings renders the docstrings.

So none of these pages can drift from the code: a new option, key, component or public name appears
on the next ``./dev docs``. ``tests/test_readme.py`` calls the same functions.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import logging
import re
import textwrap
import typing
from collections.abc import Iterator
from typing import Any

MARKER = re.compile(r"^<!-- crackseg:(\w+) -->$", re.M)


class _DynamicAllFilter(logging.Filter):
    """``crackseg.__all__`` is built from the table of public names (``crackseg/_api.py``) on purpose;
    griffe reads ``__all__`` statically and warns about it. The API page lists the names itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unsupported item in crackseg.__all__" not in record.getMessage()


logging.getLogger("mkdocs.plugins.griffe").addFilter(_DynamicAllFilter())


# -- text helpers ------------------------------------------------------------------------------------------
def _code(text: str) -> str:
    """Inline code that is safe inside a Markdown table cell."""
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _cell(text: str) -> str:
    """Plain text that is safe inside a Markdown table cell; ``backticks`` become code."""
    text = " ".join(text.split())
    parts = re.split(r"``?([^`]+)``?", text)
    out = []
    for i, part in enumerate(parts):
        out.append(_code(part) if i % 2 else html.escape(part).replace("|", "&#124;"))
    return "".join(out)


def _click_help(text: str) -> str:
    """A click help text as Markdown: paragraphs kept, ``\\b`` blocks as code blocks."""
    text = inspect.cleandoc(text or "")
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        if para.startswith("\b"):
            body = para.split("\n", 1)[1] if "\n" in para else ""
            out.append("```text\n" + textwrap.dedent(body) + "\n```")
        else:
            out.append(_markdown_text(" ".join(para.split())))
    return "\n\n".join(out)


def _markdown_text(text: str) -> str:
    """Plain text as Markdown: ``<stem>`` and the like shown, not taken for HTML; `code` spans kept."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


# -- the command line ---------------------------------------------------------------------------------------
def cli_commands() -> list[tuple[str, Any, Any]]:
    """Every command as ``(full name, click command, click context)``, groups' sub-commands included."""
    import click

    from crackseg.cli import cli

    out: list[tuple[str, Any, Any]] = []

    def walk(cmd: click.Command, ctx: click.Context, path: str) -> None:
        out.append((path, cmd, ctx))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx), f"{path} {name}")

    walk(cli, click.Context(cli, info_name="crackseg"), "crackseg")
    return out


def cli_markdown() -> str:
    import click

    lines: list[str] = []
    for path, cmd, ctx in cli_commands():
        lines.append(f"## `{path}`\n")
        usage = " ".join([path, *cmd.collect_usage_pieces(ctx)])
        lines.append(f"```text\nUsage: {usage}\n```\n")
        if cmd.help:
            lines.append(_click_help(cmd.help) + "\n")
        args = [p for p in cmd.get_params(ctx) if isinstance(p, click.Argument)]
        opts = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option)]
        if args:
            lines.append("Arguments: " + ", ".join(_code(a.make_metavar(ctx) if _takes_ctx(a) else a.make_metavar())
                                                  for a in args) + "\n")
        if opts:
            lines.append("| option | what it does |\n|---|---|")
            for opt in opts:
                record = opt.get_help_record(ctx)
                if record is None:
                    continue
                names, help_text = record
                lines.append(f"| {_code(names)} | {_cell(help_text)} |")
            lines.append("")
        if isinstance(cmd, click.Group):
            subs = [f"`{path} {n}`" for n in cmd.list_commands(ctx)]
            lines.append("Commands: " + ", ".join(subs) + "\n")
    return "\n".join(lines)


def _takes_ctx(param: Any) -> bool:
    try:
        return "ctx" in inspect.signature(param.make_metavar).parameters
    except (TypeError, ValueError):
        return False


# -- dataclasses: fields with their #: comments -------------------------------------------------------------
def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of a class, by field name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                comment.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if comment:
                out[node.target.id] = " ".join(comment)
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) if not isinstance(a, str) else a for a in typing.get_args(tp))
    text = repr(tp).replace("typing.", "")
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Z]\w*)", r"\1", text)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def dataclass_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, comment)`` of every field, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield key, tp.__name__, None, comments.get(f.name, inspect.getdoc(tp) or "")
            yield from dataclass_keys(tp, key + ".")  # type: ignore[arg-type]
            continue
        yield key, _type_name(tp), _default(f), comments.get(f.name, "")


def _default_text(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def _key_table(rows: list[tuple[str, str, Any, str]]) -> str:
    lines = ["| key | type | default | what it is |", "|---|---|---|---|"]
    for key, tp, default, comment in rows:
        shown = "" if default is None and tp[:1].isupper() and "|" not in tp and "None" not in tp else _default_text(
            default)
        lines.append(f"| {_code(key)} | {_code(tp)} | {_code(shown) if shown else ''} | {_cell(comment)} |")
    return "\n".join(lines)


#: what a key of the run configuration is, where its field has no ``#:`` comment in the code
KEY_DOCS = {
    "seed": "random seed (every rank of a distributed run seeds identically)",
    "device": "where to compute; ``auto``: ``cuda`` when there is one, else ``cpu``",
    "out": "the run folder; empty: ``runs/<labeler>-<backbone>-<data>``",
    "data.train_split": "the split the labeler labels and the backbone trains on",
    "data.test_split": "the split that is predicted and scored",
    "train.epochs": "training epochs",
    "train.batch_size": "the global batch: under torchrun each of N processes takes batch_size / N images",
    "train.optimizer": "the optimiser",
    "train.lr": "learning rate (for the global batch)",
    "train.momentum": "SGD momentum",
    "train.betas": "Adam / AdamW betas",
    "train.weight_decay": "weight decay",
    "train.lr_gamma": "the learning-rate factor of ``lr_step``",
    "train.precision": "``16-mixed`` / ``bf16-mixed``: autocast on CUDA (a gradient scaler for fp16); ignored on CPU",
    "train.grad_clip": "clip the gradient norm to this value (0 = no clipping)",
    "predict.tile_overlap": "overlap of neighbouring tiles as a fraction of the window (tiled prediction; at most 0.9)",
    "predict.batch_size": "images or tiles predicted at once",
    "eval.protocol": "how ODS / OIS / AP are computed: ``crackclip`` (the authors' script) or ``paper`` "
                     "(the paper's formulas); see Metric protocols",
}


def config_keys() -> list[tuple[str, str, Any, str]]:
    """Every key of the run configuration (the plugin sections' own keys; not their plugins' parameters)."""
    from crackseg.config.run_config import DataSplits, RunConfig
    from crackseg.plugins.factory import default_name

    rows: list[tuple[str, str, Any, str]] = []
    for key, tp, default, comment in dataclass_keys(RunConfig):
        rows.append((key, tp, default, comment or KEY_DOCS.get(key, "")))
        if key == "data":
            rows.append(("data.name", "str", default_name("datasets"), "the dataset (``crackseg list datasets``); "
                         "every other key of ``data`` is a parameter of that dataset"))
            rows += [(k, tp_, d, c or KEY_DOCS.get(k, "")) for k, tp_, d, c in dataclass_keys(DataSplits, "data.")]
        elif key in ("labeler", "backbone", "trainer"):
            kind = f"{key}s"
            rows.append((f"{key}.name", "str", default_name(kind),
                         f"which {key} (``crackseg list {kind}``); every other key of ``{key}`` is a parameter "
                         f"of that plugin"))
    return rows


def config_markdown() -> str:
    return _key_table(config_keys())


# -- registered components -----------------------------------------------------------------------------------
def components_markdown() -> str:
    import crackseg
    from crackseg.plugins import KINDS, SINGULAR

    out: list[str] = []
    for kind in KINDS:
        out.append(f"## {kind.capitalize()}\n")
        section = {"datasets": "data", "labelers": "labeler", "backbones": "backbone", "trainers": "trainer",
                   "losses": "loss_params.NAME", "prompts": "backbone's prompt set (--prompts)",
                   "loggers": "train.loggers"}.get(kind, SINGULAR.get(kind, kind))
        out.append(f"`crackseg list {kind}` prints the same. Parameters go under `{section}`.\n")
        for name in crackseg.list_components(kind):
            entry = crackseg.get_entry(kind, name)
            dist = f", {entry.distribution}" if entry.distribution else ""
            out.append(f"### `{name}`\n")
            out.append(f"{_cell(entry.description)} *(plugin `{entry.plugin}`{dist})*\n")
            if entry.params is not None and dataclasses.is_dataclass(entry.params):
                rows = list(dataclass_keys(entry.params))
                if rows:
                    out.append(_key_table(rows) + "\n")
    return "\n".join(out)


# -- the public API ---------------------------------------------------------------------------------------
def api_groups() -> dict[str, list[str]]:
    """``crackseg.__all__`` by defining module, in the order of ``crackseg/_api.py``."""
    from crackseg._api import API

    groups: dict[str, list[str]] = {}
    for name, module in API.items():
        groups.setdefault(module, []).append(name)
    return groups


def api_markdown() -> str:
    out: list[str] = []
    for module, names in api_groups().items():
        out.append(f"## `{module}`\n")
        out.append(", ".join(f"`crackseg.{n}`" for n in names) + "\n")
        for name in names:
            out.append(f"::: {module}.{name}\n    options:\n      heading_level: 3\n")
    return "\n".join(out)


GENERATORS = {"cli": cli_markdown, "config": config_markdown, "components": components_markdown,
              "api": api_markdown}


# -- mkdocs hooks ----------------------------------------------------------------------------------------------
def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(m: re.Match[str]) -> str:
        kind = m.group(1)
        if kind not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown marker crackseg:{kind}")
        return GENERATORS[kind]()

    return MARKER.sub(replace, markdown)


_ROLE = re.compile(r":(?:py:)?(?:class|func|data|mod|meth|attr|obj|exc):(<code>)")


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings use Sphinx roles (``:class:`X```): show the name, drop the role."""
    return _ROLE.sub(r"\1", html_text)
