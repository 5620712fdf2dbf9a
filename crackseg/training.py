"""Phase 2 training loop, written for one process or many (``torchrun``/DDP).

* The global batch is ``train.batch_size`` whatever the number of processes:
  each rank takes ``batch_size / world_size`` images from a
  :class:`~torch.utils.data.DistributedSampler`, so N processes see exactly the
  batches one process would (with linear-scaling rules left to the user: the
  learning rate is for the configured global batch).
* Only trainable parameters are wrapped by DDP (frozen encoders are ignored).
* Rank 0 alone writes the checkpoint, atomically, after every epoch; a checkpoint
  written by N processes resumes on M processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as dist_utils
from .backbone import as_outputs, output_problem, pad_to_multiple, size_multiple
from .checkpoints import load_checkpoint, load_model_state, model_state, save_checkpoint
from .config import TrainConfig
from .distributed import DistEnv
from .errors import CracksegError
from .plugins.blame import blamed, plugin_error


# -- data ------------------------------------------------------------------------
def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Squash an image (bicubic) and its mask (nearest) to ``size × size``."""
    import cv2

    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    msk = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return img, msk


class SegmentationTrainSet(torch.utils.data.Dataset):
    """Resized training images and labels in memory, with deterministic augmentation.

    Augmentation for item ``i`` in epoch ``e`` depends only on (seed, e, i), so a
    resumed or distributed run sees the same images as an uninterrupted single one.
    ``__getitem__`` returns ``(x [3,S,S] normalised, y [1,S,S] in {0,1}, key)``;
    ``key`` names the exact view (``stem|flip…``) or is ``""`` after a mosaic.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        stems: Sequence[str],
        cfg: TrainConfig,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
    ) -> None:
        if not (len(images) == len(labels) == len(stems)):
            raise ValueError("images, labels and stems must have the same length")
        if len(images) == 0:
            raise CracksegError("no training images: the training split is empty")
        self.images = list(images)
        self.labels = list(labels)
        self.stems = list(stems)
        self.cfg = cfg
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def _view(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
        img, lab = self.images[i], self.labels[i]
        tags = []
        if "flip" in self.cfg.augment:
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
                tags.append("h")
            if rng.random() < 0.5:
                img, lab = img[::-1], lab[::-1]
                tags.append("v")
        if "rot90" in self.cfg.augment:
            k = int(rng.integers(0, 4))
            if k:
                img, lab = np.rot90(img, k), np.rot90(lab, k)
                tags.append(f"r{k}")
        return img, lab, self.stems[i] + ("|" + "".join(tags) if tags else "")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        if self.cfg.mosaic_p > 0 and len(self.images) > 1 and rng.random() < self.cfg.mosaic_p:
            img, lab = self._mosaic(i, rng)
            key = ""
        else:
            img, lab, key = self._view(i, rng)
        x = (np.ascontiguousarray(img).transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        y = np.ascontiguousarray(lab)[None].astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y), key

    def _mosaic(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """2×2 mosaic of this image and three random others, squashed back to S×S."""
        import cv2

        idx = [i] + [int(j) for j in rng.integers(0, len(self.images), size=3)]
        s = self.images[i].shape[0]
        canvas = np.zeros((2 * s, 2 * s, 3), np.uint8)
        mcanvas = np.zeros((2 * s, 2 * s), np.uint8)
        for k, j in enumerate(idx):
            r, c = divmod(k, 2)
            canvas[r * s : (r + 1) * s, c * s : (c + 1) * s] = self.images[j]
            mcanvas[r * s : (r + 1) * s, c * s : (c + 1) * s] = self.labels[j]
        img = cv2.resize(canvas, (s, s), interpolation=cv2.INTER_AREA)
        lab = cv2.resize(mcanvas, (s, s), interpolation=cv2.INTER_NEAREST) > 0
        return img, lab


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys, keys = zip(*batch)
    return torch.stack(xs), torch.stack(ys), list(keys)


# -- model wrapper used for training ------------------------------------------------
class _TrainForward(torch.nn.Module):
    """Calls ``forward_train(x, keys)`` when the backbone has one (DDP wraps this)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
        fn = getattr(self.model, "forward_train", None)
        if callable(fn):
            return as_outputs(fn(x, [k or None for k in keys]))
        return as_outputs(self.model(x))


# -- training ----------------------------------------------------------------------
@dataclass
class TrainResult:
    epochs_done: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_s: float = 0.0
    stopped_early: str = ""


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if not params:
        raise CracksegError("the backbone has no trainable parameters; nothing to train")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay)


