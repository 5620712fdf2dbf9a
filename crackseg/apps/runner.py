"""``crackseg run``: dataset → labeler → backbone → predictions → metrics → table, in one run folder.

Every file is written atomically; ``--resume`` continues an interrupted run from its
last checkpoint. Under ``torchrun`` every rank runs this; rank 0 alone writes files.
The folder layout is :mod:`crackseg.config.run_folder`'s.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base import distributed as dist_utils
from crackseg.base.console import warn
from crackseg.base.errors import CracksegError
from crackseg.base.io import write_json, write_text
from crackseg.base.locks import folder_locks
from crackseg.base.sanity import coverage, label_coverage, label_warning, prediction_warning
from crackseg.base.schema import to_dict
from crackseg.base.tables import ods_ois_remark, results_table
from crackseg.base.version import __version__
from crackseg.config.run_config import RunConfig, to_yaml
from crackseg.config.run_folder import (
    CONFIG_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    claimed_run_dir,
    data_label,
    default_out,
)
from crackseg.data.loading import dataset_from_section, split_of
from crackseg.data.samples import Sample
from crackseg.labels.contract import declared_artefacts
from crackseg.labels.preparation import prepare, stage_dirs
from crackseg.plugins import registry
from crackseg.plugins.blame import blamed
from crackseg.plugins.factory import create_from_section, get_entry
from crackseg.training.contract import TrainJob
from crackseg.training.factory import create_logger


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run(cfg: RunConfig, *, resume: bool = False, quiet: bool = False, wait: bool = False) -> dict[str, Any]:
    """Execute a full run; returns the metrics dict (also written to metrics.json).

    The run folder is held for the run's life: another run there is refused (``wait``: this one
    queues behind it). Under ``torchrun`` every rank calls this; a collective that fails because
    another rank died or timed out becomes one clear error line.
    """
    env = dist_utils.detect()
    if not cfg.out:
        cfg.out = default_out(cfg)
    with claimed_run_dir(cfg, resume, wait=wait, enabled=env.is_main):
        if not env.enabled:
            return _run(cfg, resume=resume, quiet=quiet)
        return _distributed_run(cfg, env, resume=resume, quiet=quiet)


def _distributed_run(cfg: RunConfig, env: dist_utils.DistEnv, *, resume: bool, quiet: bool) -> dict[str, Any]:
    try:
        return _run(cfg, resume=resume, quiet=quiet)
    except CracksegError:
        raise
    except (RuntimeError, OSError) as exc:
        if dist_utils.is_peer_failure(exc):
            raise CracksegError(dist_utils.describe_failure(env, exc)) from None
        raise


def _run(cfg: RunConfig, *, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    from crackseg.evaluation.scoring import predict_and_evaluate
    from crackseg.labels.pseudo_labels import write_pseudo_labels
    from crackseg.training.backbones import loss_weights
    from crackseg.training.checkpoints import CHECKPOINT_FILE, write_model_file
    from crackseg.training.engine import Engine, EngineSettings
    from crackseg.training.losses import DeepSupervisionLoss, parse_loss

    t_begin = time.perf_counter()
    env = dist_utils.detect()
    device = dist_utils.resolve_device(cfg.device, env)
    dist_utils.init(env, device)
    log = _printer(quiet, env)
    # 1. every component is built before anything is written, so a bad setting (missing data,
    # missing weights, ...) fails at once and leaves no half-made run folder behind
    seed_everything(cfg.seed)
    dataset = dataset_from_section(cfg.data)
    weak = cfg.data.get("weak_labels")
    train = split_of(dataset, cfg.data["train_split"], cfg.data["limit_train"], cfg.data["name"], weak)
    test = split_of(dataset, cfg.data["test_split"], cfg.data["limit_test"], cfg.data["name"], weak)
    labeler = create_from_section("labelers", cfg.labeler)
    model = create_from_section("backbones", cfg.backbone)
    trainer = create_from_section("trainers", cfg.trainer)
    loggers = [create_logger(name) for name in active_loggers(cfg)]

    # rank 0 alone writes the run folder (checked by claimed_run_dir, under its lock); the others learn the outcome
    problem = None
    if env.is_main:
        try:
            write_text(Path(cfg.out) / CONFIG_FILE, to_yaml(cfg))
        except CracksegError as exc:
            problem = str(exc)
    problem = dist_utils.broadcast_object(env, problem)
    if problem:
        raise CracksegError(problem)
    run_dir = Path(cfg.out)
    t_start = time.perf_counter()
    log(f"data: {cfg.data['name']} — {len(train)} train / {len(test)} test images")

    # 2. pseudo-labels (and what the labeler trains), shared between runs when cfg.shared_dir is set
    artefacts = declared_artefacts(labeler)
    artefact_dirs, label_dir = stage_dirs(cfg, run_dir, artefacts)
    shared = bool(cfg.shared_dir) and env.is_main  # rank 0 holds the locks; the others wait at barriers
    with folder_locks([label_dir], enabled=shared):
        ctx = prepare(labeler, train, name=cfg.labeler["name"], device=device, work_dir=run_dir / "labeler",
                      artefact_dirs=artefact_dirs, seed=cfg.seed, quiet=quiet, env=env, lock=bool(cfg.shared_dir))
        # read after prepare: a component may add a note there (e.g. what its trained model started from)
        notes, placeholders = component_remarks(dataset, labeler, model, trainer)
        label_files = write_pseudo_labels(labeler, train, label_dir, ctx, env, name=cfg.labeler["name"], warn=False)
        # all empty or mostly crack (cached labels included): said now, and in the notes
        label_alert = label_warning(label_coverage(f.binary for f in label_files.values()),
                                    label_dir) if env.is_main else ""
    warn(label_alert)
    log(f"labels: {cfg.labeler['name']} → {label_dir}")

    # 3. backbone training: the trainer, on the engine
    size = int(getattr(model, "fixed_input_size", None) or cfg.train.image_size)
    weights = cfg.loss_weights or loss_weights(model)
    loss_fn = DeepSupervisionLoss(parse_loss(cfg.loss, cfg.loss_params), weights)
    sections = {"data": ("datasets", cfg.data), "labeler": ("labelers", cfg.labeler),
                "backbone": ("backbones", cfg.backbone), "trainer": ("trainers", cfg.trainer)}
    provenance = {key: get_entry(kind, section["name"]).provenance for key, (kind, section) in sections.items()}
    meta = {
        "backbone": {"name": cfg.backbone["name"], "params": {k: v for k, v in cfg.backbone.items() if k != "name"},
                     **provenance["backbone"]},
        "image_size": size,
        "predict": to_dict(cfg.predict),
        "crackseg_version": __version__,
    }
    t = cfg.train
    engine = Engine(model, EngineSettings.for_training(
        t, device=device, env=env, checkpoint_path=run_dir / CHECKPOINT_FILE, meta=meta, seed=cfg.seed, resume=resume,
        quiet=quiet, log=log, loggers=loggers, log_dir=run_dir, log_config=to_dict(cfg)))
    job = TrainJob(model=model, samples=train, labels=label_files, loss=loss_fn, config=t, engine=engine,
                   image_size=size, work_dir=run_dir / "trainer", seed=cfg.seed, backbone=cfg.backbone["name"],
                   dataset=cfg.data["name"])
    try:
        with blamed("trainers", cfg.trainer["name"], "fit()"):
            result = trainer.fit(job)
    finally:
        engine.close()
    if env.is_main:  # the finished run's weights alone (model.pt), for predict / export / evaluate
        write_model_file(run_dir / CHECKPOINT_FILE)

    # 4. predictions + 5. metrics
    train_seconds, images_per_s = result.seconds, result.images_per_s
    if result.stopped_early == "already finished":
        log(f"reusing the finished run in {run_dir}: predicting and evaluating again")
        if not train_seconds:  # a checkpoint written before it kept its training time: the last metrics.json's
            train_seconds, images_per_s = _earlier_training_time(run_dir / METRICS_FILE)
    metrics = predict_and_evaluate(model, test, run_dir, cfg, size, device, env, quiet)
    if env.is_main:
        prediction_alert = _prediction_warning(run_dir, test, metrics, cfg.predict.threshold)
        warn(prediction_alert)
        scoring_alert = warn(str(metrics.get("warning") or ""))  # e.g. an empty test split: said, not only stored
        alerts = [a for a in (label_alert, scoring_alert, prediction_alert) if a]
        note_list = [*placeholders, *notes, *alerts, f"{result.epochs_done} ep @ {size}px"]
        metrics.update({
            "labeler": cfg.labeler["name"], "backbone": cfg.backbone["name"], "data": data_label(cfg.data),
            "train_images": len(train), "test_images": len(test),
            "train_seconds": round(train_seconds, 2), "train_images_per_s": round(images_per_s, 3),
            "epochs_done": result.epochs_done, "history": result.history,
            "total_seconds": round(time.perf_counter() - t_start, 2),
            "notes": "; ".join(note_list),
            "warnings": alerts, "placeholders": placeholders, "plugins": provenance,
        })
        write_json(run_dir / METRICS_FILE, metrics)
        # long notes (a warning quoting an error) are footnotes under the table; a blank line ends the table
        text = "\n\n".join(filter(None, [results_table([{**metrics, "notes": note_list}]), ods_ois_remark(metrics)]))
        write_text(run_dir / RESULTS_FILE, text + "\n")
        print(text)
        log(f"finished in {elapsed_text(time.perf_counter() - t_begin)}; results in {run_dir}/ "
            f"({METRICS_FILE}, {RESULTS_FILE})")
    dist_utils.shutdown(env)
    return metrics


def _earlier_training_time(metrics_file: Path) -> tuple[float, float]:
    """(train_seconds, train_images_per_s) of an earlier ``metrics.json``; (0, 0) when it has none."""
    import json

    try:
        old = json.loads(metrics_file.read_text())
        return float(old.get("train_seconds") or 0.0), float(old.get("train_images_per_s") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0, 0.0


def elapsed_text(seconds: float) -> str:
    """A duration for people: ``8.3 s``, ``1 min 12 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _prediction_warning(run_dir: Path, test: Sequence[Sample], metrics: dict[str, Any], threshold: float) -> str:
    """:func:`crackseg.base.sanity.prediction_warning` of the run's prediction maps (at ODS's threshold when scored)."""
    from crackseg.base.io import read_gray

    ods_t = metrics.get("ods_threshold")
    paths = (run_dir / "predictions" / f"{s.stem}.png" for s in test)
    cov = coverage((read_gray(p) for p in paths if p.is_file()),
                   ods_t if isinstance(ods_t, (int, float)) else threshold)
    return prediction_warning(cov, "ODS threshold" if isinstance(ods_t, (int, float)) else "threshold")


def active_loggers(cfg: RunConfig) -> list[str]:
    """``train.loggers``, or every logger registered as a default (``default=True``) when it names none."""
    return list(cfg.train.loggers) if cfg.train.loggers is not None else registry("loggers").defaults()


def component_remarks(*components: Any) -> tuple[list[str], list[str]]:
    """(notes, placeholders): the ``note`` and ``placeholder`` texts the components carry."""
    notes: list[str] = []
    placeholders: list[str] = []
    for c in components:
        for attr, sink in (("note", notes), ("placeholder", placeholders)):
            text = getattr(c, attr, "")
            if isinstance(text, str) and text.strip() and text.strip() not in sink:
                sink.append(text.strip())
    return notes, placeholders


def _printer(quiet: bool, env: dist_utils.DistEnv) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not quiet and env.is_main:
            print(msg, file=sys.stderr, flush=True)

    return log


