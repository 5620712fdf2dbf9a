"""The run folder: its file names, its saved config, and the checks before a run writes into it.

A run folder holds ``config.yaml`` (resolved), ``labels/`` (pseudo-labels),
``labeler/`` (what the labeler trained), ``checkpoint.pt`` (after every epoch: weights and the
training state ``--resume`` needs), ``model.pt`` (when training finishes: the weights alone,
what predict / export / evaluate load), ``predictions/`` (uint8 probability PNGs),
``overlays/``, ``metrics.json`` (with ``ods_threshold``, predict's default threshold),
``prf.tsv`` and ``results.md``. While a run works in it, the folder is held by that process
(:func:`claimed_run_dir`): a second run into it is refused, naming the first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crackseg.base.errors import CracksegError
from crackseg.base.locks import hold
from crackseg.config.layers import load_yaml
from crackseg.config.run_config import RunConfig, config_from_dict, diff_configs
from crackseg.plugins.factory import get_entry, path_params

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
RESULTS_FILE = "results.md"


def data_label(data: dict[str, Any]) -> str:
    """How tables name a data section: the name of the folder it reads, else the dataset name."""
    name = str(data.get("name", "data"))
    try:
        folders = [k for k, kind in path_params(get_entry("datasets", name)).items() if kind == "folder"]
    except CracksegError:
        folders = []
    for key in folders:
        if data.get(key):
            return Path(str(data[key])).name or name
    return name


def default_out(cfg: RunConfig) -> str:
    """``runs/<labeler>-<backbone>-<data>``."""
    return str(Path("runs") / f"{cfg.labeler['name']}-{cfg.backbone['name']}-{data_label(cfg.data)}")


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config saved in a run folder, re-validated (one-line errors)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CracksegError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    return config_from_dict(load_yaml(path, what="run config"))


def check_run_dir(cfg: RunConfig, resume: bool) -> Path:
    """The run folder ``cfg.out``, after checking that a run may write there.

    A folder that already holds a run needs ``--resume``, and resuming needs the same
    config (the differing keys are named). Reads only; writes nothing.
    """
    run_dir = Path(cfg.out)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.is_file():
        if not resume:
            raise CracksegError(
                f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out"
            )
        try:
            old = load_run_config(run_dir)
        except CracksegError as exc:
            raise CracksegError(f"{cfg_path}: cannot resume, the saved config is invalid: {exc}") from None
        changed = diff_configs(old, cfg)
        if changed:
            raise CracksegError(
                f"{run_dir}: --resume with a different config ({', '.join(changed[:5])}); "
                f"use the same settings or another --out"
            )
    return run_dir


@contextlib.contextmanager
def claimed_run_dir(cfg: RunConfig, resume: bool, *, wait: bool = False, enabled: bool = True) -> Iterator[Path]:
    """Hold the run folder ``cfg.out`` for the block, then :func:`check_run_dir` it.

    Another process running there refuses this one in one line naming it (``wait``: queue behind it);
    what killed writers left half-written there is removed. ``enabled=False`` (rank > 0 of a torchrun
    job, whose rank 0 holds it) only checks.
    """
    with hold(cfg.out, "a run", wait=wait, enabled=enabled):
        yield check_run_dir(cfg, resume)
