"""The plugin system: entry points, registries, broken and third-party plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

import crackseg
from conftest import make_plugin_site, run_cli
from crackseg.base.errors import CracksegError, UnknownPluginError
from crackseg.plugins import PluginManager, get_manager
from crackseg.plugins.registry import Entry, Registry, unknown_name_message


def test_builtins_are_loaded_through_entry_points():
    m = get_manager()
    # every built-in plugin package is an entry point of the 'crackseg' group
    for name in ("datasets", "fsv", "losses", "smp"):
        assert name in m.info, name
        assert m.info[name].distribution == "crackseg"
    assert "unet" in crackseg.list_plugins("backbones")
    assert "fsv" in crackseg.list_plugins("labelers")
    assert m.info["fsv"].registered["labelers"] == ["fsv"]


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UnknownPluginError) as exc:
        crackseg.create_backbone("unett")
    msg = str(exc.value)
    assert msg.startswith("unknown backbone 'unett'; did you mean 'unet'?")
    assert "available:" in msg and "smp-fpn" in msg


def test_list_plugins_wildcards():
    names = crackseg.list_plugins("backbones", "smp-unet*")
    assert names == ["smp-unet", "smp-unetplusplus"]
    assert crackseg.list_plugins("losses", "f*") == ["focal"]
    with pytest.raises(CracksegError):
        crackseg.list_plugins("widgets")


def test_duplicate_name_names_both_plugins():
    reg = Registry("losses")
    reg.add(Entry("losses", "bce", print, plugin="one"))
    with pytest.raises(CracksegError) as exc:
        reg.add(Entry("losses", "bce", print, plugin="two"))
    assert "'one'" in str(exc.value) and "'two'" in str(exc.value)


def test_message_without_close_match():
    assert unknown_name_message("loss", "zzz", ["bce"]) == "unknown loss 'zzz' (available: bce)"


class _GoodPlugin:
    @staticmethod
    @crackseg.hookimpl
    def register_losses(register):
        from crackseg_losses import BCEParams, _bce

        register("my-bce", _bce, params=BCEParams, description="test")


class _RaisingPlugin:
    @staticmethod
    @crackseg.hookimpl
    def register_losses(register):
        raise RuntimeError("boom")


class _MisspelledPlugin:
    @staticmethod
    @crackseg.hookimpl
    def register_backbone(register):  # missing 's'
        pass


class _DuplicatePlugin:
    @staticmethod
    @crackseg.hookimpl
    def register_losses(register):
        from crackseg_losses import BCEParams, _bce

        register("my-bce", _bce, params=BCEParams)
        register("other-bce", _bce, params=BCEParams)


def test_broken_hook_is_isolated(capsys):
    m = PluginManager()
    m.add_plugin(_GoodPlugin, "good")
    m.add_plugin(_RaisingPlugin, "bad")
    m.fill_registries()
    assert "my-bce" in m.registries["losses"]
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if "bad" in l]
    assert len(lines) == 1 and "RuntimeError: boom" in lines[0]


def test_misspelled_hook_is_rejected(capsys):
    m = PluginManager()
    assert not m.add_plugin(_MisspelledPlugin, "typo")
    err = capsys.readouterr().err
    assert "unknown hook 'register_backbone'; did you mean 'register_backbones'?" in err
    assert not m.pm.has_plugin("typo")


def test_duplicate_registration_reported(capsys):
    m = PluginManager()
    m.add_plugin(_GoodPlugin, "good")
    m.add_plugin(_DuplicatePlugin, "dup")
    m.fill_registries()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "my-bce" in line]
    assert len(lines) == 1 and "already registered by plugin 'good'" in lines[0] and "'dup'" in lines[0]
    assert m.registries["losses"].get("my-bce").plugin == "good"  # the first one keeps the name
    assert m.registries["losses"].get("other-bce").plugin == "dup"  # only the clashing entry is refused
    assert m.info["dup"].rejected == ["loss 'my-bce' (taken by plugin 'good')"]


def test_plugin_failing_on_import_breaks_nothing(tmp_path):
    env = make_plugin_site(tmp_path, "crackseg_broken", "raise ImportError('needs libfoo')\n", "crackseg-broken",
                           "1.2.3")
    r = run_cli("list", "backbones", "unet", env=env)
    assert r.returncode == 0, r.stderr
    assert "unet" in r.stdout
    warn = [l for l in r.stderr.splitlines() if "crackseg_broken" in l]
    assert len(warn) == 1
    assert "crackseg-broken" in warn[0] and "needs libfoo" in warn[0]


def test_load_plugins_env_restricts(tmp_path):
    r = run_cli("list", "losses", env={"CRACKSEG_LOAD_PLUGINS": "losses"})
    assert r.returncode == 0, r.stderr
    assert "focal" in r.stdout
    r = run_cli("list", "backbones", env={"CRACKSEG_LOAD_PLUGINS": "losses"})
    assert r.returncode == 2 and "no backbones" in r.stderr


def test_plugins_command_lists_builtins():
    r = run_cli("plugins")
    assert r.returncode == 0, r.stderr
    assert f"smp (crackseg {crackseg.__version__})" in r.stdout
    assert "backbones: unet" in r.stdout


def test_every_hook_and_extra_is_documented_in_contributing():
    import inspect

    from crackseg.plugins import EXTRAS, hookspecs
    from crackseg.plugins.manager import HOOK_KINDS

    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text().replace("'", "")
    hooks = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "crackseg_spec")]
    assert sorted(hooks) == sorted([*HOOK_KINDS, "register_commands"])
    sections = text.split("### `")
    for name in hooks:
        sig = f"{name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")
        plain = sig.split(" ->")[0]
        assert plain in text, f"{plain} is not documented in CONTRIBUTING.md"
        if name in HOOK_KINDS:
            section = next(sec for sec in sections if sec.startswith(plain))
            doc = getattr(hookspecs, name).__doc__
            for extra in EXTRAS[HOOK_KINDS[name]]:
                assert f"`{extra}=" in section, f"extra {extra!r} of {name} is not documented in CONTRIBUTING.md"
                assert f"``{extra}=" in doc, f"extra {extra!r} of {name} is not documented in hookspecs.py"
