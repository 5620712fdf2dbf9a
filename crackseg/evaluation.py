"""Scoring a trained model: predict a list of samples, write the maps, compute metrics once over all of them.

Used for a run's own test split (:mod:`crackseg.runner`) and for any other data a
finished run is evaluated on (``RUN/eval/<name>/``, e.g. the test sets of a grid).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import distributed as dist_utils
from .config import RunConfig
from .data import Sample, load_samples
from .errors import CracksegError
from .io import write_json, write_png
from .keys import content_key
from .metrics import MetricAccumulator, crack_mask, write_prf_table
from .overlays import overlay
from .run_folder import METRICS_FILE, data_label, load_run_config
from .schema import to_dict


def predict_and_evaluate(model: Any, samples: Sequence[Sample], out_dir: Path, cfg: RunConfig, size: int,
                         device: str, env: dist_utils.DistEnv, quiet: bool) -> dict[str, Any]:
    """Predict ``samples`` (sharded over ranks) into ``out_dir/predictions/`` and score them.

    Writes ``predictions/<stem>.png`` (uint8, probability × 255), overlays of the first
    ``cfg.predict.overlays`` images and ``prf.tsv``; returns the metrics (rank 0; ``{}``
    on the other ranks). Histograms are gathered so metrics are computed once.
    """
    from .inference import Predictor, postprocess  # torch

    pc = cfg.predict
    predictor = Predictor(model, size, device, pc.batch_size, pc.mode, pc.tile_overlap, cfg.train.precision,
                          name=cfg.backbone["name"])
    mine = dist_utils.shard(list(samples), env)
    acc = MetricAccumulator(cfg.eval.protocol)
    pred_dir = out_dir / "predictions"
    overlay_stems = {s.stem for s in list(samples)[: pc.overlays]}
    starts = range(0, len(mine), pc.batch_size)
    for start in tqdm(starts, desc="predict", disable=quiet or not env.is_main, leave=False):
        chunk = mine[start : start + pc.batch_size]
        imgs = [s.load_image() for s in chunk]
        for s, img, prob in zip(chunk, imgs, predictor.predict_many(imgs)):
            u8 = postprocess(prob, pc.erosion_iterations, pc.minmax_normalize)
            write_png(pred_dir / f"{s.stem}.png", u8)
            gt = s.mask() if s.has_mask else None
            if gt is not None:
                acc.add(s.stem, u8, gt)
            if s.stem in overlay_stems:
                write_png(out_dir / "overlays" / f"{s.stem}.png", overlay(img, crack_mask(u8, pc.threshold), gt))
    gathered = dist_utils.all_gather_objects(env, acc.histograms())
    if not env.is_main:
        return {}
    total = MetricAccumulator(cfg.eval.protocol)
    for part in gathered:
        for stem, pos, neg in part:
            total.add_histograms(stem, pos, neg)
    if not total.histograms():
        return {"ods": None, "ois": None, "ap": None, "n": 0, "protocol": cfg.eval.protocol,
                "warning": "no test image has a ground-truth mask; predictions written, nothing evaluated"}
    res = total.result()
    write_prf_table(res, out_dir / "prf.tsv")
    return res.to_json()


def evaluate_run(run_dir: str | Path, data: dict[str, Any], name: str, *, device: str = "auto",
                 quiet: bool = False) -> dict[str, Any]:
    """Evaluate a finished run on other data: ``RUN/eval/<name>/`` (predictions, prf.tsv, metrics.json).

    ``data`` is a data section (``name``, dataset params) plus optional ``split``
    (default ``test``) and ``limit``. Cached: a second call with the same checkpoint,
    data and settings returns the saved metrics.
    """
    from .checkpoints import load_model  # torch

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
