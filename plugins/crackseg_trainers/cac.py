"""The ``cac`` trainer: Confidence-Aware Co-training (Liang et al., Entropy 2024), as its public code does it.

From ``../shared/paper/baselines-notes.md`` §B4:

1. **Input**: the soft maps of the run's labeler (Grad-CAM in the paper), uint8 0–255.
2. **Dynamic division**, per image: ``t(c)`` is the lowest grey level at which the cumulative
   histogram reaches ``(1 − c)·N``; high-confidence = pixels above ``t(high_fraction)`` (top ≈5 %),
   foreground = above ``t(foreground_fraction)`` (top ≈15 %), the low-confidence band =
   foreground minus high-confidence.
3. **Co-training step**: the loss on batch A against its high-confidence mask, low band ignored
   (``L_A``); one virtual SGD step of the weights on ``L_A`` (``torch.func.functional_call`` on a
   functional copy: no real parameter changes); the loss of the look-ahead weights on batch B
   against its low band, high-confidence pixels ignored (``L_B``); total ``0.7·L_A + 0.3·L_B``,
   differentiated through the virtual step. The loss is the run's (``focal`` with the side
   weights 0.5/0.75/1/0.75/0.5 + fused for ``deepcrack-liu``), masked through its ``weight=``.
4. **Label update** after every epoch: the side output ``side5`` (``out`` for backbones without
   it) → sigmoid → resized to the image → × the previous map → min-max to 0–255, written
   atomically to ``RUN/trainer/maps/e<epoch>/``; the next epoch divides the new maps.

The public code's bug (the fused term of ``L_B`` reuses batch A's prediction and labels) is the
switch ``fused_bug`` (off). Batches A and B come from two independent shuffles of the training
set (this module's reading of "batch A / batch B"). Under ``torchrun`` the inner gradient is
averaged over the processes (differentiably) and the outer gradients are all-reduced, so N
processes compute what one does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from crackseg import (
    ConfigError,
    CracksegError,
    LabelFiles,
    Sample,
    SegmentationTrainSet,
    TrainForward,
    TrainJob,
    TrainResult,
    as_outputs,
    barrier,
    check_batch,
    collate,
    forward_outputs,
    input_stats,
    pad_to_multiple,
    read_gray,
    shard,
    size_multiple,
    start_training,
    write_png,
    write_text,
)

MAPS = "maps"
COMPLETE = ".complete"


def threshold_at(hist_cum: np.ndarray, n: int, fraction: float) -> int:
    """The lowest grey level at which the cumulative histogram reaches ``(1 − fraction)·n``."""
    return int(np.argmax(hist_cum >= (1.0 - fraction) * n))


def divide(soft: np.ndarray, high_fraction: float, foreground_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(high-confidence, low-confidence band) masks of a uint8 map (see the module docstring)."""
    cum = np.cumsum(np.bincount(soft.ravel(), minlength=256))
    high = soft > threshold_at(cum, soft.size, high_fraction)
    foreground = soft > threshold_at(cum, soft.size, foreground_fraction)
    return high, foreground & ~high


