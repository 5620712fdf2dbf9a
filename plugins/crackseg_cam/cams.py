"""CAM labelers (Grad-CAM family through pytorch-grad-cam) and their shared base.

Whole-image maps are assembled from patch maps:

1. the image is padded (bottom/right, reflection) and sliced into
   ``patch_size`` patches every ``stride`` pixels;
2. each patch gets its CAM for the crack class (``ClassifierOutputTarget(1)``),
   which pytorch-grad-cam min-max normalises to [0, 1] and upsamples to the
   patch size, and the classifier's ``p(crack)`` for that patch;
3. the gate: pytorch-grad-cam normalises *every* map, so a crack-free patch
   would still light up. With ``gate: prob`` (default) a patch's map is
   multiplied by ``p(crack)`` and patches with ``p(crack) < gate_threshold``
   (default 0.5, the classifier's own decision) contribute zeros; ``hard``
   multiplies by 1 or 0 instead; ``none`` keeps the raw maps; ``labels`` keeps
   the raw maps and lets the image's weak labels gate instead (step 5);
4. overlapping maps are averaged and the padding is cropped off;
5. with ``gate: labels``, the finished map (of every CAM labeler: after the CRF,
   after the localisation) is zero where the image's weak labels say no crack
   (``sample.weak_labels().gate``); an image without weak labels falls back to the
   ``prob`` gate (``none`` for ``cam-crf``).

The soft map is in [0, 1]; the binary mask is ``soft >= threshold`` (default
0.5).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

import crackseg
from crackseg import ConfigError, CracksegError, LabelContext, PseudoLabel, Sample, resolve_device

from .params import CAM_METHODS, CamParams, check_classifier
from .patches import extract_patches, patch_grid

CRACK = 1  # class index of "crack" in our classifiers


def cam_class(method: str) -> Any:
    """The pytorch-grad-cam class behind labeler/method name ``method``."""
    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r} (choose from {', '.join(CAM_METHODS)})")
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, CAM_METHODS[method])


def check_common(params: Any) -> None:
    for name in ("patch_size", "stride", "batch_size"):
        v = getattr(params, name, None)
        if v is not None and v < 1:
            raise ConfigError(f"labeler parameter {name!r} must be >= 1 or null, got {v}")
    for name in ("gate_threshold", "threshold"):
        v = getattr(params, name, None)
        if v is not None and not 0.0 <= v <= 1.0:
            raise ConfigError(f"labeler parameter {name!r} must be in [0, 1], got {v}")


# -- computing maps ------------------------------------------------------------------
def patch_cams(classifier: Any, patches: np.ndarray, method: str, batch_size: int,
               target: int | None = CRACK) -> tuple[np.ndarray, np.ndarray]:
    """CAMs ``float32 [N,S,S]`` (pytorch-grad-cam's output, in [0,1]) and ``p(crack)`` ``[N]``.

    ``target`` is the class explained (crack by default; ``None`` = each
    patch's predicted class, as pytorch-grad-cam does by default).
    """
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = cam_class(method)
    maps: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    model = classifier.model
    cam = cls(model=model, target_layers=[classifier.target_layer])
    # not `with cam:` - its __exit__ swallows IndexError, which would hide bugs
    try:
        with torch.enable_grad():
            for i in range(0, len(patches), batch_size):
                x = classifier.to_tensor(patches[i : i + batch_size])
                targets = None if target is None else [ClassifierOutputTarget(target)] * len(x)
                m = cam(input_tensor=x, targets=targets)
                out = getattr(cam, "outputs", None)
                if out is None or out.shape[0] != len(x):
                    with torch.no_grad():
                        out = model(x)
                if i == 0:
                    _warn_if_flat(cam, method, x.shape[-1])
                maps.append(np.asarray(m, dtype=np.float32))
                probs.append(torch.softmax(out.detach().float(), dim=1)[:, CRACK].cpu().numpy())
    finally:
        cam.activations_and_grads.release()
    return np.concatenate(maps), np.concatenate(probs).astype(np.float32)


def _warn_if_flat(cam: Any, method: str, size: int) -> None:
    acts = getattr(cam.activations_and_grads, "activations", None)
    if acts and tuple(acts[0].shape[-2:]) == (1, 1):
        warnings.warn(
            f"{method}: the classifier's feature map is 1x1 for {size}-px inputs, so every CAM is flat "
            f"(zero after normalisation); use larger patches (e.g. patch_size 128 for ResNets)",
            stacklevel=3,
        )


def gate_weights(probs: np.ndarray, gate: str, gate_threshold: float) -> np.ndarray:
    """Per-patch multipliers of the CAM maps (see the module docstring)."""
    keep = probs >= gate_threshold
    if gate == "prob":
        return np.where(keep, probs, 0.0).astype(np.float32)
    if gate == "hard":
        return keep.astype(np.float32)
    return np.ones_like(probs, dtype=np.float32)


def assemble(maps: np.ndarray, origins: Sequence[tuple[int, int]], height: int, width: int,
             padded_h: int, padded_w: int) -> np.ndarray:
    """Average overlapping patch maps into a ``[height, width]`` map (padding cropped)."""
    size = maps.shape[1]
    acc = np.zeros((padded_h, padded_w), np.float64)
    cnt = np.zeros((padded_h, padded_w), np.float64)
    for m, (y, x) in zip(maps, origins):
        acc[y : y + size, x : x + size] += m
        cnt[y : y + size, x : x + size] += 1
    return (acc / np.maximum(cnt, 1))[:height, :width].astype(np.float32)


def image_cam(classifier: Any, image: np.ndarray, method: str, patch_size: int, stride: int,
              gate: str, gate_threshold: float, batch_size: int) -> np.ndarray:
    """Whole-image gated CAM in [0, 1] assembled from patches."""
    h, w = image.shape[:2]
    patches, origins = extract_patches(image, patch_size, stride)
    _, _, ph, pw = patch_grid(h, w, patch_size, stride)
    maps, probs = patch_cams(classifier, patches, method, batch_size)
    maps = maps * gate_weights(probs, gate, gate_threshold)[:, None, None]
    return np.clip(assemble(maps, origins, h, w, ph, pw), 0.0, 1.0)


def whole_image_cam(classifier: Any, image: np.ndarray, method: str, target: int | None = CRACK) -> np.ndarray:
    """CAM of the whole image in one pass (no slicing, no gate), in [0, 1]."""
    maps, _ = patch_cams(classifier, image[None], method, 1, target)
    return maps[0]


# -- labeler base ----------------------------------------------------------------------
class ClassifierLabeler:
    """Base of labelers that need a patch classifier: loaded from ``classifier.checkpoint`` or trained.

    The classifier is the labeler's declared artefact ``classifier``: the pipeline
    keys its folder by the classifier settings and the training data, so every CAM
    labeler with the same ``classifier`` section trains it once.
    """

    #: every rank calls prepare() together: the classifier trains with DistributedDataParallel
    distributed_prepare = True
    name = "?"

    def __init__(self, params: Any) -> None:
        check_common(params)
        check_classifier(params.classifier, "labeler.classifier")
        self.params = params
        #: the patch gate of the image being labelled (``params.gate``, resolved for ``labels``)
        self.patch_gate = params.gate
        self.classifier: Any = None
        #: set by prepare() when the classifier had to start from random weights instead of ImageNet's,
        #: or when it is degenerate (one class for every held-out patch); the run's notes and tables show it
        self.note = ""

    # -- classifier ------------------------------------------------------------------
    def artefacts(self) -> dict[str, Any]:
        """``{"classifier": settings}``; nothing when a finished checkpoint is given."""
        c = self.params.classifier
        if c.checkpoint:
            return {}
        return {"classifier": {k: v for k, v in crackseg.dataclass_to_dict(c).items() if k != "checkpoint"}}

    def prepare(self, train: Sequence[Sample], context: LabelContext) -> None:
        """Load ``classifier.checkpoint``, or train/resume one in the ``classifier`` artefact folder."""
        from .classifier import checkpoint_status, classifier_warning, load_classifier, train_classifier, training_key
        from .pretrained import effective_config

        device = resolve_device(context.device)
        cfg = self.params.classifier
        if cfg.checkpoint:
            self.classifier = load_classifier(cfg.checkpoint, device)
            self.note = _announce(classifier_warning(cfg.checkpoint))
            return
        if cfg.weak_labels is None and not any(s.has_mask or s.weak_labels() for s in train):
            raise CracksegError(
                f"labeler {self.name!r} needs a patch classifier: set labeler.classifier.checkpoint=CKPT, or give "
                f"weak labels to train one (data.weak_labels, class folders, or masks in the training data)"
            )
        path = context.artefact_dir("classifier") / "classifier.pt"
        seed = cfg.seed if cfg.seed is not None else context.seed
        trained, fallback = effective_config(cfg)  # as train_classifier will train it (weights resolved)
        self.note = fallback  # the run's notes and tables say when ImageNet weights were wanted but not had
        key = training_key(trained, seed, train)
        resume = True
        status = checkpoint_status(path, key)
        if status == "mismatch":
            if not context.quiet:
                print(f"crackseg: {path} was trained with other settings; training a new classifier",
                      file=sys.stderr)
            resume = False
        train_classifier(train, cfg, path, device, seed=context.seed, resume=resume, quiet=context.quiet)
        self.classifier = load_classifier(path, device)
        # a classifier trained just now said it itself; a finished one found here is announced now
        degenerate = classifier_warning(path)
        self.note = "; ".join(filter(None, [fallback, _announce(degenerate) if status == "complete" else degenerate]))

    def _need_classifier(self) -> Any:
        if self.classifier is None:
            raise CracksegError(
                f"labeler {self.name!r} has no patch classifier; call prepare() first or set "
                f"labeler.classifier.checkpoint=CKPT"
            )
        return self.classifier

    def fingerprint(self) -> str:
        """Hash of the labeler name, its parameters and the classifier checkpoint's content."""
        digest = self.classifier.digest if self.classifier is not None else "no-classifier"
        blob = json.dumps({"labeler": self.name, "params": asdict(self.params), "classifier": digest,
                           "v": 1}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- labelling ----------------------------------------------------------------------
    def geometry(self) -> tuple[int, int]:
        clf = self._need_classifier()
        size = self.params.patch_size or clf.patch_size
        stride = self.params.stride or max(1, size // 2)
        return size, stride

    def batch(self, context: LabelContext) -> int:
        return self.params.batch_size or 16

    def soft_map(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        raise NotImplementedError

    def to_label(self, image: np.ndarray, soft: np.ndarray) -> PseudoLabel:
        soft = np.clip(soft, 0.0, 1.0).astype(np.float32)
        return PseudoLabel(soft=soft, binary=soft >= self.params.threshold)

    #: the patch gate of a labeler whose ``gate: labels`` meets an image without weak labels
    fallback_gate = "prob"

    def label(self, samples: Sequence[Sample], context: LabelContext) -> list[PseudoLabel]:
        self._need_classifier()
        out = []
        for s in samples:
            image = s.load_image()
            region = self.label_region(s, image.shape[:2])
            self.patch_gate = self.params.gate if self.params.gate != "labels" else (
                "none" if region is not None else self.fallback_gate)
            soft = self.soft_map(image, context)
            if region is not None:
                soft = soft * region
            out.append(self.to_label(image, soft))
        return out

    def label_region(self, sample: Sample, shape: tuple[int, ...]) -> np.ndarray | None:
        """``float32 [H, W]``: 0 where the sample's weak labels say no crack (``gate: labels``), else None."""
        if self.params.gate != "labels":
            return None
        weak = sample.weak_labels()
        region = weak.gate(shape[0], shape[1]) if weak is not None else None
        return None if region is None else region.astype(np.float32)


class CamLabeler(ClassifierLabeler):
    """Gated, patch-assembled CAM of one pytorch-grad-cam method."""

    def __init__(self, method: str, params: CamParams) -> None:
        cam_class(method)  # unknown method → ConfigError now, not at label time
        self.name = method
        self.method = method
        super().__init__(params)

    def soft_map(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        size, stride = self.geometry()
        p = self.params
        return image_cam(self._need_classifier(), image, self.method, size, stride, self.patch_gate,
                         p.gate_threshold, self.batch(context))


def _announce(warning: str) -> str:
    """Print ``warning`` as one ``crackseg: warning:`` line (rank 0; nothing when empty); return it."""
    return crackseg.warn(warning)
