"""Assembling configuration from a command line's options: ``--config``, the flags, ``--set``, ``--prompts``.

``crackseg run`` and ``crackseg config show`` resolve a whole :class:`~crackseg.config.run_config.RunConfig`
(:func:`run_config_from_options`, :func:`command_run_config`); ``crackseg label`` and ``crackseg tune`` only need the
``labeler:`` and ``data:`` sections (:func:`labeler_layers`). The layers are, in order (later wins):
the ``--config`` YAML file, the flags, ``--set`` (and for a run ``--prompts``; see
:func:`crackseg.config.run_config.resolve_config` for the layers below them).
"""

from __future__ import annotations

from typing import Any

from crackseg.base.console import quote
from crackseg.base.errors import ConfigError
from crackseg.config.layers import load_yaml, parse_set
from crackseg.config.run_config import RunConfig, data_spec, demo_layer, merge_layers, resolve_config
from crackseg.config.run_folder import default_out
from crackseg.plugins.factory import default_name

#: top-level keys ``crackseg label`` and ``crackseg tune`` read from --config / --set
LABELER_KEYS: tuple[str, ...] = ("labeler", "data")


def flag_layer(*, labeler: str | None = None, backbone: str | None = None, trainer: str | None = None,
               loss: str | None = None, data: str | None = None, device: str | None = None,
               seed: int | None = None, out: str | None = None) -> dict[str, Any]:
    """The config layer of a run's flags (``--labeler`` ... ``--out``): only the flags that were given."""
    flags: dict[str, Any] = {}
    for section, name in (("labeler", labeler), ("backbone", backbone), ("trainer", trainer)):
        if name:
            flags[section] = {"name": name}
    if data:
        flags["data"] = data_spec(data)
    for key, value in (("loss", loss), ("device", device)):
        if value:
            flags[key] = value
    if seed is not None:
        flags["seed"] = seed
    if out:
        flags["out"] = out
    return flags


def file_layers(config_file: str | None) -> list[dict[str, Any]]:
    """The ``--config`` layer as a list: the loaded YAML file, or none without ``--config``."""
    return [load_yaml(config_file)] if config_file else []


def run_config_from_options(config_file: str | None = None, labeler: str | None = None,
                            backbone: str | None = None, trainer: str | None = None, prompts: str | None = None,
                            loss: str | None = None, data: str | None = None, device: str | None = None,
                            seed: int | None = None, out: str | None = None,
                            sets: tuple[str, ...] = ()) -> RunConfig:
    """The run configuration of the run options (``--config``, the flags, ``--set``, ``--prompts``).

    The keyword names are those of the ``crackseg run`` options; ``out`` stays empty when not given
    (:func:`crackseg.config.run_folder.default_out` names the folder). A bad key or value raises a
    one-line :class:`~crackseg.base.errors.ConfigError`.
    """
    layers = file_layers(config_file)  # read first: a bad file is the error reported
    layers.append(flag_layer(labeler=labeler, backbone=backbone, trainer=trainer, loss=loss, data=data,
                             device=device, seed=seed, out=out))
    layers.append(parse_set(list(sets)))
    return resolve_config(layers, prompts=prompts)


def command_run_config(options: dict[str, Any], precision: str | None = None) -> RunConfig:
    """The run configuration of a command's run options, with ``out`` set (the default run folder if not given).

    ``options`` are the keyword arguments of :func:`run_config_from_options`; ``precision``
    (``--precision``) is one more ``--set train.precision=...``, after the others.
    """
    if precision:
        options = {**options, "sets": (*options.get("sets", ()), f"train.precision={precision}")}
    cfg = run_config_from_options(**options)
    if not cfg.out:
        cfg.out = default_out(cfg)
    return cfg


def labeler_layers(command: str, labeler: str, data: str, config_file: str | None,
                   sets: tuple[str, ...]) -> dict[str, Any]:
    """The merged ``labeler:`` and ``data:`` sections of ``label`` and ``tune`` (``--config``, options, ``--set``).

    ``command`` names the command in the error about a key other than :data:`LABELER_KEYS`. The
    dataset's demo layer (:func:`crackseg.config.run_config.demo_layer`) lies below the options.
    """
    layers = file_layers(config_file)
    layers.append({"labeler": {"name": labeler}, "data": data_spec(data)})
    layers.append(parse_set(list(sets)))
    raw = merge_layers(layers)
    unknown = sorted(set(raw) - set(LABELER_KEYS))
    if unknown:
        raise ConfigError(f"config key {quote(unknown[0])} is not used by `crackseg {command}` "
                          f"(valid: {', '.join(LABELER_KEYS)})")
    data_name = raw["data"].get("name") or default_name("datasets")
    return merge_layers([demo_layer(str(data_name), labeler), raw])
