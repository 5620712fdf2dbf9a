"""A plugin host third parties can trust: safe collisions, checks at registration and at run time.

The collision tests install packages the way pip leaves them (dist-info with an entry point on a
temporary path) and run crackseg in a subprocess, because the order of entry points is what they
are about; everything else registers plugins in-process (``crackseg.testing.registered_plugin``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
import numpy as np
import pytest

import crackseg
from conftest import make_plugin_site, run_cli, run_main
from crackseg.base.errors import PluginError
from crackseg.plugins import PluginManager
from crackseg.testing import registered_plugin

# -- collisions: entry points, built-ins first ----------------------------------------------------
INTRUDER = '''
from dataclasses import dataclass

import crackseg


@dataclass
class P:
    width: int = 4


def build(width):
    import torch

    return torch.nn.Conv2d(3, 1, 3, padding=1)


@crackseg.hookimpl
def register_backbones(register):
    register("unet", build, params=P, description="an intruder")
    register("intruder-net", build, params=P, description="a fine name")
'''

OVERRIDE = '''
import crackseg
from crackseg_losses import FocalParams, _focal


@crackseg.hookimpl
def register_losses(register):
    register("focal", _focal, params=FocalParams, description="my focal", override=True)
'''


@pytest.fixture(scope="module")
def intruder_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("intruder")
    # entry point "aaa" sorts before every built-in: the load order must not decide who owns "unet"
    make_plugin_site(site, "crackseg_intruder", INTRUDER, "aaa-intruder", "2.0", entry_point="aaa")
    make_plugin_site(site, "crackseg_myfocal", OVERRIDE, "crackseg-myfocal", "0.3", entry_point="myfocal")
    return {"PYTHONPATH": str(site)}


def test_a_third_party_cannot_take_a_builtin_name(intruder_env):
    r = run_cli("list", "backbones", env=intruder_env)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    assert "[smp]" in lines["unet"] and "segmentation-models-pytorch" in lines["unet"]
    assert {f"smp-{a}" for a in ("unet", "fpn", "manet", "segformer", "deeplabv3plus")} <= set(lines)
    assert len([n for n in lines if n.startswith("smp-")]) == 11  # all of them, not a half-registered plugin
    assert "intruder-net" in lines  # only the clashing entry is refused
    warn = [line for line in r.stderr.splitlines() if "'unet'" in line]
    assert len(warn) == 1
    assert "aaa-intruder 2.0" in warn[0] and "distribution crackseg" in warn[0] and "plugin 'smp'" in warn[0]
    r = run_cli("config", "show", env=intruder_env)
    assert r.returncode == 0 and "encoder: resnet34" in r.stdout  # the default still resolves to smp's unet
    r = run_cli("plugins", env=intruder_env)
    assert "REFUSED: backbone 'unet' (taken by plugin 'smp' (distribution crackseg" in r.stdout


def test_override_replaces_a_name_explicitly_and_says_so(intruder_env):
    r = run_cli("list", "losses", "focal", env=intruder_env)
    assert r.returncode == 0 and "my focal  [myfocal]" in r.stdout
    r = run_cli("plugins", "--json", env=intruder_env)
    info = {p["name"]: p for p in json.loads(r.stdout)}
    builtin = f"(distribution crackseg {crackseg.__version__})"
    assert info["myfocal"]["overrides"] == [f"loss 'focal' (was plugin 'losses' {builtin})"]
    assert "focal" not in info["losses"]["registered"]["losses"] and "dice" in info["losses"]["registered"]["losses"]
    assert info["aaa"]["rejected"] == [f"backbone 'unet' (taken by plugin 'smp' {builtin})"]


# -- checks at registration ----------------------------------------------------------------------
@dataclass
class _WrongDefault:
    width: int = "8"  # type: ignore[assignment]


@dataclass
class _TwoFields:
    width: int = 4
    depth: int = 2


def _one_field(width):
    return width


class _Sloppy:
    @staticmethod
    @crackseg.hookimpl
    def register_backbones(register):
        register("wrong-default", _one_field, params=_WrongDefault)
        register("extra-field", _one_field, params=_TwoFields)
        register("typo-extra", _one_field, trian={"epochs": 1})


def test_registration_problems_are_one_line_warnings_naming_the_entry(capsys):
    m = PluginManager()
    m.add_plugin(_Sloppy, "sloppy", distribution="crackseg-sloppy", version="0.2")
    m.fill_registries()
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert all(line.startswith("crackseg: warning: plugin 'sloppy' (distribution crackseg-sloppy 0.2) ")
               for line in err), err
    text = "\n".join(err)
    assert "backbone 'wrong-default': the default of parameter 'width' is '8', which is not an integer" in text
    assert "backbone 'extra-field': its factory '_one_field' does not accept parameter(s) 'depth'" in text
    assert "backbone 'typo-extra': unknown register extra 'trian' ignored" in text
    assert "backbone 'typo-extra': its factory needs 'width'" in text
    # the entries still register (a warning is not a refusal); the problems are kept for --check
    assert set(m.info["sloppy"].registered["backbones"]) == {"wrong-default", "extra-field", "typo-extra"}
    assert len(m.info["sloppy"].warnings) == 4


def test_plugins_check_fails_on_a_problem_and_passes_on_the_builtins():
    r = run_main("plugins", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"plugin 'losses' (distribution crackseg {crackseg.__version__}): ok" in r.stdout
    with registered_plugin(_Sloppy, "sloppy", "crackseg-sloppy", "0.2"):
        r = run_main("plugins", "--check")
        assert r.returncode == 1
        assert "plugin 'sloppy' (distribution crackseg-sloppy 0.2): PROBLEMS" in r.stdout
        assert "  - backbone 'extra-field': its factory '_one_field' does not accept" in r.stdout
        r = run_main("plugins", "--check", "--json")
        assert r.returncode == 1 and len(json.loads(r.stdout)["sloppy"]) == 4


class _BrokenLoss:
    @staticmethod
    @crackseg.hookimpl
    def register_losses(register):
        register("nan-loss", lambda: (lambda logits, target: logits.mean() * float("nan")), description="nan")


def test_plugins_check_runs_the_cheap_contracts():
    with registered_plugin(_BrokenLoss, "broken-loss"):
        r = run_main("plugins", "--check")
    assert r.returncode == 1 and "loss 'nan-loss': returned tensor(nan" in r.stdout


# -- commands -------------------------------------------------------------------------------------
class _Commands:
    @staticmethod
    @crackseg.hookimpl
    def register_commands(cli):
        @cli.command("run")
        def run() -> None:
            click.echo("the intruder's run")

        @cli.command("hello")
        def hello() -> None:
            click.echo("hello")


def test_a_command_name_that_is_taken_is_refused(capsys):
    group = click.Group("crackseg")

    @group.command("run")
    def builtin_run() -> None:
        click.echo("the real run")

    m = PluginManager()
    m.add_plugin(_Commands, "cmds", distribution="crackseg-cmds", version="1.0")
    m.add_commands(group)
    assert group.commands["run"].callback is builtin_run.callback and "hello" in group.commands
    err = capsys.readouterr().err
    assert "command 'run' is already a command of crackseg itself" in err and "crackseg-cmds 1.0" in err
    assert m.info["cmds"].commands == ["hello"]
    assert m.info["cmds"].rejected == ["command 'run' (taken by crackseg itself)"]


# -- checks at run time ---------------------------------------------------------------------------
SMALL = ["--data", "synthetic", "--device", "cpu", "--quiet", "--set", "data.n_train=2", "--set", "data.n_test=1",
         "--set", "data.size=32", "--set", "train.epochs=1", "--set", "train.batch_size=2",
         "--set", "predict.overlays=0"]


def _conv(channels: int = 1):
    import torch

    return torch.nn.Conv2d(3, channels, 3, padding=1)


def _raises():
    raise RuntimeError("cannot find my weights cache")


class _WrongSize:
    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        from crackseg.labels.contract import PseudoLabel

        return [PseudoLabel(np.zeros((5, 5), np.float32), np.zeros((5, 5), bool)) for _ in samples]

    def fingerprint(self):
        return "wrong-size"


class _RunTime:
    @staticmethod
    @crackseg.hookimpl
    def register_backbones(register):
        register("raises", _raises)
        register("two-channels", lambda: _conv(2))
        register("good-net", _conv)

    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        register("wrong-size", _WrongSize)

    @staticmethod
    @crackseg.hookimpl
    def register_losses(register):
        register("vector-loss", lambda: (lambda logits, target: (logits - target).mean(dim=(1, 2, 3))))


@pytest.fixture
def runtime_plugin():
    with registered_plugin(_RunTime, "rt", "crackseg-rt", "1.2"):
        yield


def _one_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_a_factory_that_raises_is_one_line_naming_the_plugin(runtime_plugin, tmp_path):
    r = run_main("run", "--backbone", "raises", *SMALL, "--out", str(tmp_path / "r"))
    assert _one_line(r) == ("crackseg: error: plugin 'rt' (distribution crackseg-rt 1.2): backbone 'raises': "
                            "building it failed: RuntimeError: cannot find my weights cache")
    assert not (tmp_path / "r").exists()  # nothing written
    r = run_main("run", "--backbone", "raises", *SMALL, "--out", str(tmp_path / "r"), "--traceback")
    assert r.returncode == 2 and "Traceback" in r.stderr and "in _raises" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("crackseg: error: plugin 'rt'")


def test_backbone_output_of_the_wrong_shape(runtime_plugin, tmp_path):
    r = run_main("run", "--backbone", "two-channels", *SMALL, "--out", str(tmp_path / "r"))
    line = _one_line(r)
    assert "plugin 'rt' (distribution crackseg-rt 1.2): backbone 'two-channels': output 'out' has shape " \
           "[2, 2, 32, 32]" in line and "expected [2, 1, 32, 32]" in line


def test_pseudo_label_of_the_wrong_size(runtime_plugin, tmp_path):
    r = run_main("run", "--labeler", "wrong-size", "--backbone", "good-net", *SMALL, "--out", str(tmp_path / "r"))
    line = _one_line(r)
    assert "labeler 'wrong-size': the soft map of 'train_0000' is 5x5 but the image is 32x32" in line
    assert not list((tmp_path / "r" / "labels").glob("*.png"))  # no label of the wrong size was written


def test_non_scalar_loss(runtime_plugin, tmp_path):
    r = run_main("run", "--backbone", "good-net", "--loss", "vector-loss", *SMALL, "--out", str(tmp_path / "r"))
    assert "loss 'vector-loss': returned [2], not a scalar tensor" in _one_line(r)


def test_plugin_error_from_the_python_api(runtime_plugin):
    with pytest.raises(PluginError, match="backbone 'raises': building it failed"):
        crackseg.create_backbone("raises")


def test_every_section_is_validated_before_the_run_folder_exists(tmp_path):
    out = tmp_path / "r"
    r = run_main("run", *SMALL, "--loss", "focal+dice", "--set", "loss_params.focal.gamam=2", "--out", str(out))
    assert "config key 'loss_params.focal.gamam' is unknown; did you mean 'gamma'?" in _one_line(r)
    r = run_main("run", *SMALL, "--set", "loss_params.tversky.gamma=2", "--out", str(out))
    assert "loss_params.tversky" in _one_line(r)
    assert not out.exists()


# -- provenance -----------------------------------------------------------------------------------
class _Extras:
    @staticmethod
    @crackseg.hookimpl
    def register_backbones(register):
        register("tinyseg", _conv, description="a tiny net of another package")


def test_a_checkpoint_names_the_package_its_backbone_comes_from(tmp_path):
    out = tmp_path / "r"
    with registered_plugin(_Extras, "extras", "crackseg-extras", "0.1.0"):
        r = run_main("run", "--backbone", "tinyseg", *SMALL, "--out", str(out))
        assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plugins"]["backbone"] == {"plugin": "extras", "distribution": "crackseg-extras",
                                              "version": "0.1.0"}
    assert metrics["plugins"]["data"]["plugin"] == "datasets"
    img = tmp_path / "in" / "a.png"
    crackseg.base.io.write_png(img, np.zeros((32, 32, 3), np.uint8))
    r = run_main("predict", str(out), str(img), "--out", str(tmp_path / "pred"))
    assert _one_line(r) == (f"crackseg: error: {out}: backbone 'tinyseg' comes from crackseg-extras 0.1.0 (plugin "
                            f"'extras'), which is not installed; install it (pip install crackseg-extras) to use "
                            f"this checkpoint")


def test_registered_plugin_rejects_a_misspelled_hook():
    class Typo:
        @staticmethod
        @crackseg.hookimpl
        def register_loss(register):
            pass

    with pytest.raises(AssertionError, match="did you mean 'register_losses'"):
        with registered_plugin(Typo, "typo"):
            pass


# -- the author kit's contracts catch what they promise to ------------------------------------------
class _DropsBuffers:
    @staticmethod
    @crackseg.hookimpl
    def register_backbones(register):
        def build():
            import torch

            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
                    self.bn = torch.nn.BatchNorm2d(4)
                    self.head = torch.nn.Conv2d(4, 1, 1)

                def forward(self, x):
                    return self.head(self.bn(self.conv(x)))

                def checkpoint_state_dict(self):  # forgets the BatchNorm statistics
                    return {k: v for k, v in self.state_dict().items() if "running" not in k}

                def load_checkpoint_state_dict(self, sd):
                    self.load_state_dict(sd, strict=False)

            return Net()

        register("drops-buffers", build)

    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        @dataclass
        class Params:
            threshold: float = 0.5

        class Stale:
            def __init__(self, threshold):
                self.threshold = threshold

            def prepare(self, train, context):
                pass

            def label(self, samples, context):
                from crackseg.labels.contract import PseudoLabel

                out = []
                for s in samples:
                    soft = s.load_image().mean(axis=2).astype(np.float32) / 255
                    out.append(PseudoLabel(soft, soft < self.threshold))
                return out

            def fingerprint(self):  # forgets its parameter: a changed threshold would reuse stale labels
                return "stale"

        register("stale", Stale, params=Params)


def test_contracts_catch_a_checkpoint_without_buffers_and_a_stale_fingerprint(tmp_path):
    from crackseg.testing import BackboneContract, LabelerContract

    class DropsBuffers(BackboneContract):
        name = "drops-buffers"

    class Stale(LabelerContract):
        name = "stale"
        changed_params = {"threshold": 0.2}

    with registered_plugin(_DropsBuffers, "kit"):
        DropsBuffers().test_forward_shapes()  # the rest of the contract holds
        with pytest.raises(AssertionError, match="drops-buffers: a model rebuilt from its checkpoint state"):
            DropsBuffers().test_checkpoint_round_trip()
        Stale().test_labels_have_image_shape(tmp_path)
        with pytest.raises(AssertionError, match=r"stale: changing \{'threshold': 0.2\} left the fingerprint"):
            Stale().test_fingerprint_changes_with_parameters(tmp_path)


def test_a_wrong_default_blames_the_plugin_not_the_user(tmp_path):
    with registered_plugin(_Sloppy, "sloppy", "crackseg-sloppy", "0.2"):
        r = run_main("run", "--backbone", "wrong-default", *SMALL, "--out", str(tmp_path / "r"))
        assert _one_line(r) == ("crackseg: error: plugin 'sloppy' (distribution crackseg-sloppy 0.2): backbone "
                                "'wrong-default': the default of parameter 'width' is '8', which is not an integer; "
                                "set width explicitly or fix the plugin")
