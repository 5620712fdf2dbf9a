"""Config schema validation, --set parsing, resolution order."""

from __future__ import annotations

import pytest

from crackseg.config import diff_configs, resolve_config, to_yaml
from crackseg.errors import ConfigError, UnknownPluginError
from crackseg.layers import load_yaml, parse_set, parse_value


def test_defaults_resolve_to_fsv_unet_synthetic():
    cfg = resolve_config([])
    assert cfg.labeler == {"name": "fsv"}
    assert cfg.backbone["name"] == "unet" and cfg.backbone["encoder"] == "resnet34"
    assert cfg.data["name"] == "synthetic" and cfg.data["n_train"] == 48
    assert cfg.loss == "bce+dice"
    # the synthetic dataset suggests its native size; the smp backbone its epochs
    assert cfg.train.image_size == 128 and cfg.train.epochs == 20


def test_set_values_and_layers():
    cfg = resolve_config([
        {"train": {"epochs": 5}},
        parse_set(["train.lr=1e-4", "backbone.encoder=resnet18", "train.betas=[0.5, 0.999]"]),
    ])
    assert cfg.train.epochs == 5 and cfg.train.lr == pytest.approx(1e-4)
    assert cfg.backbone["encoder"] == "resnet18" and cfg.train.betas == [0.5, 0.999]


def test_parse_value_numbers():
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("abc") == "abc"


@pytest.mark.parametrize(
    "layer, needle",
    [
        ({"train": {"epohcs": 3}}, "config key 'train.epohcs' is unknown; did you mean 'epochs'?"),
        ({"train": {"epochs": "many"}}, "config key 'train.epochs': expected an integer"),
        ({"trian": {}}, "config key 'trian' is unknown; did you mean 'train'?"),
        ({"backbone": {"encodr": "x"}}, "config key 'backbone.encodr' is unknown; did you mean 'encoder'?"),
        ({"train": {"optimizer": "adagrad"}}, "'adagrad' is not one of 'adam', 'adamw', 'sgd'"),
        ({"train": {"augment": ["zoom"]}}, "unknown augmentation 'zoom'"),
        ({"data": {"name": "synthetic", "n_train": -1.5}}, "data.n_train"),
    ],
)
def test_bad_config_names_the_key(layer, needle):
    with pytest.raises(ConfigError) as exc:
        resolve_config([layer])
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as exc:
        resolve_config([{"train": {"zzz": 1}}])
    assert "valid keys under 'train'" in str(exc.value) and "epochs" in str(exc.value)


def test_unknown_plugin_in_config():
    with pytest.raises(UnknownPluginError, match="did you mean 'unet'"):
        resolve_config([{"backbone": {"name": "unett"}}])
    with pytest.raises(UnknownPluginError, match="unknown loss 'dicee'"):
        resolve_config([{"loss": "bce+dicee"}])


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set(["train.epochs"])
    with pytest.raises(ConfigError, match="bad key"):
        parse_set(["train..epochs=3"])


def test_new_plugin_name_drops_old_params():
    cfg = resolve_config([{"backbone": {"name": "unet", "encoder": "resnet18"}}, {"backbone": {"name": "smp-fpn"}}])
    assert cfg.backbone["name"] == "smp-fpn"


def test_yaml_round_trip_and_diff(tmp_path):
    cfg = resolve_config([parse_set(["train.epochs=2"])])
    p = tmp_path / "c.yaml"
    p.write_text(to_yaml(cfg))
    again = resolve_config([load_yaml(p)])
    assert diff_configs(cfg, again) == []
    other = resolve_config([parse_set(["train.epochs=3"])])
    assert diff_configs(cfg, other) == ["train.epochs"]


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_every_shipped_config_resolves():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted((root / "backbones").glob("*.yaml")) + sorted((root / "labelers").glob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        cfg = resolve_config([load_yaml(f)])
        assert cfg.backbone["name"] and cfg.labeler["name"], f
