"""Every `crackseg` command in the README and the docs parses, and every `run` in them resolves to a valid config.

This checks the commands without running them (fast, in process): an option renamed, a config key
dropped or a value that no longer validates fails here. ``benchmarks/readme_commands.py`` runs the
blocks themselves, as written. The reference pages of the documentation site are generated from the
code (``docs/_hooks/crackseg_docs.py``); the tests at the end check that they cover every command,
configuration key and public name.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

import click
import pytest

from conftest import DATASETS, REPO, missing_data_reason


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


readme = _load("readme_commands", REPO / "benchmarks" / "readme_commands.py")

#: arguments that stand for something the reader supplies
PLACEHOLDERS = ("...", "path/to/", "/path/", "$")
BLOCKS = readme.all_blocks()


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    for block in BLOCKS:
        for argv in readme.commands(block):
            if not any(p in a for a in argv for p in PLACEHOLDERS):
                out.append((f"{block.file}:{block.line}", argv))
    return out


COMMANDS = _commands()


def test_the_docs_are_the_readme_and_every_page_of_the_site():
    files = [p.relative_to(REPO).as_posix() for p in readme.doc_files()]
    assert files[0] == "README.md"
    pages = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md") if "_hooks" not in p.parts)
    assert sorted(files[1:]) == pages
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in pages:  # a page outside the nav is built but nobody finds it
        assert f" {page.removeprefix('docs/')}" in nav, f"{page} is not in mkdocs.yml's nav"


def test_the_docs_have_commands_to_check():
    verbs = {argv[0] for _, argv in COMMANDS}
    assert {"run", "predict", "evaluate", "tune", "label", "measure", "report", "export", "compare"} <= verbs
    readme_verbs = {argv[0] for b in readme.blocks() for argv in readme.commands(b)}
    assert {"run", "predict", "compare"} <= readme_verbs


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


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[f"{w}-{a[0]}" for w, a in COMMANDS])
def test_doc_command_parses_and_its_config_resolves(where: str, argv: list[str]) -> None:
    from crackseg.cli import build_config

    if argv[-1] in ("--help", "-h"):  # `crackseg [COMMAND] --help`: the command must exist
        from crackseg.cli import cli

        assert len(argv) == 1 or cli.get_command(click.Context(cli), argv[0]) is not None, f"{where}: {argv}"
        return
    try:
        cmd, ctx = _parse(argv)
    except click.UsageError as exc:
        pytest.fail(f"{where}: crackseg {' '.join(argv)}: {exc.format_message()}")
    if cmd.name in ("run", "show"):
        if any("../shared" in a for a in argv) and not DATASETS.is_dir():
            pytest.skip(missing_data_reason())
        wanted = inspect.signature(build_config).parameters
        kw = {k: v for k, v in ctx.params.items() if k in wanted}
        if kw.get("config_file") and not (REPO / kw["config_file"]).is_file():
            kw["config_file"] = None  # written by an earlier command of the block (crackseg tune): the rest is checked
        data = kw.get("data") or ""
        if data.endswith("/") and not (REPO / data).exists():
            kw["data"] = "photos"  # a stand-in folder the runner makes (photos/): the rest is checked
        cfg = build_config(**kw)  # raises a one-line ConfigError on a bad key or value
        assert cfg.labeler["name"] and cfg.backbone["name"]


def test_placeholder_commands_are_only_where_the_reader_must_supply_something():
    """The commands not checked above need data, weights or machines that are not shipped."""
    skipped = [(b.id, " ".join(argv)) for b in BLOCKS for argv in readme.commands(b)
               if any(p in a for a in argv for p in PLACEHOLDERS)]
    for where, text in skipped:
        assert any(w in text for w in ("crack500", "ViT-L", "--nproc", "torchrun", "$CELL")), (where, text)


def test_blocks_that_cannot_run_here_say_why():
    for b in BLOCKS:
        if any(m in b.text for m in ("path/to/crack500", "torchrun", "download.pytorch.org", "pip install -e")):
            assert b.skip_reason(), b.id
    runnable = [b for b in BLOCKS if not b.skip_reason()]
    assert len(runnable) >= 12  # the quick start, the three workflows, tune, cac, measure, report, export, compare
    for f in readme.doc_files():
        assert f.read_text(encoding="utf-8").count("```bash") == len(readme.blocks(f)), f


def test_block_ids_name_their_file():
    ids = [b.id for b in BLOCKS]
    assert len(ids) == len(set(ids))
    assert "README.md#1" in ids and any(i.startswith("docs/tutorials/photos.md#") for i in ids)
    assert [b.id for b in readme.select(["README.md#2"], BLOCKS)] == ["README.md#2"]
    assert [b.id for b in readme.select(["2"], BLOCKS)] == ["README.md#2"]
    photos = readme.select(["docs/tutorials/photos.md"], BLOCKS)
    assert photos and all(b.file == "docs/tutorials/photos.md" for b in photos)


def test_the_readme_is_short_and_activates_the_environment_before_a_bare_crackseg():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    first_bare = min(b.line for b in readme.blocks() if readme.commands(b))
    activation = text.find("source .venv/bin/activate")
    assert activation != -1 and text[:activation].count("\n") < first_bare, (
        "the README uses a bare `crackseg` before it says how to activate the environment")


def test_the_overlay_colour_key_is_in_the_photo_tutorial():
    text = (REPO / "docs" / "tutorials" / "photos.md").read_text(encoding="utf-8")
    assert re.search(r"\*\*red\*\*", text) and re.search(r"\*\*blue\*\*", text)


# -- the generated reference pages -------------------------------------------------------------------------------
hooks = _load("crackseg_docs", REPO / "docs" / "_hooks" / "crackseg_docs.py")


def test_the_cli_reference_lists_every_command_and_option():
    from crackseg.cli import cli

    text = hooks.cli_markdown()
    ctx = click.Context(cli, info_name="crackseg")
    for name in cli.list_commands(ctx):
        assert f"## `crackseg {name}`" in text, name
    assert "## `crackseg config show`" in text
    assert "--px-per-mm" in text and "--threshold" in text


def test_every_config_key_is_documented():
    import dataclasses

    from crackseg.config.run_config import EvalConfig, PredictConfig, TrainConfig

    rows = hooks.config_keys()
    keys = {key for key, *_ in rows}
    undocumented = [key for key, _, _, doc in rows if not doc.strip()]
    assert not undocumented, f"config keys without a description (add a #: comment or a KEY_DOCS entry): {undocumented}"
    for section, cls in (("train", TrainConfig), ("predict", PredictConfig), ("eval", EvalConfig)):
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name}" in keys
    assert {"data.weak_labels.source", "data.limit_test", "labeler.name", "backbone.name"} <= keys


def test_the_api_reference_covers_crackseg_all():
    import crackseg

    names = [n for group in hooks.api_groups().values() for n in group]
    assert sorted(names) == sorted(n for n in crackseg.__all__ if n != "__version__")
    text = hooks.api_markdown()
    for name, module in ((n, m) for m, group in hooks.api_groups().items() for n in group):
        assert f"::: {module}.{name}" in text


def test_the_components_reference_lists_every_component():
    import crackseg
    from crackseg.plugins import KINDS

    text = hooks.components_markdown()
    for kind in KINDS:
        for name in crackseg.list_components(kind):
            assert f"### `{name}`" in text, (kind, name)
