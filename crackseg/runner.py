"""``crackseg run``: dataset → labeler → backbone → predictions → metrics → table.

A run folder holds ``config.yaml`` (resolved), ``labels/``, ``labeler/`` (e.g. the
patch classifier), ``checkpoint.pt``, ``predictions/`` (uint8 probability PNGs),
``overlays/``, ``metrics.json``, ``prf.tsv`` and ``results.md``. Every file is written
atomically; ``--resume`` continues an interrupted run from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import distributed as dist_utils
from .config import DATA_KEYS, RunConfig, config_from_dict, diff_configs, to_yaml
from .errors import CracksegError
from .io import write_json, write_png, write_text

CONFIG_FILE = "config.yaml"


def data_label(data: dict[str, Any]) -> str:
    """How tables name a data section: the dataset name, or a folder's own name."""
    name = str(data.get("name", "data"))
    if data.get("root"):
        return Path(str(data["root"])).name or name
    return name


def default_out(cfg: RunConfig) -> str:
    return str(Path("runs") / f"{cfg.labeler['name']}-{cfg.backbone['name']}-{data_label(cfg.data)}")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _printer(quiet: bool, env: dist_utils.DistEnv) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not quiet and env.is_main:
            print(msg, file=sys.stderr, flush=True)

    return log


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved config saved in a run folder, re-validated (one-line errors)."""
    from .config import load_yaml

    return config_from_dict(load_yaml(Path(run_dir) / CONFIG_FILE, what="run config"))


def prepare_run_dir(cfg: RunConfig, resume: bool) -> Path:
    """Create the run folder or check that ``--resume`` continues the same config."""

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


def run(cfg: RunConfig, *, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Execute a full run; returns the metrics dict (also written to metrics.json).

    Under ``torchrun`` every rank calls this; a collective that fails because another
    rank died or timed out becomes one clear error line.
    """
    env = dist_utils.detect()
    if not env.enabled:
        return _run(cfg, resume=resume, quiet=quiet)
    try:
        return _run(cfg, resume=resume, quiet=quiet)
    except CracksegError:
        raise
    except (RuntimeError, OSError) as exc:
        if _is_dist_failure(exc):
            raise CracksegError(dist_utils.describe_failure(env, exc)) from None
        raise


def _is_dist_failure(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc).lower()
    return name in ("DistBackendError", "DistNetworkError", "DistStoreError") or any(
        w in text for w in ("connection closed", "connection reset", "timed out", "timeout", "broken pipe", "gloo", "nccl")
    )


