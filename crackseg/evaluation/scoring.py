"""Scoring a trained model: predict a list of samples, write the maps, compute metrics once over all of them.

Used for a run's own test split (:mod:`crackseg.apps.runner`) and for any other data a
finished run is evaluated on (``RUN/eval/<name>/``, e.g. the test sets of a grid).
``crackseg evaluate`` scores saved predictions against the masks of a dataset split
(:func:`score_predictions`, :func:`run_test_split`, :func:`split_samples`) without torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from crackseg.base import distributed as dist_utils
from crackseg.base import schema
from crackseg.base.errors import ConfigError, CracksegError, DataError
from crackseg.base.hashing import content_key
from crackseg.base.io import images_by_stem, read_gray, write_json, write_png
from crackseg.base.maps import crack_mask
from crackseg.base.overlays import overlay
from crackseg.base.schema import to_dict
from crackseg.config.layers import load_yaml
from crackseg.config.run_config import EvalConfig, RunConfig, data_spec, resolve_data_section
from crackseg.config.run_folder import CONFIG_FILE, METRICS_FILE, data_label, load_run_config
from crackseg.data.loading import load_samples, test_samples
from crackseg.data.samples import Sample
from crackseg.evaluation.metrics import MetricAccumulator, MetricsResult, _name_some, write_prf_table


def predict_and_evaluate(model: Any, samples: Sequence[Sample], out_dir: Path, cfg: RunConfig, size: int,
                         device: str, env: dist_utils.DistEnv, quiet: bool) -> dict[str, Any]:
    """Predict ``samples`` (sharded over ranks) into ``out_dir/predictions/`` and score them.

    Writes ``predictions/<stem>.png`` (uint8, probability × 255), overlays of the first
    ``cfg.predict.overlays`` images and ``prf.tsv``; returns the metrics (rank 0; ``{}``
    on the other ranks). Histograms are gathered so metrics are computed once.
    """
    from crackseg.prediction.predictor import Predictor, postprocess

    pc = cfg.predict
    predictor = Predictor(model, size, device, pc.batch_size, pc.mode, pc.tile_overlap, cfg.train.precision,
                          name=cfg.backbone["name"])
    mine = dist_utils.shard(list(samples), env)
    acc = MetricAccumulator(cfg.eval.protocol)
    pred_dir = out_dir / "predictions"
    starts = range(0, len(mine), pc.batch_size)
    for start in tqdm(starts, desc="predict", disable=quiet or not env.is_main, leave=False):
        chunk = mine[start : start + pc.batch_size]
        imgs = [s.load_image() for s in chunk]
        for s, prob in zip(chunk, predictor.predict_many(imgs)):
            u8 = postprocess(prob, pc.erosion_iterations, pc.minmax_normalize)
            write_png(pred_dir / f"{s.stem}.png", u8)
            gt = s.mask() if s.has_mask else None
            if gt is not None:
                acc.add(s.stem, u8, gt)
    gathered = dist_utils.all_gather_objects(env, acc.histograms())
    if not env.is_main:
        return {}
    total = MetricAccumulator(cfg.eval.protocol)
    for part in gathered:
        for stem, pos, neg in part:
            total.add_histograms(stem, pos, neg)
    if not total.histograms():
        _write_overlays(list(samples)[: pc.overlays], pred_dir, out_dir / "overlays", pc.threshold)
        why = ("the test split is empty (0 images): nothing predicted or evaluated" if not samples else
               "no test image has a ground-truth mask; predictions written, nothing evaluated")
        return {"ods": None, "ois": None, "ap": None, "n": 0, "protocol": cfg.eval.protocol, "warning": why}
    res = total.result()
    write_prf_table(res, out_dir / "prf.tsv")
    # overlays at the run's ODS threshold: the cut `crackseg predict RUN_DIR` uses by default
    _write_overlays(list(samples)[: pc.overlays], pred_dir, out_dir / "overlays", res.ods_threshold)
    return res.to_json()


def _write_overlays(samples: Sequence[Sample], pred_dir: Path, out: Path, threshold: float) -> None:
    """``out/<stem>.png``: each image with its predicted mask cut at ``threshold`` (and its ground truth)."""
    for s in samples:
        u8 = read_gray(pred_dir / f"{s.stem}.png")
        write_png(out / f"{s.stem}.png", overlay(s.load_image(), crack_mask(u8, threshold),
                                                 s.mask() if s.has_mask else None))


def evaluate_run(run_dir: str | Path, data: dict[str, Any], name: str, *, device: str = "auto",
                 quiet: bool = False) -> dict[str, Any]:
    """Evaluate a finished run on other data: ``RUN/eval/<name>/`` (predictions, prf.tsv, metrics.json).

    ``data`` is a data section (``name``, dataset params) plus optional ``split``
    (default ``test``) and ``limit``. Cached: a second call with the same checkpoint,
    data and settings returns the saved metrics.
    """
    from crackseg.training.factory import load_model

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    model, ckpt = load_model(run_dir)
    if not ckpt.get("done"):
        raise CracksegError(f"{run_dir}: training has not finished; continue it with crackseg run --resume")
    spec = dict(data)
    split = str(spec.pop("split", "test"))
    limit = int(spec.pop("limit", 0) or 0)
    key = content_key(spec, split, limit, int(ckpt.get("step", 0)), to_dict(cfg.predict), cfg.eval.protocol)
    out_dir = run_dir / "eval" / name
    mpath = out_dir / METRICS_FILE
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        if old.get("key") == key:
            return old
    samples = load_samples(spec, split, limit)
    env = dist_utils.DistEnv()
    dev = dist_utils.resolve_device(device, env)
    size = int(ckpt.get("image_size", cfg.train.image_size))
    metrics = predict_and_evaluate(model, samples, out_dir, cfg, size, dev, env, quiet)
    metrics.update({"key": key, "data": data_label(spec), "split": split, "test_images": len(samples),
                    "labeler": cfg.labeler["name"], "backbone": cfg.backbone["name"]})
    write_json(mpath, metrics)
    return metrics


# -- scoring saved predictions (crackseg evaluate; no torch) ---------------------------
def run_test_split(run_dir: str | Path) -> tuple[dict[str, Any], list[Sample], str]:
    """(data section, samples, protocol) of the split a run predicted and scored, from its ``config.yaml``.

    The samples are those :mod:`crackseg.apps.runner` used: ``data.test_split`` of the run's
    dataset, the first ``data.limit_test``. Only the ``data`` and ``eval`` sections are
    read (re-validated), so a run whose backbone needs torch is evaluated without it.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CracksegError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    raw = load_yaml(path, what="run config")
    section = raw.get("data")
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise ConfigError(f"run config {path}: no data section naming its dataset")
    data = resolve_data_section(section)
    protocol = str(schema.build(EvalConfig, raw.get("eval"), "eval").protocol)
    return data, test_samples(data), protocol


