"""Config schema validation, --set parsing, resolution order."""

from __future__ import annotations

import pytest

from crackseg import ConfigError, UnknownComponentError
from crackseg.config.layers import load_yaml, parse_set, parse_value
from crackseg.config.run_config import diff_configs, resolve_config, to_yaml


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
    with pytest.raises(UnknownComponentError, match="did you mean 'unet'"):
        resolve_config([{"backbone": {"name": "unett"}}])
    with pytest.raises(UnknownComponentError, match="unknown loss 'dicee'"):
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


# a bad setting in every section of RunConfig: `config show` must refuse exactly what `run` refuses
BAD_SETTINGS = [
    ("seed=abc", "seed"), ("device=tpu", "device"), ("out=[1]", "out"), ("shared_dir=[1]", "shared_dir"),
    ("data.bogus=1", "data.bogus"), ("data.limit_test=-1", "data.limit_test"),
    ("labeler.bogus=1", "bogus"), ("backbone.bogus=1", "bogus"),
    ("trainer.bogus=1", "bogus"), ("loss=nope", "nope"), ("loss_params.focal.alpha=1", "focal"),
    ("loss_weights=3", "loss_weights"), ("train.bogus=1", "train.bogus"), ("train.epochs=0", "train.epochs"),
    ("predict.mode=zoom", "predict.mode"), ("eval.protocol=mine", "eval.protocol"), ("bogus=1", "bogus"),
]


@pytest.mark.parametrize("setting,culprit", BAD_SETTINGS)
def test_config_show_and_run_refuse_the_same_settings(setting, culprit, tmp_path):
    from conftest import run_main

    show = run_main("config", "show", "--set", setting)
    run = run_main("run", "--out", str(tmp_path / "r"), "--set", setting)
    assert show.returncode == run.returncode == 2, (show.stderr, run.stderr)
    assert show.stderr == run.stderr and culprit in show.stderr and len(show.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_config_show_accepts_what_run_accepts_in_every_section():
    from conftest import run_main

    good = ["seed=3", "device=cpu", "data.limit_test=2", "labeler.name=gradcam", "labeler.classifier.epochs=1",
            "backbone.encoder=resnet18", "trainer.name=supervised", "loss=dice", "train.epochs=1",
            "predict.mode=resize", "eval.protocol=paper"]
    r = run_main("config", "show", *[a for s in good for a in ("--set", s)])
    assert r.returncode == 0, r.stderr
    shown = load_yaml_text(r.stdout)
    assert shown["labeler"]["classifier"]["epochs"] == 1 and shown["eval"]["protocol"] == "paper"
    # every resolved setting of every section is printed, not only what was set
    assert {"arch", "patch_size", "max_patches_per_epoch"} <= set(shown["labeler"]["classifier"])
    assert {"image_size", "lr", "optimizer"} <= set(shown["train"])


def test_fixed_input_backbone_shows_the_size_training_uses():
    pytest.importorskip("open_clip")
    cfg = resolve_config([{"backbone": {"name": "crackclip", "image_size": 224}}])
    assert cfg.train.image_size == 224  # not the synthetic data's suggested 128


def load_yaml_text(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)
