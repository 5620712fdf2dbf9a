"""The binary patch classifier: model by name, training with checkpoint/resume, loading.

Defaults follow the CrackCLIP paper (§4.4.2): ResNet50, 2 classes, SGD lr 1e-3,
momentum 0.9, lr ×0.1 after every epoch, batch 16, 10 epochs, 128-px patches
with rotation/flip augmentation. Class 1 is "crack"; ``p(crack)`` is the
softmax probability of class 1.

Checkpoints are plain dicts of tensors and primitives (loadable with
``torch.load(..., weights_only=True)``), written atomically after every epoch,
so an interrupted run resumes from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import crackseg
from crackseg import ConfigError, CracksegError, DataError, Sample, resolve_device, write_json

from .params import ClassifierConfig, check_classifier
from .patches import PatchDataset, PatchRef, build_refs, read_weak_label_csv

#: the engine's checkpoint kind of patch classifiers
KIND = "patch-classifier"
#: the format marker of the first release's classifier checkpoints (still read)
FORMAT = "crackseg-patch-classifier"
IMAGENET_MEAN, IMAGENET_STD = crackseg.IMAGENET_MEAN, crackseg.IMAGENET_STD


def classifier_config(data: dict[str, Any] | None) -> ClassifierConfig:
    """Validate a ``classifier`` mapping (unknown keys, types, ranges) into a :class:`ClassifierConfig`."""
    return check_classifier(crackseg.dataclass_from_dict(ClassifierConfig, dict(data or {}), "classifier"))


# -- models -------------------------------------------------------------------------------
def build_model(arch: str, num_classes: int = 2, weights: str | None = None) -> Any:
    """A classifier by name with ``num_classes`` outputs: random, from a local file, or ``"imagenet"``.

    ``"imagenet"`` reads the architecture's ImageNet weights from torchvision's (timm's) cache,
    downloading them there first if needed (:func:`crackseg_cam.pretrained.imagenet_file`); callers that
    must not fail offline resolve it first with :func:`crackseg_cam.pretrained.effective_config`.
    The head (``num_classes`` outputs) always starts random.
    """
    import torchvision

    from .pretrained import IMAGENET, imagenet_file

    if arch.startswith("timm:"):
        try:
            import timm
        except ImportError:
            raise CracksegError(f"classifier arch {arch!r} needs the 'timm' package (pip install timm)") from None
        name = arch[5:]
        if name not in timm.list_models():
            raise ConfigError(f"unknown timm model {name!r} for classifier.arch")
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    else:
        available = torchvision.models.list_models(module=torchvision.models)
        if arch not in available:
            import difflib

            close = difflib.get_close_matches(arch, available, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown classifier arch {arch!r}{hint} (torchvision names such as resnet18, resnet50, "
                f"or timm:<name>)"
            )
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if weights == IMAGENET:
        weights = str(imagenet_file(arch))
    if weights:
        load_weights_file(model, weights)
    return model


def load_weights_file(model: Any, path: str) -> list[str]:
    """Initialise ``model`` from a local state-dict file; layers of another shape (the head) are skipped.

    Returns the names of the skipped parameters. Nothing matching is an error.
    """
    from crackseg import read_torch_file

    p = Path(path)
    state = read_torch_file(p, "classifier weights file (classifier.weights)", "expected a PyTorch state dict")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"{p}: not a state dict")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    if not usable:
        raise DataError(f"{p}: no parameter matches the {type(model).__name__} model; wrong architecture?")
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


def find_target_layer(model: Any, probe_size: int = 128) -> Any:
    """The last convolutional stage (Grad-CAM's usual target).

    ResNet-style models (``layer4``) give ``layer4[-1]``; otherwise the last
    module, in execution order, whose output is a 4-D feature map with more
    than one pixel, found by a probe forward pass.
    """
    import torch

    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, torch.nn.Sequential) and len(layer4) > 0:
        return layer4[-1]
    found: list[tuple[Any, Any]] = []
    hooks = []

    def hook(module: Any, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
            found.append((module, out))

    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 3, probe_size, probe_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if not found:
        raise CracksegError(f"cannot find a convolutional layer for CAMs in {type(model).__name__}")
    last = found[-1][1]
    # a container returns its last child's tensor: prefer the innermost module producing it
    return next(m for m, out in found if out is last)


# -- a loaded classifier -----------------------------------------------------------------
class Classifier:
    """A trained patch classifier ready for inference on ``device``."""

    def __init__(self, model: Any, arch: str, patch_size: int, path: Path | None = None,
                 digest: str = "", device: str = "cpu",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.model = model.to(device).eval()
        self.arch = arch
        self.patch_size = patch_size
        self.path = path
        self.digest = digest
        self.device = device
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._target_layer: Any = None

    @property
    def target_layer(self) -> Any:
        if self._target_layer is None:
            self._target_layer = find_target_layer(self.model, self.patch_size)
        return self._target_layer

    def to_tensor(self, batch: np.ndarray) -> Any:
        """``uint8 [B,H,W,3]`` → normalised float tensor ``[B,3,H,W]`` on the device."""
        return to_tensor(batch, self.device, self.mean, self.std)

    def crack_probs(self, batch: np.ndarray) -> np.ndarray:
        """``p(crack)`` for ``uint8 [B,H,W,3]`` patches."""
        import torch

        with torch.no_grad():
            logits = self.model(self.to_tensor(batch))
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


def to_tensor(batch: np.ndarray, device: str, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Any:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_load(path: Path) -> dict[str, Any]:
    """A patch-classifier checkpoint: the engine's (format 2, kind patch-classifier) or the first release's."""
    from crackseg import read_torch_file

    ckpt = read_torch_file(path, "classifier checkpoint", "is it a file written by 'crackseg train-classifier'?")
    if isinstance(ckpt, dict) and ckpt.get("kind") == KIND:
        return {**ckpt, "complete": bool(ckpt.get("done"))}
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a crackseg patch-classifier checkpoint (train one with 'crackseg "
                        f"train-classifier')")
    return ckpt


def load_classifier(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a finished checkpoint; an unfinished one is an error that says to resume it."""
    p = Path(path)
    ckpt = _torch_load(p)
    if not ckpt.get("complete"):
        raise DataError(f"{p}: classifier training stopped after epoch {ckpt.get('epoch')} of "
                        f"{ckpt.get('epochs')}; finish it with 'crackseg train-classifier --resume'")
    model = build_model(ckpt["arch"], int(ckpt.get("num_classes", 2)))
    model.load_state_dict(ckpt["model"])
    return Classifier(model, ckpt["arch"], int(ckpt["patch_size"]), p, file_digest(p), device,
                      ckpt.get("mean", IMAGENET_MEAN), ckpt.get("std", IMAGENET_STD))


# -- training ----------------------------------------------------------------------------
def training_key(cfg: ClassifierConfig, seed: int, samples: Sequence[Sample]) -> str:
    """The key of a classifier's training: settings, seed, images and (when they have any) their weak labels."""
    weak = {}
    if not cfg.weak_labels:  # the deprecated CSV wins over the images' own weak labels (build_refs)
        for s in samples:
            labels = s.weak_labels()
            if labels is not None:
                weak[s.stem] = [labels.image, [[p.x, p.y, p.size, p.crack] for p in labels.patches]]
    return _config_key(cfg, seed, [s.stem for s in samples], weak)


def _config_key(cfg: ClassifierConfig, seed: int, stems: Sequence[str], weak: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"config": crackseg.dataclass_to_dict(cfg), "seed": seed, "stems": list(stems)}
    if weak:
        data["weak_labels"] = weak
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_status(path: Path, key: str) -> str:
    """``missing``, ``complete``, ``partial`` (same settings, unfinished) or ``mismatch`` (other settings)."""
    if not path.is_file():
        return "missing"
    ckpt = _torch_load(path)
    if ckpt.get("config_key") != key:
        return "mismatch"
    return "complete" if ckpt.get("complete") else "partial"


def split_images(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Image indices for training and held-out validation (by image, never by patch)."""
    order = list(np.random.default_rng(seed).permutation(n))
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(n - 1, max(1, round(val_fraction * n)))
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def patch_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, Any]:
    """Accuracy / precision / recall / F1 of crack patches (crack is positive)."""
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "patches": n}


def evaluate(model: Any, dataset: PatchDataset, device: str, batch_size: int) -> dict[str, Any]:
    """Patch metrics of ``model`` on ``dataset`` (argmax decision)."""
    import torch

    model.eval()
    tp = fp = fn = tn = 0
    with torch.no_grad():
        for xb, yb in dataset.batches(batch_size):
            pred = model(to_tensor(xb, device)).argmax(dim=1).cpu().numpy()
            tp += int(((pred == 1) & (yb == 1)).sum())
            fp += int(((pred == 1) & (yb == 0)).sum())
            fn += int(((pred == 0) & (yb == 1)).sum())
            tn += int(((pred == 0) & (yb == 0)).sum())
    return patch_metrics(tp, fp, fn, tn)


def metrics_path(checkpoint: Path) -> Path:
    """Where the metrics JSON of ``checkpoint`` goes: ``<name>.metrics.json`` beside it."""
    return checkpoint.with_name(checkpoint.stem + ".metrics.json")


def train_classifier(
    samples: Sequence[Sample],
    cfg: ClassifierConfig,
    out: str | Path,
    device: str = "cpu",
    seed: int = 0,
    resume: bool = True,
    quiet: bool = False,
    stop_after: int | None = None,
    settings: str = "labeler.classifier",
) -> Path:
    """Train a patch classifier on ``samples`` and write its checkpoint to ``out``.

    Patch labels come from each sample's weak labels (``data.weak_labels``; the deprecated
    ``cfg.weak_labels`` CSV before them) or, failing that, from its mask. With ``resume`` an
    unfinished checkpoint with the same settings continues from its last epoch and a finished one is returned as
    is; a checkpoint with other settings is an error (without ``resume`` it is
    overwritten). The held-out patch metrics go to :func:`metrics_path`.
    ``stop_after`` ends this call after that many epochs (the checkpoint stays
    resumable), for time-boxed runs. A long CPU training prints its estimated duration first
    (``settings``: where these settings live in the user's config, for the suggested ``--set``).
    The loop runs on :class:`crackseg.Engine` (distribution, checkpoints, resume,
    progress); what stays here is what is specific to patch classification: patches, their
    labels, the per-epoch learning rate, the metrics.
    """
    import torch

    from crackseg import Engine, EngineSettings

    from .estimate import cpu_estimate
    from .pretrained import effective_config

    out = Path(out)
    seed = cfg.seed if cfg.seed is not None else seed
    cfg, fallback = effective_config(cfg)  # ImageNet where it can be had, else random weights and one loud line
    crackseg.warn(fallback)
    weak = None
    if cfg.weak_labels:
        warnings.warn(f"{settings}.weak_labels is deprecated since crackseg 0.2 and goes away in 0.3: use "
                      f"data.weak_labels.source=csv and data.weak_labels.path={cfg.weak_labels}", DeprecationWarning,
                      stacklevel=2)
        weak = read_weak_label_csv(cfg.weak_labels)
    if weak is None and not any(s.has_mask for s in samples) and not any(s.weak_labels() for s in samples):
        raise CracksegError(
            "no weak labels to train the patch classifier: these images have no masks and no weak labels; "
            "set data.weak_labels (e.g. --set data.weak_labels.source=csv --set data.weak_labels.path=FILE.csv) "
            "or classifier.checkpoint=CKPT"
        )
    key = training_key(cfg, seed, samples)
    status = checkpoint_status(out, key) if resume else "missing"
    if status == "mismatch":
        raise CracksegError(
            f"{out}: existing classifier checkpoint was trained with other settings or images; "
            f"use another output folder or start afresh without --resume"
        )
    if status == "complete":
        return out

    refs = build_refs(samples, cfg.patch_size, cfg.stride, cfg.min_crack_pixels, weak, pad=cfg.pad)
    if not refs:
        raise DataError("no labelled patches: no image has weak labels or a mask")
    labelled = sorted({r.image for r in refs})
    tr_idx, va_idx = split_images(len(labelled), cfg.val_fraction, seed)
    tr_images = {labelled[i] for i in tr_idx}
    train_ds = PatchDataset(samples, [r for r in refs if r.image in tr_images], cfg.patch_size, cfg.augment)
    val_ds = PatchDataset(samples, [r for r in refs if r.image not in tr_images], cfg.patch_size, "none")

    env = crackseg.detect_distributed()
    if env.enabled and not torch.distributed.is_initialized():
        env = crackseg.DistEnv()  # launched by torchrun but called without a process group: train alone
    torch.manual_seed(seed)  # reproducible initialisation
    meta = {"arch": cfg.arch, "num_classes": 2, "patch_size": cfg.patch_size, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "config": crackseg.dataclass_to_dict(cfg), "config_key": key, "seed": seed,
            "epochs": cfg.epochs, "init": _init_name(cfg.weights), "init_fallback": fallback}
    engine = Engine(build_model(cfg.arch, 2, cfg.weights), EngineSettings(
        device=device, env=env, checkpoint_path=out, epochs=cfg.epochs, meta=meta, kind=KIND, seed=seed,
        resume=status == "partial", quiet=quiet, log=None if quiet else (lambda msg: print(msg, file=sys.stderr)),
        label="classifier"))
    model = engine.model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    engine.restore(opt)
    net = engine.wrap(model)  # under torchrun: DistributedDataParallel, each rank takes its share of every batch
    loss_fn = torch.nn.CrossEntropyLoss()
    n_epoch = len(train_ds) if cfg.max_patches_per_epoch is None else min(len(train_ds), cfg.max_patches_per_epoch)
    estimate = cpu_estimate(cfg.arch, cfg.patch_size, n_epoch, cfg.epochs - engine.start_epoch, settings)
    if estimate and str(device).startswith("cpu") and env.is_main and not quiet:
        print(f"crackseg: {estimate}", file=sys.stderr, flush=True)
    metrics: dict[str, Any] | None = None
    for epoch in engine.epochs(limit=stop_after):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * cfg.lr_decay**epoch
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 1009 + epoch)
        batches = train_ds.batches(cfg.batch_size, rng, cfg.chunk_images, cfg.max_patches_per_epoch)
        bar = engine.progress(batches, total=math.ceil(n_epoch / cfg.batch_size))
        total, seen = 0.0, 0
        for xb, yb in bar:
            if len(yb) < 2 * env.world_size:  # BatchNorm cannot train on a single sample per rank
                continue
            xb, yb = engine.shard(xb), engine.shard(yb)  # every rank draws the same global batch
            loss = loss_fn(net(to_tensor(xb, device)), torch.from_numpy(yb).to(device))
            engine.backward_step(loss, opt, images=len(yb))
            total += float(loss.detach()) * len(yb)
            seen += len(yb)
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        if epoch + 1 == cfg.epochs and env.is_main:  # rank 0 alone evaluates; the engine writes
            metrics = _final_metrics(model, train_ds, val_ds, device, cfg, total / max(seen, 1))
            engine.trainer_state["metrics"] = metrics
        engine.end_epoch(epoch, {"loss": total / max(seen, 1), "lr": cfg.lr * cfg.lr_decay**epoch}, opt)
    if metrics is not None:
        write_json(metrics_path(out), metrics)
        warning = classifier_warning(out)  # one class everywhere: the CAMs and labels built on it are useless
        crackseg.warn(warning)
    crackseg.barrier(env)
    return out


def _init_name(weights: str | None) -> str:
    from .pretrained import IMAGENET

    return "imagenet" if weights == IMAGENET else ("random" if not weights else f"file {weights}")


def _final_metrics(model: Any, train_ds: PatchDataset, val_ds: PatchDataset, device: str,
                   cfg: ClassifierConfig, last_loss: float) -> dict[str, Any]:
    held_out = len(val_ds) > 0
    m = evaluate(model, val_ds if held_out else train_ds, device, max(cfg.batch_size, 32))
    pos, neg = train_ds.counts()
    m.update({
        "evaluated_on": "held-out images" if held_out else "training patches (no images held out)",
        "held_out_images": len({r.image for r in val_ds.refs}),
        "train_patches": {"crack": pos, "no_crack": neg},
        "final_train_loss": last_loss,
        "arch": cfg.arch,
        "init": _init_name(cfg.weights),
        "patch_size": cfg.patch_size,
        "epochs": cfg.epochs,
    })
    warning = degenerate_note(m)
    if warning:
        m["warning"] = warning
    return m


def degenerate_note(metrics: dict[str, Any], source: str | Path = "") -> str:
    """One line when the classifier gave every evaluated patch the same class; "" otherwise.

    ``metrics``: :func:`patch_metrics` (the classifier's metrics file). Flagged only when the
    evaluated patches hold both classes, so a one-class answer is wrong for some of them.
    ``source`` (the metrics file) is named in the line when given.
    """
    tp, fp, fn, tn = (int(metrics.get(k, 0) or 0) for k in ("tp", "fp", "fn", "tn"))
    if not (tp + fn and fp + tn):
        return ""
    if fn + tn == 0:
        said, consequence = "crack", "its CAMs mark crack nearly everywhere"
    elif tp + fp == 0:
        said, consequence = "no crack", "its CAMs find no crack"
    else:
        return ""
    where = "held-out" if str(metrics.get("evaluated_on", "held-out")).startswith("held-out") else "training"
    arch = metrics.get("arch", "")
    counts = f"tp {tp}, fp {fp}, fn {fn}, tn {tn}" + (f" in {source}" if str(source) else "")
    return (f"patch classifier{f' {arch}' if arch else ''} is degenerate: it calls all {tp + fp + fn + tn} "
            f"{where} patches {said} ({counts}); {consequence}, so the pseudo-labels and the model trained on "
            f"them are useless; train it longer, from ImageNet weights or on balanced weak labels")


def classifier_warning(checkpoint: str | Path) -> str:
    """:func:`degenerate_note` of the metrics file beside ``checkpoint`` ("" when there is none)."""
    path = metrics_path(Path(checkpoint))
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    return degenerate_note(metrics, path) if isinstance(metrics, dict) else ""


def config_dict(cfg: ClassifierConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


__all__ = [
    "ClassifierConfig", "Classifier", "classifier_config", "build_model", "find_target_layer",
    "load_classifier", "train_classifier", "metrics_path", "resolve_device", "PatchRef",
]