def split_samples(data: str, split: str) -> tuple[dict[str, Any], list[Sample]]:
    """(data section, samples) of ``split`` of ``data``: a dataset name or a folder a dataset plugin opens."""
    spec = data_spec(data)
    return spec, load_samples(spec, split)


def score_predictions(pred_dir: str | Path, samples: Sequence[Sample], protocol: str, what: str, *,
                      extra_ok: bool = True) -> MetricsResult:
    """Score ``pred_dir/<stem>.*`` (uint8 probability maps) against the masks of ``samples``, in their order.

    Samples without a mask are skipped (as a run skips them); a sample with a mask but no
    prediction is a :class:`DataError` naming it. Predictions of other stems are ignored,
    or refused when ``extra_ok`` is false. ``what`` names the samples in messages.
    """
    preds = images_by_stem(pred_dir, what="prediction")
    scored = [s for s in samples if s.has_mask]
    if not scored:
        raise DataError(f"{what}: no image has a ground-truth mask; nothing to evaluate")
    missing = [s.stem for s in scored if s.stem not in preds]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {what} have no prediction in {pred_dir}: "
                        f"{_name_some(missing)} (files are paired by stem)")
    if not extra_ok:
        extra = sorted(set(preds) - {s.stem for s in samples})
        if extra:
            raise DataError(f"{len(extra)} prediction(s) in {pred_dir} are not images of {what}: "
                            f"{_name_some(extra)}")
    acc = MetricAccumulator(protocol)
    for s in scored:
        pred = read_gray(preds[s.stem])
        gt = s.mask()
        if pred.shape != gt.shape:
            raise DataError(f"{preds[s.stem]}: prediction is {pred.shape[1]}x{pred.shape[0]} but the mask of "
                            f"{s.source or s.stem} is {gt.shape[1]}x{gt.shape[0]} (W x H); predictions must "
                            f"have the mask's size")
        acc.add(s.stem, pred, gt)
    return acc.result()
