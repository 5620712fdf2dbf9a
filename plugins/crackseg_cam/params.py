"""Parameter schemas of the cam plugin (light: no numpy/torch, imported at registration).

Each dataclass field is a config key; ``crackseg list labelers`` and config
validation read them. ``metadata={"tune": ...}`` declares the range ``crackseg tune``
searches (see :func:`crackseg.declared_space`): only post-processing parameters, which
change the labels without retraining the classifier. Every CAM labeler has a ``classifier`` section: the patch
classifier it trains (or loads from ``checkpoint``), e.g.
``--set labeler.classifier.arch=resnet18``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crackseg import ConfigError
from crackseg_ridge import RidgeParams

#: labeler name → pytorch-grad-cam class name. Methods that work for a binary
#: classifier with only (model, target_layers). Adding a line adds a labeler.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "hirescam": "HiResCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}


#: CAM methods ``crackseg tune`` tries for ``cam-crf`` (the gradient ones: fast; score/ablation CAMs are not)
TUNE_CAM_METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam"]


def tuned(default: Any, tune: Any, log: bool = False) -> Any:
    """A field with its default and the range (or choices) ``crackseg tune`` searches."""
    return field(default=default, metadata={"tune": tune, "log": log})


@dataclass
class ClassifierConfig:
    """Patch-classifier settings (the ``classifier`` section of every CAM labeler)."""

    #: a finished checkpoint of ``crackseg train-classifier`` to use instead of training one
    checkpoint: str | None = None
    #: torchvision model name (resnet50, resnet18, ...) or ``timm:<name>``
    arch: str = "resnet50"
    #: imagenet = the architecture's ImageNet weights (torchvision's or timm's download and cache; random
    #: weights and a warning where they are unavailable), a local state-dict file, or null = random on purpose
    weights: str | None = "imagenet"
    patch_size: int = 128
    #: stride between training patches (König et al. use half the patch size)
    stride: int = 64
    #: true = the training grid covers the whole image (padded at the bottom/right); false = only
    #: patches inside the image (the paper's patch counts: Crack500 546,048 rather than 682,560)
    pad: bool = True
    #: a patch is "crack" when its mask holds at least this many crack pixels
    min_crack_pixels: int = 1
    #: CSV of weak labels (stem,x,y,size,label or stem,label); overrides masks
    weak_labels: str | None = None
    #: expand = all 8 rotations/flips of every patch (paper), random = one random variant per draw
    augment: Literal["expand", "random", "none"] = "expand"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    #: learning rate factor applied after every epoch
    lr_decay: float = 0.1
    weight_decay: float = 0.0
    #: fraction of images held out for the patch metrics
    val_fraction: float = 0.1
    #: cap on patches drawn per epoch (CPU budgets); null = all
    max_patches_per_epoch: int | None = None
    #: images decoded at once while shuffling patches
    chunk_images: int = 32
    #: random seed; null = the run's seed
    seed: int | None = None


@dataclass
class CamParams:
    """Parameters shared by the CAM labelers."""

    #: the patch classifier (trained once per settings and training data, or loaded from checkpoint)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    #: patch size for CAMs; null = the classifier's patch size
    patch_size: int | None = None
    #: stride between patches; null = half the patch size (overlaps are averaged)
    stride: int | None = None
    #: prob = multiply each patch map by p(crack); hard = by 0/1; none = no gate; labels = the image's weak
    #: labels (zero in its no-crack patches, every patch map at full strength; prob where it has none)
    gate: Literal["prob", "hard", "none", "labels"] = tuned("prob", True)
    #: patches with p(crack) below this contribute nothing (prob and hard gates)
    gate_threshold: float = tuned(0.5, (0.1, 0.9))
    #: binary mask = soft >= threshold
    threshold: float = tuned(0.5, (0.05, 0.95))
    #: patches per forward/backward pass; null = the run's batch size
    batch_size: int | None = None


@dataclass
class CamCrfParams:
    """Parameters of ``cam-crf`` (CAM settings, then the dense CRF's)."""

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    #: CAM method producing the unary (any CAM labeler name). The defaults here (Grad-CAM++, no gate,
    #: pydensecrf's kernels) were chosen on DeepCrack-train masks: docs/benchmarks.md, "cam-crf's defaults"
    cam_method: str = tuned("gradcam++", TUNE_CAM_METHODS)
    patch_size: int | None = None
    stride: int | None = None
    #: none = every patch map at full strength (a p(crack)-weighted unary is too weak: the CRF erases it)
    #: labels = zero in the image's no-crack patches (its weak labels; none where it has none)
    gate: Literal["prob", "hard", "none", "labels"] = tuned("none", True)
    gate_threshold: float = tuned(0.5, (0.1, 0.9))
    batch_size: int | None = None
    #: Gaussian kernel: spatial std (pixels) and weight
    gaussian_sxy: float = tuned(3.0, (0.5, 10.0), log=True)
    gaussian_compat: float = tuned(3.0, (0.5, 20.0), log=True)
    #: bilateral kernel: spatial std (pixels), colour std (grey levels) and weight
    bilateral_sxy: float = tuned(80.0, (5.0, 200.0), log=True)
    bilateral_srgb: float = tuned(13.0, (2.0, 60.0), log=True)
    bilateral_compat: float = tuned(10.0, (0.5, 30.0), log=True)
    iterations: int = 5
    #: binary = CRF crack marginal >= threshold (0.5 = the CRF's argmax)
    threshold: float = tuned(0.5, (0.1, 0.9))


@dataclass
class CamLocationParams:
    """Parameters of ``cam-location`` (null = the preset's value)."""

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    preset: Literal["crackclip", "koenig"] = "crackclip"
    #: classifier patch size for the localisation grid (and patch CAMs)
    patch_size: int | None = None
    #: stride of the localisation grid
    loc_stride: int | None = None
    cam_method: str | None = None
    #: patches = gated patch-assembled CAM; whole = one CAM of the whole image
    cam_mode: Literal["patches", "whole"] | None = None
    #: stride of the patch CAMs (patches mode); null = half the patch size
    cam_stride: int | None = None
    #: labels = zero in the image's no-crack patches (its weak labels; prob where it has none)
    gate: Literal["prob", "hard", "none", "labels"] = tuned("prob", True)
    gate_threshold: float = tuned(0.5, (0.1, 0.9))
    #: localisation grid: covering = every patch where it was taken; koenig = as König's code fills it
    #: (sized from the unpadded image: its last row is dropped when (h - patch) % stride != 0)
    loc_grid: Literal["covering", "koenig"] | None = None
    #: thresholding window and its stride
    window: int | None = None
    window_stride: int | None = None
    otsu_classes: int = tuned(3, (2, 5))
    fuse_cut: float = tuned(0.5, (0.1, 0.9))
    erode_iterations: int = tuned(4, (0, 8))
    bilateral_d: int = 5
    bilateral_sigma: float = tuned(120.0, (10.0, 250.0), log=True)
    close_iterations: int = tuned(1, (0, 4))
    #: binary = soft > threshold (0 = any non-zero pixel)
    threshold: float = tuned(0.0, (0.0, 0.5))
    batch_size: int | None = None


@dataclass
class CamRidgeParams:
    """Parameters of ``cam-ridge``: the classifier's CAM (or the weak labels) says where, the ridge map which pixels."""

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    #: CAM method (any CAM labeler name)
    cam_method: str = tuned("gradcam", TUNE_CAM_METHODS)
    patch_size: int | None = None
    stride: int | None = None
    #: labels = where the image has patch labels they say where (no-crack patches are zero), elsewhere the
    #: p(crack)-gated CAM does; prob / hard / none = the CAM's patch gate everywhere
    gate: Literal["prob", "hard", "none", "labels"] = tuned("labels", True)
    gate_threshold: float = tuned(0.5, (0.1, 0.9))
    #: the CAM, normalised to its maximum, is spread by a maximum filter of this size (pixels) so that a
    #: crack's whole length survives where the CAM marks part of it
    cam_spread: int = tuned(32, (0, 96))
    #: what survives of the ridge map where the CAM is zero (0: the CAM alone decides where)
    cam_floor: float = tuned(0.0, (0.0, 0.5))
    #: the ridge map and its binarisation (the ``ridge`` labeler's parameters; its own ``gate`` is not used)
    ridge: RidgeParams = field(default_factory=RidgeParams)
    batch_size: int | None = None


def check_classifier(cfg: ClassifierConfig, path: str = "classifier") -> ClassifierConfig:
    """Range checks of the classifier settings (``path`` names the section in messages)."""
    positive = ("patch_size", "stride", "epochs", "batch_size", "chunk_images")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config key '{path}.{name}' must be >= 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise ConfigError(f"config key '{path}.lr' must be > 0, got {cfg.lr}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"config key '{path}.val_fraction' must be in [0, 1), got {cfg.val_fraction}")
    if cfg.max_patches_per_epoch is not None and cfg.max_patches_per_epoch < 1:
        raise ConfigError(f"config key '{path}.max_patches_per_epoch' must be >= 1 or null")
    return cfg
