"""Every `crackseg` command in the README parses, and every `run` in it resolves to a valid config.

This checks the commands without running them (fast, in process): an option renamed, a config key
dropped or a value that no longer validates fails here. ``benchmarks/readme_commands.py`` runs the
blocks themselves, as written.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import click
import pytest

from conftest import DATASETS, REPO

_spec = importlib.util.spec_from_file_location("readme_commands", REPO / "benchmarks" / "readme_commands.py")
assert _spec is not None and _spec.loader is not None
readme = importlib.util.module_from_spec(_spec)
sys.modules["readme_commands"] = readme  # dataclasses look their module up there
_spec.loader.exec_module(readme)

#: arguments that stand for something the reader supplies
PLACEHOLDERS = ("...", "path/to/", "/path/", "$")


def _commands() -> list[tuple[int, list[str]]]:
    out = []
    for block in readme.blocks():
        for argv in readme.commands(block):
            if not any(p in a for a in argv for p in PLACEHOLDERS):
                out.append((block.line, argv))
    return out


COMMANDS = _commands()


def test_the_readme_has_commands_to_check():
    verbs = {argv[0] for _, argv in COMMANDS}
    assert {"run", "predict", "evaluate", "tune", "label", "measure", "report", "export", "compare"} <= verbs


def _parse(argv: list[str]) -> tuple[click.Command, click.Context]:
    from crackseg.cli import cli

    ctx = cli.make_context("crackseg", list(argv))
    cmd: click.Command = cli
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])  # noqa: SLF001
        assert sub is not None, f"unknown command {name!r}"
        ctx = sub.make_context(name or "", list(rest), parent=ctx)
        cmd = sub
    return cmd, ctx


@pytest.mark.parametrize("line,argv", COMMANDS, ids=[f"line{ln}-{a[0]}" for ln, a in COMMANDS])
def test_readme_command_parses_and_its_config_resolves(line: int, argv: list[str]) -> None:
    from crackseg.cli import build_config

    try:
        cmd, ctx = _parse(argv)
    except click.UsageError as exc:
        pytest.fail(f"README line {line}: crackseg {' '.join(argv)}: {exc.format_message()}")
    if cmd.name in ("run", "show"):
        if any("../shared" in a for a in argv) and not DATASETS.is_dir():
            pytest.skip("shared datasets absent")
        wanted = inspect.signature(build_config).parameters
        kw = {k: v for k, v in ctx.params.items() if k in wanted}
        if kw.get("config_file") and not (REPO / kw["config_file"]).is_file():
            kw["config_file"] = None  # written by an earlier command of the block (crackseg tune): the rest is checked
        cfg = build_config(**kw)  # raises a one-line ConfigError on a bad key or value
        assert cfg.labeler["name"] and cfg.backbone["name"]


def test_placeholder_commands_are_only_where_the_reader_must_supply_something():
    """The commands not checked above need data, weights or machines that are not shipped."""
    skipped = [(b.line, " ".join(argv)) for b in readme.blocks() for argv in readme.commands(b)
               if any(p in a for a in argv for p in PLACEHOLDERS)]
    for line, text in skipped:
        assert any(w in text for w in ("crack500", "ViT-L", "--nproc", "torchrun", "$CELL")), (line, text)


def test_readme_blocks_that_cannot_run_here_say_why():
    for b in readme.blocks():
        if "path/to/crack500" in b.text or "torchrun" in b.text:
            assert b.skip_reason(), b.line
    runnable = [b for b in readme.blocks() if not b.skip_reason()]
    assert len(runnable) >= 8  # the quick start, tune, cac, measure, report, export, compare blocks
    assert Path(REPO / "README.md").read_text().count("```bash") == len(readme.blocks())
