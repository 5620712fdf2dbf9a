"""What segmentation trainers share: the training set streamed from disk, optimizer and schedule, the forward pass.

The training set reads each image and its targets (pseudo-labels, or a trainer's own
planes) from disk when a loader asks for them, resizes them to ``S × S`` and augments them
deterministically: item ``i`` of epoch ``e`` depends only on (seed, e, i), so a resumed or
distributed run sees the same images as an uninterrupted single one, whatever the number
of loader processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from crackseg.base.console import one_line
from crackseg.base.errors import CracksegError
from crackseg.base.io import read_mask
from crackseg.config.run_config import TrainConfig
from crackseg.data.samples import Sample
from crackseg.labels.contract import LabelFiles
from crackseg.plugins.blame import blamed, plugin_error
from crackseg.training.backbones import as_outputs, output_problem, pad_to_multiple
from crackseg.training.contract import TrainJob

#: ``targets(sample, (H, W), epoch) -> bool [K, H, W]``: the planes a trainer learns from in that epoch,
#: at the image's size
Targets = Callable[[Sample, tuple[int, int], int], np.ndarray]


class BinaryLabels:
    """The binary pseudo-label of each image as one target plane (picklable, for loader processes)."""

    def __init__(self, labels: dict[str, LabelFiles]) -> None:
        self.paths = {stem: files.binary for stem, files in labels.items()}

    def __call__(self, sample: Sample, shape: tuple[int, int], epoch: int) -> np.ndarray:
        return read_mask(self.paths[sample.stem], shape)[None]


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Squash an image (bicubic) and a mask or ``[H, W, K]`` stack of masks (nearest) to ``size × size``."""
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    planes = mask[..., None] if mask.ndim == 2 else mask
    msk = np.stack([cv2.resize(planes[..., k].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
                    for k in range(planes.shape[-1])], axis=-1)
    return img, (msk[..., 0] if mask.ndim == 2 else msk)


@dataclass
class LoadFailure:
    """An item a loader process could not load; the main process raises ``error`` again (one line)."""

    error: CracksegError


class SegmentationTrainSet(torch.utils.data.Dataset[Any]):
    """Training images and their target planes, read from disk per item, resized and augmented.

    Items are keyed ``(epoch, index)`` (the engine's loaders send the epoch along, so that
    long-lived loader processes augment each epoch differently; a plain index uses the epoch of
    :meth:`set_epoch`). ``__getitem__`` returns ``(x [3,S,S] normalised, y [K,S,S] in {0,1},
    key)``; ``key`` names the exact view (``stem|flip…``) or is ``""`` after a mosaic.
    ``dataset`` names the dataset plugin, so that an image it fails to load is blamed on it.
    """

    #: the engine's loaders key this dataset's items by (epoch, index)
    epoch_keys = True

    def __init__(self, samples: Sequence[Sample], targets: Targets, size: int, cfg: TrainConfig,
                 mean: Sequence[float], std: Sequence[float], seed: int = 0, dataset: str = "") -> None:
        if len(samples) == 0:
            raise CracksegError("no training images: the training split is empty")
        self.samples = list(samples)
        self.targets = targets
        self.size = size
        self.cfg = cfg
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.seed = seed
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i`` (``uint8 [S,S,3]``) and its targets in ``epoch`` (``bool [S,S,K]``) at the training size."""
        s = self.samples[i]
        with blamed("datasets", self.dataset, f"loading image {s.stem!r}"):
            img = s.load_image()
        planes = np.ascontiguousarray(np.moveaxis(self.targets(s, img.shape[:2], epoch), 0, -1))
        return resize_pair(img, planes, self.size)

    def _view(self, i: int, epoch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
        img, lab = self.load(i, epoch)
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
        return img, lab, self.samples[i].stem + ("|" + "".join(tags) if tags else "")

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        try:
            rng = np.random.default_rng((self.seed, epoch, i))
            if self.cfg.mosaic_p > 0 and len(self.samples) > 1 and rng.random() < self.cfg.mosaic_p:
                img, lab = self._mosaic(i, epoch, rng)
                view = ""
            else:
                img, lab, view = self._view(i, epoch, rng)
        except CracksegError as exc:  # raised again in the main process, still one line
            return LoadFailure(exc)
        except Exception as exc:  # noqa: BLE001 - a target source's bug, reported in one line
            return LoadFailure(CracksegError(f"training item {self.samples[i].stem!r}: {one_line(exc)}"))
        x = (np.ascontiguousarray(img).transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        y = np.ascontiguousarray(np.moveaxis(lab, -1, 0)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y), view

    def _mosaic(self, i: int, epoch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """2×2 mosaic of this image and three random others, squashed back to S×S."""
        idx = [i] + [int(j) for j in rng.integers(0, len(self.samples), size=3)]
        s = self.size
        parts = [self.load(j, epoch) for j in idx]
        k_planes = parts[0][1].shape[-1]
        canvas = np.zeros((2 * s, 2 * s, 3), np.uint8)
        mcanvas = np.zeros((2 * s, 2 * s, k_planes), np.uint8)
        for k, (img, lab) in enumerate(parts):
            r, c = divmod(k, 2)
            canvas[r * s : (r + 1) * s, c * s : (c + 1) * s] = img
            mcanvas[r * s : (r + 1) * s, c * s : (c + 1) * s] = lab
        img = cv2.resize(canvas, (s, s), interpolation=cv2.INTER_AREA)
        lab = np.stack([cv2.resize(mcanvas[..., k], (s, s), interpolation=cv2.INTER_NEAREST) > 0
                        for k in range(k_planes)], axis=-1)
        return img, lab


def collate(batch: list[Any]) -> Any:
    """Stack ``(x, y, key)`` items; a :class:`LoadFailure` among them is passed on instead."""
    for item in batch:
        if isinstance(item, LoadFailure):
            return item
    xs, ys, keys = zip(*batch)
    return torch.stack(xs), torch.stack(ys), list(keys)


def check_batch(batch: Any) -> Any:
    """``batch`` itself; a :class:`LoadFailure` from a loader process is raised here, in one line."""
    if isinstance(batch, LoadFailure):
        raise batch.error
    return batch


# -- optimisation -----------------------------------------------------------------------
def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``train.optimizer`` (adam, adamw or sgd) over ``params``."""
    if not params:
        raise CracksegError("the backbone has no trainable parameters; nothing to train")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """``train.lr_step``/``lr_gamma``: the learning rate × gamma every ``lr_step`` epochs (None: constant)."""
    if cfg.lr_step <= 0:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def start_training(job: TrainJob) -> tuple[torch.optim.Optimizer, Any] | None:
    """How every trainer starts: the seed, the optimizer and scheduler of ``job.config``, restored on resume.

    Returns ``(optimizer, scheduler)``, or None when nothing is left to train (the backbone has no
    trainable parameter, or the checkpoint is finished): the trainer then returns ``job.engine.result()``.
    """
    engine, cfg = job.engine, job.config
    torch.manual_seed(job.seed)
    if engine.nothing_to_train():
        return None
    optimizer = make_optimizer(engine.trainable(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    if engine.restore(optimizer, scheduler):
        return None
    return optimizer, scheduler


# -- the forward pass ---------------------------------------------------------------------
class TrainForward(torch.nn.Module):
    """Calls ``forward_train(x, keys)`` when the backbone has one (DDP wraps this)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, keys: list[str]) -> dict[str, torch.Tensor]:
        fn = getattr(self.model, "forward_train", None)
        if callable(fn):
            return as_outputs(fn(x, [k or None for k in keys]))
        return as_outputs(self.model(x))


def forward_outputs(net: torch.nn.Module, x: torch.Tensor, keys: list[str], multiple: int,
                    backbone: str) -> dict[str, torch.Tensor]:
    """The backbone's named outputs for a batch: padded to ``multiple``, checked, cropped back, float.

    A failure or an output of the wrong shape is one error naming the backbone's plugin.
    """
    x, h, w = pad_to_multiple(x, multiple)
    with blamed("backbones", backbone, "the forward pass"):
        outs = net(x, keys)
    problem = output_problem(outs, x.shape[0], x.shape[-2], x.shape[-1])
    if problem:
        raise plugin_error("backbones", backbone, problem)
    return {k: v[..., :h, :w].float() for k, v in outs.items()}