def train_segmentation(
    model: torch.nn.Module,
    loss_fn: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    train_set: SegmentationTrainSet,
    cfg: TrainConfig,
    *,
    device: str,
    env: DistEnv,
    checkpoint_path: Path,
    meta: dict[str, Any],
    seed: int = 0,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; write ``checkpoint_path`` after every epoch (rank 0).

    ``meta["backbone"]["name"]`` names the backbone in errors: an exception in its forward
    pass or outputs of the wrong shape are one line naming its plugin.
    """
    backbone_name = str((meta.get("backbone") or {}).get("name", ""))
    from tqdm.auto import tqdm

    if cfg.batch_size % env.world_size:
        raise CracksegError(
            f"train.batch_size {cfg.batch_size} is not divisible by the {env.world_size} processes; "
            f"the batch size is global, so choose a multiple of {env.world_size}"
        )
    per_rank = cfg.batch_size // env.world_size
    torch.manual_seed(seed)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        # a training-free backbone (e.g. crackclip-zeroshot): record it and go on to predict
        if env.is_main:
            save_checkpoint(checkpoint_path, {**meta, "model": model_state(model),
                                              "optimizer": None, "scheduler": None, "epoch": 0, "step": 0,
                                              "done": True, "history": []})
        dist_utils.barrier(env)
        if log:
            log("the backbone has no trainable parameters: training skipped")
        return TrainResult(0, 0, [], stopped_early="nothing to train")
    optimizer = make_optimizer(trainable, cfg)
    scheduler = None
    if cfg.lr_step > 0:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)

    start_epoch, step, history = 0, 0, []
    if resume and checkpoint_path.is_file():
        ckpt = load_checkpoint(checkpoint_path)
        load_model_state(model, ckpt["model"])
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = int(ckpt.get("epoch", 0)), int(ckpt.get("step", 0))
        history = list(ckpt.get("history", []))
        if ckpt.get("done"):
            return TrainResult(start_epoch, step, history, stopped_early="already finished")
        if log:
            log(f"resuming from {checkpoint_path} after epoch {start_epoch}")

    use_cuda = device.startswith("cuda")
    amp_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(cfg.precision) if use_cuda else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

    fwd: torch.nn.Module = _TrainForward(model)
    if env.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[torch.device(device).index] if use_cuda else None)
    sampler: torch.utils.data.DistributedSampler[Any] = torch.utils.data.DistributedSampler(
        train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed, drop_last=False
    )
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers,
        collate_fn=_collate, pin_memory=use_cuda, drop_last=False,
    )
    multiple = size_multiple(model)
    t0 = time.perf_counter()
    seen = 0
    stopped = ""
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        _freeze_frozen_bn(model)
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"train epoch {epoch + 1}/{cfg.epochs}", disable=quiet or not env.is_main, leave=False)
        for x, y, keys in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, h, w = pad_to_multiple(x, multiple)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None), \
                    blamed("backbones", backbone_name, "the forward pass"):
                outs = fwd(x, keys)
            problem = output_problem(outs, x.shape[0], x.shape[-2], x.shape[-1])
            if problem:
                raise plugin_error("backbones", backbone_name, problem)
            outs = {k: v[..., :h, :w].float() for k, v in outs.items()}
            loss = loss_fn(outs, y)
            if not torch.isfinite(loss):
                raise CracksegError(f"training diverged: loss is {loss.item()} at step {step}; lower train.lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen += x.shape[0] * env.world_size
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
            stopped = _should_stop(cfg, step, t0, env)
            if stopped:
                break
        if scheduler is not None:
            scheduler.step()
        history.append({"epoch": epoch + 1, "loss": _mean_across(env, total, count), "step": step})
        done = bool(stopped) or epoch + 1 >= cfg.epochs
        if env.is_main:
            save_checkpoint(checkpoint_path, {
                **meta,
                "model": model_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch + 1,
                "step": step,
                "done": done,
                "history": history,
            })
        dist_utils.barrier(env)
        if log:
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]['loss']:.4f}")
        if stopped:
            break
    seconds = time.perf_counter() - t0
    return TrainResult(epoch + 1, step, history, seconds, seen / seconds if seconds > 0 else 0.0, stopped)


def _freeze_frozen_bn(model: torch.nn.Module) -> None:
    """Keep BatchNorm layers whose parameters are all frozen in eval mode (frozen encoders)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def _should_stop(cfg: TrainConfig, step: int, t0: float, env: DistEnv) -> str:
    reason = ""
    if cfg.max_steps and step >= cfg.max_steps:
        reason = f"max_steps {cfg.max_steps}"
    elif cfg.time_budget_s and time.perf_counter() - t0 >= cfg.time_budget_s:
        reason = f"time budget {cfg.time_budget_s:g}s"
    if env.enabled and cfg.time_budget_s:
        # ranks must agree, or one would wait forever in the next all-reduce
        flag = torch.tensor([1.0 if reason else 0.0])
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.broadcast(flag, src=0)
        reason = reason or ("time budget" if flag.item() else "")
        if not flag.item():
            reason = ""
    return reason


def _mean_across(env: DistEnv, total: float, count: int) -> float:
    pairs = dist_utils.all_gather_objects(env, (total, count))
    t = sum(p[0] for p in pairs)
    c = sum(p[1] for p in pairs)
    return t / c if c else math.nan
