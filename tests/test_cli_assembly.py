"""The command line's plumbing outside cli.py: config assembly, the tune set-up, --nproc, the label command.

The click commands pass their options by name, so each helper's parameters must stay the
command's option names; these tests catch a renamed option or a forgotten field.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex

import pytest

from crackseg.apps.launch import argv_without_nproc
from crackseg.apps.tune_setup import TuneOptions, tune_command
from crackseg.base.errors import ConfigError
from crackseg.cli import cli
from crackseg.config.assembly import command_run_config, flag_layer, labeler_layers, run_config_from_options


def _params(*path: str) -> set[str]:
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]
    return {p.name for p in cmd.params if p.name}


def test_helpers_take_the_commands_option_names():
    from crackseg.apps.label import label_split

    assert set(inspect.signature(run_config_from_options).parameters) == _params("config", "show")
    assert {f.name for f in dataclasses.fields(TuneOptions)} == _params("tune") - {"quiet"}
    assert set(inspect.signature(label_split).parameters) == _params("label")


def test_flag_layer_holds_only_the_flags_given():
    assert flag_layer() == {}
    assert flag_layer(backbone="b", seed=0, device="cpu") == {"backbone": {"name": "b"}, "seed": 0, "device": "cpu"}


def test_command_run_config_adds_precision_after_set_and_names_the_folder():
    cfg = command_run_config({"sets": ("train.epochs=2",)}, "bf16-mixed")
    assert cfg.train.precision == "bf16-mixed" and cfg.train.epochs == 2
    assert cfg.out  # the default run folder
    assert run_config_from_options(sets=("train.epochs=2",)).out == ""


def test_labeler_layers_refuse_other_keys():
    with pytest.raises(ConfigError, match=r"config key 'train' is not used by `crackseg label`"):
        labeler_layers("label", "x", "synthetic", None, ("train.epochs=2",))


def test_tune_command_parses_back_to_the_same_options():
    opts = TuneOptions(labeler="lab", data="some data", out="o.yaml", split="val", params=("a=0:1",),
                       objective="soft", prune_every=3, no_prune=True, tolerance=-1.0, device="cpu", seed=4,
                       sets=("labeler.x=1",))
    argv = shlex.split(tune_command(opts))
    assert argv[:2] == ["crackseg", "tune"]
    ctx = cli.commands["tune"].make_context("tune", argv[2:])
    parsed = {k: v for k, v in ctx.params.items() if k != "quiet"}
    assert TuneOptions(**parsed) == opts


@pytest.mark.parametrize("argv,expected", [
    (["run", "--nproc", "2", "--seed", "1"], ["run", "--seed", "1"]),
    (["run", "--nproc=2", "-q"], ["run", "-q"]),
    (["run"], ["run"]),
])
def test_argv_without_nproc(argv, expected):
    assert argv_without_nproc(argv) == expected
