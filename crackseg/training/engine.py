"""The one training engine: device, distribution, precision, checkpoints, resume, budgets, progress, history, logs.

Every training loop in crackseg runs on it: the trainers (``supervised``, ``cac``, a third
party's) and the CAM labelers' patch classifier. It is the only place that wraps models in
``DistributedDataParallel``, scales gradients (``GradScaler``) and writes training checkpoints.

* **Distribution** (``torchrun``): only trainable parameters are wrapped; the batch size is
  global, each rank takes ``batch_size / world_size`` images from a ``DistributedSampler``, so
  N processes see the batches one process would. Rank 0 alone writes; a checkpoint written by
  N processes resumes on M.
* **Checkpoints** (format 2): written atomically after an epoch (every epoch, or once ``checkpoint_every_s``
  passed since the last one; always after the last epoch, and on Ctrl-C or an error) with the model's state,
  optimizer, scheduler, gradient scaler, epoch, step, history, training time, the trainer's own state and the
  caller's metadata; ``--resume`` continues from the last one. A copy of the state is written in
  a background thread while the next epoch trains (:class:`~crackseg.training.checkpoints.CheckpointWriter`);
  the last checkpoint is on disk before training returns.
* **Data** streams from disk through a ``DataLoader`` with worker processes
  (``train.num_workers``; memory does not grow with the number of training images).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from crackseg.base import distributed as dist_utils
from crackseg.base.allocator import tune_for_training
from crackseg.base.distributed import DistEnv
from crackseg.base.errors import CracksegError
from crackseg.config.run_config import TrainConfig
from crackseg.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointWriter,
    load_model_state,
    model_state,
    read_checkpoint,
    snapshot,
)
from crackseg.training.precision import amp_dtype
from crackseg.training.result import TrainResult

#: what ``train.num_workers: null`` means: one loader process per spare core, at most 4
MAX_AUTO_WORKERS = 4


def auto_workers(requested: int | None) -> int:
    """``requested``, or (null) one worker per core beyond the first, at most :data:`MAX_AUTO_WORKERS`."""
    if requested is not None:
        return requested
    return max(0, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 1))


@dataclass
class EngineSettings:
    """What an :class:`Engine` needs besides the model: where, how long, how precise, where it writes."""

    #: ``cpu``, ``cuda``, ``cuda:1``: resolved already (:func:`crackseg.resolve_device`)
    device: str
    #: the training checkpoint, written atomically after every epoch
    checkpoint_path: Path
    epochs: int
    #: this process's place in a torchrun job (a single process by default)
    env: DistEnv = field(default_factory=DistEnv)
    #: the caller's metadata kept in every checkpoint (e.g. how to rebuild the backbone)
    meta: dict[str, Any] | None = None
    #: what the checkpoint holds: ``segmentation`` or another kind (``patch-classifier``)
    kind: str = "segmentation"
    #: ``32``, ``16-mixed`` or ``bf16-mixed`` (mixed precision only on CUDA)
    precision: str = "32"
    grad_clip: float = 0.0
    #: stop after this many optimiser steps / seconds of training (0: no limit)
    max_steps: int = 0
    time_budget_s: float = 0.0
    #: loader processes (None: one per spare core, at most :data:`MAX_AUTO_WORKERS`)
    num_workers: int | None = 0
    #: write the checkpoint after an epoch only once this many seconds passed since the last one (0: every epoch)
    checkpoint_every_s: float = 0.0
    seed: int = 0
    #: continue from ``checkpoint_path`` when it exists
    resume: bool = False
    quiet: bool = False
    #: where progress lines go (nothing by default)
    log: Callable[[str], None] | None = None
    #: training loggers (``crackseg list loggers``) and their folder; the config they record
    loggers: Sequence[Any] = ()
    label: str = "train"
    log_dir: Path | None = None
    log_config: dict[str, Any] | None = None

    @classmethod
    def for_training(cls, train: TrainConfig, **settings: Any) -> EngineSettings:
        """Settings whose precision, gradient clipping, budgets and loader processes come from a ``train:`` section."""
        return cls(precision=train.precision, grad_clip=train.grad_clip, max_steps=train.max_steps,
                   time_budget_s=train.time_budget_s, num_workers=train.num_workers, epochs=train.epochs,
                   checkpoint_every_s=train.checkpoint_every_s, **settings)


class Engine:
    """The infrastructure of one training run (see the module docstring).

    A trainer uses it like this::

        started = start_training(job)    # crackseg.training.trainer_tools: seed, optimizer, scheduler, restore
        if started is None:               # a finished checkpoint (or nothing trainable): nothing to do
            return engine.result()
        optimizer, scheduler = started
        net = engine.wrap(module)
        loader = engine.loader(dataset, cfg.batch_size)
        for epoch in engine.epochs():
            for batch in engine.progress(loader):
                with engine.autocast():
                    loss = ...
                engine.backward_step(loss, optimizer, images=len(batch))
                if engine.should_stop():
                    break
            engine.end_epoch(epoch, {"loss": engine.mean_across(total, count)}, optimizer, scheduler)
        return engine.result()
    """

    def __init__(self, model: torch.nn.Module, settings: EngineSettings | None = None, **legacy: Any) -> None:
        """``settings``: everything but the model (:class:`EngineSettings`).

        The keyword arguments of crackseg 0.1 (``Engine(model, device=..., env=..., ...)``) still work, with a
        ``DeprecationWarning``, until 0.3.
        """
        if settings is None:
            warnings.warn("Engine(model, device=..., ...) is deprecated since crackseg 0.2 and goes away in 0.3: use "
                          "Engine(model, crackseg.EngineSettings(device=..., ...))", DeprecationWarning, stacklevel=2)
            settings = EngineSettings(**legacy)
        elif legacy:
            raise TypeError(f"Engine: give either settings or keyword arguments, not both ({', '.join(legacy)})")
        self.settings = st = settings
        self.device = st.device
        self.env = st.env
        self.model = model.to(st.device)
        self.checkpoint_path = Path(st.checkpoint_path)
        self.epochs_total = st.epochs
        self.meta = dict(st.meta or {})
        self.kind = st.kind
        self.grad_clip = st.grad_clip
        self.max_steps = st.max_steps
        self.time_budget_s = st.time_budget_s
        self.num_workers = auto_workers(st.num_workers)
        self.seed = st.seed
        self.resume = st.resume
        self.quiet = st.quiet
        self.log = st.log or (lambda _msg: None)
        self.loggers = list(st.loggers)
        self.label = st.label
        self.log_dir = Path(st.log_dir) if st.log_dir is not None else self.checkpoint_path.parent
        self.log_config = dict(st.log_config or {})
        self._loggers_started = False
        self.amp_dtype = amp_dtype(st.precision, st.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        #: progress: the next epoch to run, optimiser steps so far, one row per finished epoch
        self.start_epoch, self.step = 0, 0
        self.history: list[dict[str, Any]] = []
        #: the trainer's own state, saved in every checkpoint and restored with it
        self.trainer_state: dict[str, Any] = {}
        self.done = False
        self.stopped = ""
        self._samplers: list[Any] = []
        self._datasets: list[Any] = []
        self._t0 = 0.0
        self._seen = 0
        #: training time and images of the sessions before a resume (kept in the checkpoint)
        self._prior_seconds, self._prior_seen = 0.0, 0
        #: the training time the finished checkpoint records (what result() reports once training is done)
        self._final_seconds: float | None = None
        #: the number of finished epochs (what the next checkpoint records)
        self._epoch = 0
        self._writer = CheckpointWriter()
        self.checkpoint_every_s = st.checkpoint_every_s
        #: when the last checkpoint write started (perf_counter); the last finished epoch's state not yet written
        self._last_write: float | None = None
        self._pending: dict[str, Any] | None = None

    # -- the model ------------------------------------------------------------------
    def trainable(self) -> list[torch.nn.Parameter]:
        """The parameters that train (frozen encoders are left out)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` wrapped in DistributedDataParallel under torchrun (only trainable parameters), else itself."""
        if not self.env.enabled:
            return module
        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(module, device_ids=ids)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision on CUDA when ``train.precision`` asks for it; nothing otherwise."""
        return torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    # -- data ------------------------------------------------------------------------
    def loader(self, dataset: Any, batch_size: int, *, seed_offset: int = 0,
               collate_fn: Callable[..., Any] | None = None) -> torch.utils.data.DataLoader[Any]:
        """A loader of this rank's share of ``batch_size``-image global batches, shuffled per epoch.

        ``seed_offset`` gives a second, independent order over the same data. A dataset with
        ``epoch_keys = True`` gets ``(epoch, index)`` keys (its loader processes live for the
        whole run and still know the epoch); one with ``set_epoch(epoch)`` is told each epoch.
        """
        if batch_size % self.env.world_size:
            raise CracksegError(
                f"train.batch_size {batch_size} is not divisible by the {self.env.world_size} processes; "
                f"the batch size is global, so choose a multiple of {self.env.world_size}"
            )
        sampler: torch.utils.data.DistributedSampler[Any] = torch.utils.data.DistributedSampler(
            dataset, num_replicas=self.env.world_size, rank=self.env.rank, shuffle=True,
            seed=self.seed + seed_offset, drop_last=False,
        )
        self._samplers.append(sampler)
        if hasattr(dataset, "set_epoch"):
            self._datasets.append(dataset)
        workers = self.num_workers
        keyed = bool(getattr(dataset, "epoch_keys", False))
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size // self.env.world_size, sampler=_EpochKeys(sampler) if keyed else sampler,
            num_workers=workers, collate_fn=collate_fn, pin_memory=self.device.startswith("cuda"), drop_last=False,
            # long-lived workers only for epoch-keyed datasets: others learn the epoch from set_epoch()
            persistent_workers=workers > 0 and keyed,
        )

    def shard(self, batch: Any) -> Any:
        """This rank's share of a global batch that every rank drew identically (strided)."""
        return batch[self.env.rank :: self.env.world_size] if self.env.enabled else batch

    # -- checkpoints -----------------------------------------------------------------
    def nothing_to_train(self) -> bool:
        """True (and a finished checkpoint written) when the model has no trainable parameter."""
        if self.trainable():
            return False
        self.done, self.stopped = True, "nothing to train"
        if self.env.is_main:
            self._write(None, None)
        dist_utils.barrier(self.env)
        self.log("the backbone has no trainable parameters: training skipped")
        return True

    def restore(self, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None) -> bool:
        """With ``resume``, load the last checkpoint (model, optimizer, scheduler, progress, trainer state).

        Returns True when that checkpoint is finished: there is nothing left to train.
        """
        if not (self.resume and self.checkpoint_path.is_file()):
            return False
        ckpt = read_checkpoint(self.checkpoint_path, self.kind)
        load_model_state(self.model, ckpt["model"])
        if optimizer is not None and ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch, self.step = int(ckpt.get("epoch", 0)), int(ckpt.get("step", 0))
        self._epoch = self.start_epoch
        self.history = list(ckpt.get("history", []))
        self.trainer_state = dict(ckpt.get("trainer") or {})
        self._prior_seconds = float(ckpt.get("train_seconds") or 0.0)
        self._prior_seen = int(ckpt.get("images_seen") or 0)
        if ckpt.get("done"):
            self.done, self.stopped = True, "already finished"
            self._final_seconds = self._prior_seconds
            return True
        self.log(f"resuming from {self.checkpoint_path} after epoch {self.start_epoch}")
        return False

    def _write(self, optimizer: torch.optim.Optimizer | None, scheduler: Any) -> None:
        if self.done:  # nothing is left to resume: a finished checkpoint keeps no optimizer state (a third the size)
            optimizer, scheduler = None, None
        payload = {
            **self.meta,
            "format": CHECKPOINT_FORMAT, "kind": self.kind,
            "model": model_state(self.model),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() and not self.done else None,
            "epoch": self._epoch, "step": self.step, "done": self.done, "history": self.history,
            "trainer": self.trainer_state,
            # the whole training's time and images so far, this session's and the resumed ones'
            "train_seconds": self._training_seconds(), "images_seen": self._prior_seen + self._seen,
        }
        if self.done:
            self._final_seconds = payload["train_seconds"]
        now = time.perf_counter()
        started = self._last_write if self._last_write is not None else (self._t0 or now)
        if self.done or self.checkpoint_every_s <= 0 or now - started >= self.checkpoint_every_s:
            # the last checkpoint is on disk before fit() returns (model.pt is made from it); the others are
            # written in the background while the next epoch trains
            self._pending, self._last_write = None, now
            self._writer.write(self.checkpoint_path, payload, wait=self.done)
        else:  # too soon after the last one: kept in memory (in the last epoch's buffers), written by flush()
            self._pending = snapshot(payload, reuse=self._pending)

    def flush(self) -> None:
        """Put the last finished epoch's checkpoint on disk (if ``checkpoint_every_s`` held it back) and wait for
        the write in flight: after it, ``--resume`` continues from the last finished epoch."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._writer.write(self.checkpoint_path, pending, wait=True, frozen=True)
        self._writer.wait()

    # -- the loop --------------------------------------------------------------------
    def epochs(self, limit: int | None = None) -> Iterator[int]:
        """Epoch indices from the resumed one to the last (at most ``limit`` of them in this call).

        Each starts in training mode (BatchNorm layers without trainable parameters stay in eval
        mode) with its epoch number given to the loaders' samplers and datasets.
        """
        tune_for_training()  # the allocator keeps freed step buffers (crackseg.base.allocator)
        self._t0 = time.perf_counter()
        if self.env.is_main and not self._loggers_started:
            for logger in self.loggers:  # after restore(): a resumed run's loggers get its history
                logger.start(self.log_dir, self.log_config, list(self.history))
            self._loggers_started = True
        last = self.epochs_total if limit is None else min(self.epochs_total, self.start_epoch + max(1, limit))
        for epoch in range(self.start_epoch, last):
            self._epoch = epoch
            self.model.train()
            _freeze_frozen_bn(self.model)
            for s in self._samplers:
                s.set_epoch(epoch)
            for d in self._datasets:
                d.set_epoch(epoch)
            yield epoch
            if self.stopped:
                break
        self.flush()  # a trainer that trains some epochs now (limit) and more later finds them all on disk

    def progress(self, *sources: Iterable[Any], total: int | None = None, desc: str = "") -> Any:
        """The batches of ``sources`` (one loader, or several zipped into tuples) with a progress bar on rank 0.

        Loader processes start here, with Ctrl-C held back while they fork: an interrupt that
        arrived inside the fork would otherwise be lost (Python ignores exceptions raised in
        at-fork callbacks); it is delivered right after.
        """
        with _sigint_deferred():
            iterators = [iter(s) for s in sources]
        if total is None:
            total = len(sources[0]) if hasattr(sources[0], "__len__") else None  # type: ignore[arg-type]
        text = desc or f"{self.label} epoch {self._epoch + 1}/{self.epochs_total}"
        batches = iterators[0] if len(iterators) == 1 else zip(*iterators)
        return tqdm(batches, total=total, desc=text, disable=self.quiet or not self.env.is_main, leave=False)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      params: Sequence[torch.nn.Parameter] | None = None, images: int = 0,
                      sync: bool = False) -> None:
        """Backward, clip (``train.grad_clip``), optimiser step, with gradient scaling under fp16.

        ``images``: this rank's batch size, for the images/s figure. ``sync``: average the
        gradients over the ranks here (for a model that is not wrapped by :meth:`wrap`).
        """
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if sync:
            self.all_reduce_gradients(list(params) if params is not None else self.trainable())
        if self.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(params) if params is not None else self.trainable(), self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        self.step += 1
        self._seen += images * self.env.world_size

    def all_reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Average gradients over the ranks (for trainers that cannot use DistributedDataParallel)."""
        if not self.env.enabled:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.env.world_size)

    def should_stop(self) -> str:
        """Why training must stop now (``train.max_steps``, ``train.time_budget_s``), or ``""``; ranks agree."""
        reason = ""
        if self.max_steps and self.step >= self.max_steps:
            reason = f"max_steps {self.max_steps}"
        elif self.time_budget_s and time.perf_counter() - self._t0 >= self.time_budget_s:
            reason = f"time budget {self.time_budget_s:g}s"
        if self.env.enabled and self.time_budget_s:
            # ranks must agree, or one would wait forever in the next all-reduce
            flag = torch.tensor([1.0 if reason else 0.0])
            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.broadcast(flag, src=0)
            reason = (reason or "time budget") if flag.item() else ""
        if reason:
            self.stopped = reason
        return reason

    def mean_across(self, total: float, count: int) -> float:
        """``sum(total) / sum(count)`` over the ranks."""
        pairs = dist_utils.all_gather_objects(self.env, (total, count))
        t = sum(p[0] for p in pairs)
        c = sum(p[1] for p in pairs)
        return t / c if c else math.nan

    def end_epoch(self, epoch: int, row: dict[str, Any], optimizer: torch.optim.Optimizer | None = None,
                  scheduler: Any = None) -> None:
        """Record the epoch (history, loggers) and write the checkpoint (rank 0); all ranks meet here."""
        self._epoch = epoch + 1
        entry = {"epoch": epoch + 1, **row, "step": self.step}
        self.history.append(entry)
        self.done = bool(self.stopped) or epoch + 1 >= self.epochs_total
        if self.env.is_main:
            for logger in self.loggers:
                logger.log_epoch(entry)
            self._write(optimizer, scheduler)
        dist_utils.barrier(self.env)
        loss = row.get("loss")
        self.log(f"{self.label}: epoch {epoch + 1}/{self.epochs_total}"
                 + (f": loss {loss:.4f}" if isinstance(loss, float) else ""))

    def result(self) -> TrainResult:
        """What the trainer returns: epochs done, steps, history, training time, images/s (over every session of a
        resumed training; a finished checkpoint that is reused keeps its time).

        A checkpoint held back or still in flight is written first (its failure is raised here).
        """
        self.flush()
        seconds = self._final_seconds if self._final_seconds is not None else self._training_seconds()
        return TrainResult(self._epoch, self.step, list(self.history), seconds,
                           (self._prior_seen + self._seen) / seconds if seconds > 0 else 0.0, self.stopped)

    def _training_seconds(self) -> float:
        """Seconds of training so far: this session's and, after a resume, the earlier sessions' (a finished
        run that is reused keeps its training time)."""
        return self._prior_seconds + (time.perf_counter() - self._t0 if self._t0 else 0.0)

    def close(self) -> None:
        """Finish the checkpoint write in flight, close the loggers (rank 0).

        After a normal end the last checkpoint was written already; after an error or Ctrl-C (being raised),
        the last finished epoch's state is written, and a failure to write it is left to the error being raised.
        """
        with contextlib.suppress(Exception):
            self.flush()
        if self.env.is_main and self._loggers_started:
            for logger in self.loggers:
                with contextlib.suppress(Exception):
                    logger.close()


class _EpochKeys(torch.utils.data.Sampler[tuple[int, int]]):
    """A sampler's indices as ``(epoch, index)`` keys."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler[Any]) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Block SIGINT in this thread for the block (then it is delivered); a no-op where that is impossible."""
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _freeze_frozen_bn(model: torch.nn.Module) -> None:
    """Keep BatchNorm layers whose parameters are all frozen in eval mode (frozen encoders)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