def updated_map(previous: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The next label map: ``minmax(prob × previous)`` to 0–255 (``prob`` at the map's size, in [0, 1])."""
    m = prob.astype(np.float64) * (previous.astype(np.float64) / 255.0)
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return np.clip(m * 255.0 + 0.5, 0, 255).astype(np.uint8)


class CacTargets:
    """Target planes (high-confidence, low band) of each image in an epoch, from that epoch's maps (picklable).

    Epoch 0 divides the labeler's soft maps; epoch ``e`` the maps written after epoch ``e``.
    """

    def __init__(self, labels: dict[str, LabelFiles], work_dir: Path, high_fraction: float,
                 foreground_fraction: float) -> None:
        self.initial = {stem: files.soft for stem, files in labels.items()}
        self.work_dir = Path(work_dir)
        self.high_fraction = high_fraction
        self.foreground_fraction = foreground_fraction

    def map_path(self, stem: str, epoch: int) -> Path:
        return self.initial[stem] if epoch == 0 else maps_dir(self.work_dir, epoch) / f"{stem}.png"

    def __call__(self, sample: Sample, shape: tuple[int, int], epoch: int) -> np.ndarray:
        path = self.map_path(sample.stem, epoch)
        soft = read_gray(path)
        if soft.shape != tuple(shape):
            raise CracksegError(f"{path}: label map is {soft.shape[1]}x{soft.shape[0]}, "
                                f"its image {shape[1]}x{shape[0]}")
        high, low = divide(soft, self.high_fraction, self.foreground_fraction)
        return np.stack([high, low])


class CacTrainer:
    """Confidence-aware co-training with pseudo-label refinement after every epoch."""

    def __init__(self, high_fraction: float, foreground_fraction: float, weight_a: float, weight_b: float,
                 inner_lr: float | None, first_order: bool, update_output: str | None, fused_bug: bool) -> None:
        self.high_fraction, self.foreground_fraction = high_fraction, foreground_fraction
        self.weight_a, self.weight_b = weight_a, weight_b
        self.inner_lr, self.first_order = inner_lr, first_order
        self.update_output, self.fused_bug = update_output, fused_bug

    # -- training ----------------------------------------------------------------------------
    def fit(self, job: TrainJob) -> TrainResult:
        engine, cfg = job.engine, job.config
        started = start_training(job)
        if started is None:
            return engine.result()
        optimizer, scheduler = started
        params = engine.trainable()
        targets = CacTargets(job.labels, job.work_dir, self.high_fraction, self.foreground_fraction)
        mean, std = input_stats(job.model)
        data = SegmentationTrainSet(job.samples, targets, job.image_size, cfg, mean, std, job.seed,
                                    dataset=job.dataset)
        loader_a = engine.loader(data, cfg.batch_size, collate_fn=collate)
        loader_b = engine.loader(data, cfg.batch_size, seed_offset=1, collate_fn=collate)
        fwd = TrainForward(engine.model)  # not DDP: the virtual step needs torch.autograd.grad
        multiple = size_multiple(job.model)
        names = [n for n, p in fwd.named_parameters() if p.requires_grad]
        inner_lr = self.inner_lr if self.inner_lr is not None else cfg.lr
        for epoch in engine.epochs():
            total, count = 0.0, 0
            bar = engine.progress(loader_a, loader_b)
            for batch_a, batch_b in bar:
                loss = self.step(job, fwd, names, check_batch(batch_a), check_batch(batch_b), multiple, inner_lr)
                if not torch.isfinite(loss):
                    raise CracksegError(f"training diverged: loss is {loss.item()} at step {engine.step}; "
                                        f"lower train.lr")
                engine.backward_step(loss, optimizer, params, images=batch_a[0].shape[0], sync=True)
                total += float(loss.detach()) * batch_a[0].shape[0]
                count += batch_a[0].shape[0]
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
                if engine.should_stop():
                    break
            if scheduler is not None:
                scheduler.step()
            self.update_maps(job, targets, epoch)
            engine.trainer_state["maps_epoch"] = epoch + 1
            engine.end_epoch(epoch, {"loss": engine.mean_across(total, count)}, optimizer, scheduler)
            if engine.env.is_main and epoch >= 1:  # the checkpoint now points at the newest maps
                shutil.rmtree(maps_dir(job.work_dir, epoch), ignore_errors=True)
        return engine.result()

    def step(self, job: TrainJob, fwd: torch.nn.Module, names: list[str], batch_a: Any, batch_b: Any,
             multiple: int, inner_lr: float) -> torch.Tensor:
        """The co-training loss of one pair of batches (see the module docstring), ready for backward."""
        engine = job.engine
        xa, ta, ka = (v.to(engine.device) if torch.is_tensor(v) else v for v in batch_a)
        xb, tb, kb = (v.to(engine.device) if torch.is_tensor(v) else v for v in batch_b)
        high_a, low_a = ta[:, :1], ta[:, 1:2]
        high_b, low_b = tb[:, :1], tb[:, 1:2]
        with engine.autocast():
            outs_a = forward_outputs(fwd, xa, ka, multiple, job.backbone)
        loss_a = job.loss(outs_a, high_a, weight=1.0 - low_a)
        live = dict(fwd.named_parameters())
        # the total differentiates L_A again: keep its graph; second order unless first_order
        grads = torch.autograd.grad(loss_a, [live[n] for n in names], create_graph=not self.first_order,
                                    retain_graph=True, allow_unused=True)
        grads = [engine_mean(engine, g) if g is not None else None for g in grads]
        fast = {n: live[n] - inner_lr * g if g is not None else live[n] for n, g in zip(names, grads)}
        state = {**dict(fwd.named_buffers()), **live, **fast}

        def look_ahead(x: torch.Tensor, keys: list[str]) -> Any:
            return torch.func.functional_call(fwd, state, (x, keys))

        with engine.autocast():
            outs_b = forward_outputs(look_ahead, xb, kb, multiple, job.backbone)
        if self.fused_bug:
            side = {k: v for k, v in outs_b.items() if k != "out"}
            loss_b = sum((w * job.loss.loss(side[k], low_b, weight=1.0 - high_b)
                          for k, w in job.loss.weights.items() if k in side), start=xa.new_zeros(()))
            loss_b = loss_b + job.loss.weights.get("out", 0.0) * job.loss.loss(outs_a["out"], high_a,
                                                                                weight=1.0 - low_a)
        else:
            loss_b = job.loss(outs_b, low_b, weight=1.0 - high_b)
        return self.weight_a * loss_a + self.weight_b * loss_b

    # -- label update -----------------------------------------------------------------------
    def update_maps(self, job: TrainJob, targets: CacTargets, epoch: int) -> Path:
        """After epoch ``epoch`` (0-based): write the next maps (this rank's share); their folder when all are."""
        engine = job.engine
        folder = maps_dir(job.work_dir, epoch + 1)
        model = engine.model
        was_training = model.training
        model.eval()
        mean = torch.tensor(input_stats(model)[0], device=engine.device).view(1, 3, 1, 1)
        std = torch.tensor(input_stats(model)[1], device=engine.device).view(1, 3, 1, 1)
        multiple, size = size_multiple(model), job.image_size
        with torch.no_grad():
            for s in shard(list(job.samples), engine.env):
                image = s.load_image()
                h, w = image.shape[:2]
                small = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
                x = torch.from_numpy(small).permute(2, 0, 1)[None].float().to(engine.device).div_(255.0)
                x, ph, pw = pad_to_multiple((x - mean) / std, multiple)
                outs = as_outputs(model(x))
                key = self.update_output or ("side5" if "side5" in outs else "out")
                if key not in outs:
                    raise ConfigError(f"trainer 'cac': update_output {key!r} is not an output of the backbone "
                                      f"(it returns: {', '.join(outs)})")
                prob = torch.sigmoid(outs[key][0, 0, :ph, :pw].float()).cpu().numpy()
                prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
                write_png(folder / f"{s.stem}.png", updated_map(read_gray(targets.map_path(s.stem, epoch)), prob))
        model.train(was_training)
        barrier(engine.env)
        if engine.env.is_main:
            write_text(folder / COMPLETE, f"{len(job.samples)}\n")
        barrier(engine.env)
        return folder


def maps_dir(work_dir: Path, epoch: int) -> Path:
    """Where the label maps after ``epoch`` are kept."""
    return Path(work_dir) / MAPS / f"e{epoch:03d}"


def engine_mean(engine: Any, grad: torch.Tensor) -> torch.Tensor:
    """``grad`` averaged over the ranks, differentiably (so the look-ahead is the global one)."""
    if not engine.env.enabled:
        return grad
    import torch.distributed.nn.functional as dist_nn

    return dist_nn.all_reduce(grad) / engine.env.world_size