def _run(cfg: RunConfig, *, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    from . import create_backbone, create_dataset, create_labeler, create_loss
    from .label_stage import run_label_stage
    from .labeling import LabelContext
    from .losses import DeepSupervisionLoss
    from .outputs import input_stats, loss_weights
    from .training import SegmentationTrainSet, resize_pair, train_segmentation

    env = dist_utils.detect()
    device = dist_utils.resolve_device(cfg.device, env)
    dist_utils.init(env, device)
    log = _printer(quiet, env)
    if not cfg.out:
        cfg.out = default_out(cfg)
    # 1. every component is built before anything is written, so a bad setting (missing data,
    # missing CLIP weights, ...) fails at once and leaves no half-made run folder behind
    seed_everything(cfg.seed)
    data_params = {k: v for k, v in cfg.data.items() if k not in DATA_KEYS}
    dataset = create_dataset(cfg.data["name"], **data_params)
    train = _limit(dataset.samples(cfg.data["train_split"]), cfg.data["limit_train"])
    test = _limit(dataset.samples(cfg.data["test_split"]), cfg.data["limit_test"])
    labeler = create_labeler(cfg.labeler["name"], **{k: v for k, v in cfg.labeler.items() if k != "name"})
    model = create_backbone(cfg.backbone["name"], **{k: v for k, v in cfg.backbone.items() if k != "name"})

    # rank 0 alone checks and writes the run folder; the others learn the outcome
    problem = None
    if env.is_main:
        try:
            prepare_run_dir(cfg, resume)
            write_text(Path(cfg.out) / CONFIG_FILE, to_yaml(cfg))
        except CracksegError as exc:
            problem = str(exc)
    problem = dist_utils.broadcast_object(env, problem)
    if problem:
        raise CracksegError(problem)
    run_dir = Path(cfg.out)
    t_start = time.perf_counter()
    log(f"data: {cfg.data['name']} — {len(train)} train / {len(test)} test images")

    # 2. pseudo-labels (shared between runs when cfg.shared_dir is set)
    cls_dir, lab_dir = stage_dirs(cfg, run_dir)
    ctx = LabelContext(device=device, work_dir=cls_dir, seed=cfg.seed, quiet=quiet,
                       classifier_config=dict(cfg.classifier))

    def lock(folder: Path):  # shared stages are locked: parallel runs never compute them twice
        return _main_rank_lock(env, folder.parent / f"{folder.name}.lock") if cfg.shared_dir else contextlib.nullcontext()

    with lock(lab_dir):
        with lock(cls_dir):
            prepare_labeler(labeler, train, ctx, env)
        label_files = run_label_stage(labeler, train, lab_dir, ctx, env)
    log(f"labels: {cfg.labeler['name']} → {lab_dir}")

    # 3. backbone training
    from .io import read_mask

    size = int(getattr(model, "fixed_input_size", None) or cfg.train.image_size)
    images, labels = [], []
    for s in train:
        img = s.load_image()
        lab = read_mask(label_files[s.stem], img.shape[:2])
        ri, rl = resize_pair(img, lab, size)
        images.append(ri)
        labels.append(rl)
    mean, std = input_stats(model)
    train_set = SegmentationTrainSet(images, labels, [s.stem for s in train], cfg.train, mean, std, cfg.seed)
    weights = cfg.loss_weights or loss_weights(model)
    loss_fn = DeepSupervisionLoss(create_loss(cfg.loss, **cfg.loss_params), weights)
    meta = {
        "backbone": {"name": cfg.backbone["name"], "params": {k: v for k, v in cfg.backbone.items() if k != "name"}},
        "image_size": size,
        "predict": _plain(cfg.predict),
        "crackseg_version": _version(),
    }
    ckpt_path = run_dir / "checkpoint.pt"
    result = train_segmentation(
        model, loss_fn, train_set, cfg.train, device=device, env=env, checkpoint_path=ckpt_path,
        meta=meta, seed=cfg.seed, resume=resume, quiet=quiet, log=log,
    )
    if result.stopped_early == "already finished":
        from .outputs import load_checkpoint_state
        from .training import load_checkpoint

        load_checkpoint_state(model, load_checkpoint(ckpt_path)["model"])

    # 4. predictions + 5. metrics
    metrics = predict_and_evaluate(model, test, run_dir, cfg, size, device, env, quiet)
    if env.is_main:
        metrics.update({
            "labeler": cfg.labeler["name"], "backbone": cfg.backbone["name"], "data": data_label(cfg.data),
            "train_images": len(train), "test_images": len(test),
            "train_seconds": round(result.seconds, 2), "train_images_per_s": round(result.images_per_s, 3),
            "epochs_done": result.epochs_done, "history": result.history,
            "total_seconds": round(time.perf_counter() - t_start, 2),
            "notes": _notes(cfg, size, result.epochs_done),
        })
        write_json(run_dir / "metrics.json", metrics)
        table = results_table([metrics])
        write_text(run_dir / "results.md", table + "\n")
        print(table)
    dist_utils.shutdown(env)
    return metrics


def predict_and_evaluate(model, test: Sequence, run_dir: Path, cfg: RunConfig, size: int, device: str,
                         env: dist_utils.DistEnv, quiet: bool) -> dict[str, Any]:
    """Predict the test split (sharded over ranks), write PNGs and compute metrics once over all images."""
    from tqdm.auto import tqdm

    from .inference import Predictor, postprocess
    from .visualize import overlay
    from .metrics import MetricAccumulator, write_prf_table

    pc = cfg.predict
    predictor = Predictor(model, size, device, pc.batch_size, pc.mode, pc.tile_overlap, cfg.train.precision)
    mine = dist_utils.shard(list(test), env)
    acc = MetricAccumulator(cfg.eval.protocol)
    pred_dir = run_dir / "predictions"  # run_dir: the run folder or an eval/<name> folder
    overlay_stems = {s.stem for s in list(test)[: pc.overlays]}
    for start in tqdm(range(0, len(mine), pc.batch_size), desc="predict", disable=quiet or not env.is_main, leave=False):
        chunk = mine[start : start + pc.batch_size]
        imgs = [s.load_image() for s in chunk]
        for s, img, prob in zip(chunk, imgs, predictor.predict_many(imgs)):
            u8 = postprocess(prob, pc.erosion_iterations, pc.minmax_normalize)
            write_png(pred_dir / f"{s.stem}.png", u8)
            gt = s.mask() if s.has_mask else None
            if gt is not None:
                acc.add(s.stem, u8, gt)
            if s.stem in overlay_stems:
                write_png(run_dir / "overlays" / f"{s.stem}.png", overlay(img, u8 > pc.threshold * 255, gt))
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
    write_prf_table(res, run_dir / "prf.tsv")
    return res.to_json()


def prepare_labeler(labeler, train: Sequence, ctx, env: dist_utils.DistEnv) -> None:
    """``labeler.prepare`` on every rank.

    A labeler with ``distributed_prepare = True`` (the CAM labelers: their classifier
    trains with DDP) is prepared by all ranks together; any other is prepared by rank 0
    first (training and writing what it needs), then by the others (which load it).
    """
    if getattr(labeler, "distributed_prepare", False) or not env.enabled:
        labeler.prepare(train, ctx)
        return
    if env.is_main:
        labeler.prepare(train, ctx)
    dist_utils.barrier(env)
    if not env.is_main:
        labeler.prepare(train, ctx)


def evaluate_run(run_dir: str | Path, data: dict[str, Any], name: str, *, device: str = "auto",
                 quiet: bool = False) -> dict[str, Any]:
    """Evaluate a finished run on another dataset: ``RUN/eval/<name>/`` (predictions, metrics.json).

    ``data`` is a data section (``name``, dataset params, optional ``split`` (default
    ``test``) and ``limit``). Cached: a second call with the same checkpoint and data
    returns the saved metrics.
    """
    import json

    from . import create_dataset
    from .predict import load_model

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise CracksegError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    cfg = load_run_config(run_dir)
    model, ckpt = load_model(run_dir)
    if not ckpt.get("done"):
        raise CracksegError(f"{run_dir}: training has not finished; continue it with crackseg run --resume")
    spec = dict(data)
    split = str(spec.pop("split", "test"))
    limit = int(spec.pop("limit", 0) or 0)
    key = stage_key(spec, split, limit, int(ckpt.get("step", 0)), _plain(cfg.predict), cfg.eval.protocol)
    out_dir = run_dir / "eval" / name
    mpath = out_dir / "metrics.json"
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        if old.get("key") == key:
            return old
    dname = spec.pop("name")
    samples = _limit(create_dataset(dname, **spec).samples(split), limit)
    env = dist_utils.DistEnv()
    dev = dist_utils.resolve_device(device, env)
    metrics = predict_and_evaluate(model, samples, out_dir, cfg, int(ckpt.get("image_size", cfg.train.image_size)),
                                   dev, env, quiet)
    metrics.update({"key": key, "data": data_label({"name": dname, **spec}), "split": split, "test_images": len(samples),
                    "labeler": cfg.labeler["name"], "backbone": cfg.backbone["name"]})
    write_json(mpath, metrics)
    return metrics


def stage_key(*parts: Any) -> str:
    """A short stable hash of JSON-able inputs (names the shared stage folders)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage_dirs(cfg: RunConfig, run_dir: Path) -> tuple[Path, Path]:
    """(classifier work dir, pseudo-label dir) for this config.

    Inside the run folder by default; under ``cfg.shared_dir`` keyed by every input
    that changes them, so runs (or ``compare`` cells) with the same labeler, classifier
    settings and training data reuse one classifier and one set of pseudo-labels.
    """
    if not cfg.shared_dir:
        return run_dir / "labeler", run_dir / "labels"
    base = Path(cfg.shared_dir)
    data = {k: v for k, v in cfg.data.items() if k not in ("test_split", "limit_test")}
    cls_key = stage_key(cfg.classifier, data, cfg.seed)
    lab = {k: v for k, v in cfg.labeler.items() if k != "name"}
    lab_key = stage_key(cfg.labeler["name"], lab, cls_key)
    return base / "classifiers" / cls_key, base / "labels" / f"{cfg.labeler['name']}-{lab_key}"


class _main_rank_lock:
    """A file lock held by rank 0 only (other ranks of the same job wait at barriers)."""

    def __init__(self, env: dist_utils.DistEnv, path: Path) -> None:
        self.env, self.path, self._cm = env, path, None

    def __enter__(self) -> None:
        if self.env.is_main:
            from .locks import file_lock

            self._cm = file_lock(self.path)
            self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def results_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown row per run: ODS / OIS / AP in %."""
    head = "| labeler | backbone | data | ODS | OIS | AP | notes |\n|---|---|---|---:|---:|---:|---|"
    lines = [head]
    for r in rows:
        def pct(k: str) -> str:
            v = r.get(k)
            return "–" if v is None else f"{100 * v:.2f}"

        lines.append(
            f"| {r.get('labeler', '')} | {r.get('backbone', '')} | {r.get('data', '')} | "
            f"{pct('ods')} | {pct('ois')} | {pct('ap')} | {r.get('notes', '')} |"
        )
    return "\n".join(lines)


def _notes(cfg: RunConfig, size: int, epochs_done: int) -> str:
    notes = []
    if cfg.backbone.get("random_init"):
        notes.append("random-init CLIP: not a pretrained result")
    if cfg.data["name"] == "synthetic":
        notes.append("synthetic data")
    notes.append(f"{epochs_done} ep @ {size}px")
    return "; ".join(notes)


def _limit(samples: list, n: int) -> list:
    return samples[:n] if n else samples


def _plain(obj: Any) -> Any:
    from .schema import to_dict

    return to_dict(obj)


def _version() -> str:
    from . import __version__

    return __version__
