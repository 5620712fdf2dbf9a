"""Issue 26, "nothing lost, nothing escapes": hostile or odd user input is one short error line, never more.

YAML alias bombs, huge values in error lines, names from a user's file that would become paths
outside ``--out``, a plugin name that is taken, image names with spaces in split files, and
``tune`` options that passed unchecked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_main
from crackseg.base.console import MAX_LINE, MAX_QUOTE, error_line, quote
from crackseg.base.errors import ConfigError
from crackseg.config.layers import load_yaml, parse_set, parse_value


def _one_error_line(r, *needles: str) -> str:
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crackseg: error: "), r.stderr[-2000:]
    assert len(lines[0]) <= MAX_LINE
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. YAML alias bombs ------------------------------------------------------------------------
def _bomb(levels: int, width: int = 10, key: str = "train") -> str:
    """``levels`` nested lists of ``width`` aliases each: a few hundred bytes, ``width ** levels`` strings."""
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    for prev, cur in zip(names, names[1:]):
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * width)}]")
    lines.append(f"{key}: {{epochs: *{names[-1]}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_an_alias_bomb_is_refused_when_read(tmp_path, levels):
    p = tmp_path / "bomb.yaml"
    p.write_text(_bomb(levels))
    assert p.stat().st_size < 1000
    with pytest.raises(ConfigError, match=r"config file .*bomb.yaml: too many YAML aliases .* an alias bomb\?"):
        load_yaml(p)


@pytest.mark.parametrize("levels", [7, 9])
def test_an_alias_bomb_config_is_one_line_exit_2_in_bounded_memory(tmp_path, levels):
    """In a process of its own with 3 GB of address space: the bomb expanded would need far more."""
    p = tmp_path / "bomb.yaml"
    p.write_text(_bomb(levels))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from crackseg.cli import main; main(sys.argv[1:])")
    r = subprocess.run([sys.executable, "-c", code, "config", "show", "--config", str(p)], capture_output=True,
                       text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    _one_error_line(r, "too many YAML aliases", str(p))


def test_an_alias_bomb_in_a_set_value_or_a_prompt_file_is_refused(tmp_path):
    value = "[&a [x, x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a], " \
            "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c], " \
            "[*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]]"
    with pytest.raises(ConfigError, match=r"--set train.epochs: too many YAML aliases"):
        parse_set([f"train.epochs={value}"])
    r = run_main("config", "show", "--set", f"train.epochs={value}")
    _one_error_line(r, "--set train.epochs: too many YAML aliases")
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(_bomb(7, key="crack") + "normal: [a photo]\n")
    pytest.importorskip("crackseg_crackclip")
    from crackseg_crackclip.prompts import load_prompt_file

    with pytest.raises(ConfigError, match=r"prompt file .*prompts.yaml: too many YAML aliases"):
        load_prompt_file(str(prompts))


def test_honest_aliases_and_self_references(tmp_path):
    # anchors reused a few times (what configs/paper/base.yaml does) are fine
    p = tmp_path / "ok.yaml"
    p.write_text("base: &b {lr: 0.1, epochs: 3}\none: *b\ntwo: {<<: *b, lr: 0.2}\nmany: [" + ", ".join(["*b"] * 500)
                 + "]\n")
    data = load_yaml(p)
    assert data["one"] == {"lr": 0.1, "epochs": 3} and data["two"]["lr"] == 0.2 and len(data["many"]) == 500
    # an alias inside its own anchor would make every later walk endless
    p.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="refers to a value that contains it"):
        load_yaml(p)
    assert parse_value("[1, 2]") == [1, 2] and parse_value("a: b") == {"a": "b"}


# -- 2. error lines quote at most MAX_QUOTE characters of a value -------------------------------
def test_quote_cuts_long_values():
    assert quote("abc") == "'abc'" and quote([1, (2,)]) == "[1, (2,)]" and quote(set()) == "set()"
    for value in ("x" * 100_000, ["x"] * 1_000_000, {"k" * 500: "v"}, b"q" * 1000):
        q = quote(value)
        assert len(q) == MAX_QUOTE and q.endswith("…")
    assert len(error_line("y" * 100_000)) == MAX_LINE and error_line("y" * 100_000).endswith("…")


@pytest.mark.parametrize("layer", [
    "train:\n  epochs: {}\n",             # a string where an integer belongs
    "train:\n  optimizer: {}\n",          # not one of the choices
    "train:\n  augment: [{}]\n",          # an unknown augmentation
    "backbone:\n  name: {}\n",            # an unknown component name
    "loss: bce+{}\n",                     # an unknown loss term
])
def test_a_huge_value_in_a_bad_place_gives_a_short_line(tmp_path, layer):
    p = tmp_path / "long.yaml"
    p.write_text(layer.format("z" * 100_000))
    line = _one_error_line(run_main("config", "show", "--config", str(p)), "zzzz")
    assert line.count("z") <= MAX_QUOTE + 10


def test_a_huge_set_value_gives_a_short_line():
    line = _one_error_line(run_main("config", "show", "--set", "train.epochs=" + "z" * 100_000), "train.epochs")
    assert len(line) <= MAX_QUOTE + 100


# -- 3. names from a grid file never lead outside --out ---------------------------------------
def _grid(table_id: str, test_id: str = "a") -> str:
    # one table of a method crackseg lacks: no cell to train, the tables are written at once
    return (f"tests: [{{id: {test_id!r}, run_test: true}}]\n"
            f"tables: [{{id: {table_id!r}, rows: [{{id: m, label: M, missing: not implemented}}]}}]\n")


def test_a_safe_grid_writes_its_table_inside_out(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text(_grid("t1"))
    r = run_main("compare", str(p), "--out", str(tmp_path / "out"), "--no-figures", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "t1" / "table.md").is_file()


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "slash", "dot"])
def test_a_table_id_that_is_a_path_is_one_line_and_writes_nothing_outside(tmp_path, kind):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    outside = tmp_path / "outside"
    table_id = {"absolute": str(outside / "abs"), "dotdot": "../../../outside/up", "slash": "x/y",
                "dot": ".hidden"}[kind]
    p = work / "g.yaml"
    p.write_text(_grid(table_id))
    out = work / "out"
    r = run_main("compare", str(p), "--out", str(out), "--no-figures", "--quiet", cwd=work)
    _one_error_line(r, "tables[0].id", "is not a plain name")
    assert not outside.exists() and not (out / "x").exists()
    assert sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file()) == ["a/b/g.yaml"]


@pytest.mark.parametrize("text, culprit", [
    (_grid("t", test_id=".."), "tests[0].id"),
    ("name: ../../escape\n" + _grid("t"), "name"),
    ("presets: {'../up': {}}\n" + _grid("t"), "preset"),
])
def test_other_grid_names_that_become_paths_are_checked(tmp_path, text, culprit):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    r = run_main("compare", str(p), "--no-figures", "--quiet", cwd=tmp_path)
    _one_error_line(r, f"{culprit}: ", "is not a plain name")
    assert [f.name for f in tmp_path.iterdir()] == ["g.yaml"]


def test_a_report_of_a_results_file_with_a_path_for_a_table_id_is_refused(tmp_path):
    import json

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bars.png").write_bytes(b"not for the report")
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "results.json").write_text(json.dumps({
        "grid": "g", "preset": "", "unit": "%", "tests": [{"id": "a", "label": "A"}],
        "tables": [{"id": "../outside", "title": "T", "caption": "", "footnotes": [], "rows": []}]}))
    _one_error_line(run_main("report", str(grid), "--out", str(tmp_path / "r.html")), "tables[0].id")
    assert not (tmp_path / "r.html").exists()


# -- 4. new-plugin refuses a name that is taken --------------------------------------------------
@pytest.mark.parametrize("name, kind", [("unet", "backbone"), ("unet", "labeler"), ("fsv", "labeler"),
                                        ("datasets", "dataset")])
def test_new_plugin_refuses_a_taken_name(tmp_path, name, kind):
    r = run_main("new-plugin", name, "--kind", kind, "--out", str(tmp_path))
    _one_error_line(r, f"new-plugin {name!r}: the name is taken by", f"e.g. my-{name}")
    assert list(tmp_path.iterdir()) == []
    assert run_main("new-plugin", f"my-{name}", "--kind", kind, "--out", str(tmp_path)).returncode == 0


# -- 5. split files: a whole line is one image name ---------------------------------------------
def _folder(root: Path, stems: list[str]) -> Path:
    from crackseg import write_png

    for stem in stems:
        write_png(root / "images" / f"{stem}.png", np.full((16, 16, 3), 100, np.uint8))
        write_png(root / "masks" / f"{stem}.png", np.zeros((16, 16), np.uint8))
    return root


def test_split_files_list_image_names_with_spaces(tmp_path):
    import crackseg

    root = _folder(tmp_path / "d", ["my crack", "my", "b", "c  two"])
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("my crack\n  b.png  \nimages/c  two.png\n")
    ds = crackseg.create_dataset("folder", root=str(root))
    assert [s.stem for s in ds.samples("test")] == ["my crack", "b", "c  two"]
    assert [s.stem for s in ds.samples("train")] == ["my"]
    # the two-column form (image, then its mask) still names the image
    (root / "splits" / "test.txt").write_text("my crack.png my crack.png\nb.png masks/b.png\n")
    ds = crackseg.create_dataset("folder", root=str(root))
    assert [s.stem for s in ds.samples("test")] == ["my crack", "b"]
    # a line naming no image is reported whole
    (root / "splits" / "test.txt").write_text("my cracks\n")
    with pytest.raises(crackseg.DataError, match="have no image in .*: my cracks"):
        crackseg.create_dataset("folder", root=str(root))


def test_crack500_lists_take_image_names_with_spaces(tmp_path):
    import crackseg
    from crackseg import write_png

    root = tmp_path / "CRACK500"
    for split in ("traincrop", "testcrop"):
        for stem in ("p 1", "p2"):
            write_png(root / split / f"{stem}.jpg", np.full((16, 16, 3), 90, np.uint8))
            write_png(root / split / f"{stem}_mask.png", np.zeros((16, 16), np.uint8))
    (root / "train.txt").write_text("traincrop/p 1.jpg traincrop/p 1_mask.png\ntraincrop/p2.jpg\n")
    (root / "test.txt").write_text("testcrop/p 1.jpg\ntestcrop/p2.jpg testcrop/p2_mask.png\n")
    ds = crackseg.create_dataset("crack500", root=str(root))
    assert sorted(s.stem for s in ds.samples("train")) == ["p 1", "p2"]
    assert sorted(s.stem for s in ds.samples("test")) == ["p 1_test", "p2_test"]  # stems unique within 'all'
    assert all(s.has_mask for s in ds.samples("all"))


# -- 6. tune options that passed unchecked ----------------------------------------------------------
TUNE = ["tune", "--labeler", "ridge", "--data", "synthetic", "--set", "data.n_train=2", "--set", "data.n_test=1",
        "--set", "data.size=48", "--annotated", "1", "--trials", "1", "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("args, needles", [
    (["--param", "threshold="], ["--param 'threshold='", "nothing after '='"]),
    (["--param", "low= "], ["--param 'low= '", "nothing after '='"]),
    (["--prune-every", "0"], ["'--prune-every'", "0 is not in the range"]),
    (["--timeout", "-1"], ["'--timeout'", "-1.0 is not in the range"]),
    (["--timeout", "0"], ["'--timeout'"]),
])
def test_bad_tune_options_are_one_line_usage_errors(tmp_path, args, needles):
    pytest.importorskip("optuna")
    out = tmp_path / "t.yaml"
    r = run_main(*TUNE, "--out", str(out), *args)
    _one_error_line(r, *needles)
    assert list(tmp_path.iterdir()) == []


def test_tune_options_checked_without_the_cli():
    from crackseg.apps.tune_setup import TuneOptions, check_counts
    from crackseg.config.search_space import parse_param_options

    assert parse_param_options(["k", "low=0:1"]) == {"k": "", "low": "0:1"}
    with pytest.raises(ConfigError, match="nothing after '='"):
        parse_param_options(["threshold="])
    for bad, words in (({"prune_every": 0}, "--prune-every 0"), ({"timeout": -1.0}, "--timeout -1.0"),
                       ({"timeout": float("nan")}, "--timeout nan")):
        with pytest.raises(ConfigError, match=words):
            check_counts(TuneOptions(labeler="ridge", data="synthetic", out="x", **bad))
    check_counts(TuneOptions(labeler="ridge", data="synthetic", out="x", prune_every=2, timeout=5.0))
