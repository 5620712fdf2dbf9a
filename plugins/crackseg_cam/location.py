"""``cam-location``: GPLL (König et al., T-ITS 2022) — localisation with a classifier and thresholding.

The steps follow König's public code (``segmentation.py``), as summarised in
``baselines-notes.md`` §B3:

1. **Localisation grid**: pad the image (bottom/right, reflection) to a
   multiple of the patch size, classify patches every ``loc_stride`` pixels,
   arrange ``p(crack)`` in a grid and resize it to the image size (PIL
   Hamming filter, through ``uint8``).
2. **CAM**: koenig preset = Grad-CAM++ of the whole image for its predicted
   class; crackclip preset = the gated, patch-assembled Grad-CAM of the
   ``gradcam`` labeler (CrackCLIP's re-implementation used Grad-CAM on 128-px
   patches). pytorch-grad-cam min-max normalises maps where König divides by
   the maximum only; after its ReLU the minimum is usually 0, so the two agree
   but for flat maps.
3. **Fusion**: mean of the two maps; values ≤ ``fuse_cut`` (0.5) set to 0;
   grey-level erosion, 3×3 kernel, 4 iterations.
4. **Thresholding**: bilateral filter (d 5, σ 120, 120) of the image, grey
   (König applies ``BGR2GRAY`` to an RGB array; kept), reflection padding,
   then for every ``window``² window at ``window_stride``: min-max
   normalise, 3-class multi-Otsu, mark pixels below the lower threshold
   (``otsu_classes`` above 3: :mod:`.multiotsu`, exact and fast where
   scikit-image's exhaustive search takes seconds per window).
   Windows combine by logical AND: a pixel stays only if it is dark in every
   window covering it. A constant window marks nothing; a window with two grey
   levels marks its darker level.
5. **Merge**: localisation × threshold map → bilateral filter → closing
   (3×3, 1 iteration) → ``uint8``; the soft map is that ``/ 255`` and the
   binary mask is ``soft > threshold`` (default 0: any non-zero pixel, as
   CrackCLIP's loader binarises its ``> 0``).

Presets (any field set explicitly wins):

========== ========== ========== ============ ============ =================
preset     patch_size loc_stride cam          window       window_stride
========== ========== ========== ============ ============ =================
crackclip  classifier patch / 2  gradcam,     32           8
           (128)                 patches
koenig     32         16         gradcam++,   patch_size   8
                                 whole image  (32)
========== ========== ========== ============ ============ =================

``loc_grid``: ``covering`` (crackclip) places every localisation patch where it was taken;
``koenig`` fills the grid as König's code does, sized from the unpadded image, so its last
row is dropped when ``(h - 32) % 16 != 0`` (:func:`koenig_grid_shape`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crackseg import ConfigError, LabelContext, PseudoLabel

from .cams import CAM_METHODS, ClassifierLabeler, image_cam, whole_image_cam
from .multiotsu import multiotsu_thresholds
from .params import CamLocationParams
from .patches import extract_patches, pad_to

PRESETS: dict[str, dict[str, Any]] = {
    "crackclip": {"patch_size": None, "loc_stride": None, "cam_method": "gradcam", "cam_mode": "patches",
                  "window": 32, "window_stride": 8, "loc_grid": "covering"},
    "koenig": {"patch_size": 32, "loc_stride": 16, "cam_method": "gradcam++", "cam_mode": "whole",
               "window": None, "window_stride": 8, "loc_grid": "koenig"},
}


def resolve(params: CamLocationParams, classifier_patch: int) -> dict[str, Any]:
    """Concrete settings: explicit parameters, else the preset's, else derived ones."""
    preset = PRESETS[params.preset]
    out: dict[str, Any] = {}
    for key in ("patch_size", "loc_stride", "cam_method", "cam_mode", "window", "window_stride", "loc_grid"):
        value = getattr(params, key)
        out[key] = value if value is not None else preset[key]
    out["patch_size"] = out["patch_size"] or classifier_patch
    out["loc_stride"] = out["loc_stride"] or max(1, out["patch_size"] // 2)
    out["window"] = out["window"] or out["patch_size"]
    out["cam_stride"] = params.cam_stride or max(1, out["patch_size"] // 2)
    if out["cam_method"] not in CAM_METHODS:
        raise ConfigError(f"labeler parameter 'cam_method': unknown CAM method {out['cam_method']!r}")
    return out


# -- the image-processing steps (no classifier needed; tested directly) ---------------------
def _to_u8(x: np.ndarray) -> np.ndarray:
    """König's ``(x * 255).astype('uint8')`` (truncating) for x in [0, 1]."""
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_like_pil(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a [0,1] map to ``height``×``width`` through ``uint8`` with PIL's Hamming filter, back to [0,1]."""
    from PIL import Image

    img = Image.fromarray(_to_u8(values)).resize((width, height), Image.Resampling.HAMMING)
    return np.asarray(img, dtype=np.float32) / 255.0


def fuse(loc: np.ndarray, cam: np.ndarray, cut: float = 0.5, erode_iterations: int = 4) -> np.ndarray:
    """Mean of localisation and CAM; values ≤ ``cut`` zeroed; grey erosion (3×3, ``erode_iterations``)."""
    import cv2

    m = ((loc + cam) / 2.0).astype(np.float32)
    m = m * (m > cut)
    if erode_iterations > 0:
        m = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=erode_iterations)
    return m


def dark_in_window(window: np.ndarray, classes: int = 3) -> np.ndarray:
    """Pixels of ``window`` in the darkest of ``classes`` multi-Otsu classes (after min-max normalisation).

    Edge cases: a constant window → nothing; fewer grey levels than classes →
    the lowest level (when there are at least two levels).
    """
    from skimage.filters import threshold_multiotsu

    w = window.astype(np.float64)
    lo, hi = float(w.min()), float(w.max())
    if hi <= lo:
        return np.zeros(w.shape, bool)
    w = (w - lo) / (hi - lo)
    if len(np.unique(w)) < classes:
        return w <= 0.0
    try:
        # scikit-image's exhaustive search up to 3 classes (the published setting, and faster there);
        # beyond, its cost grows as 256^(classes-1): the dynamic programme finds the exact optimum fast
        thresholds = threshold_multiotsu(w, classes=classes) if classes <= 3 else multiotsu_thresholds(w, classes)
    except ValueError:  # degenerate histogram: fall back to the lowest level
        return w <= 0.0
    return w < thresholds[0]


def window_threshold(grey: np.ndarray, window: int, stride: int, classes: int = 3) -> np.ndarray:
    """König's local thresholding: AND over all ``window``² windows (at ``stride``) of :func:`dark_in_window`."""
    h, w = grey.shape
    ph = h + (-h) % window
    pw = w + (-w) % window
    padded = np.pad(grey, [(0, ph - h), (0, pw - w)], mode="reflect") if (ph, pw) != (h, w) else grey
    out = np.ones((ph, pw), bool)
    for y in range(0, ph - window + 1, stride):
        for x in range(0, pw - window + 1, stride):
            out[y : y + window, x : x + window] &= dark_in_window(padded[y : y + window, x : x + window], classes)
    return out[:h, :w]


def gpll_merge(image: np.ndarray, loc: np.ndarray, cam: np.ndarray, window: int = 32, window_stride: int = 8,
               classes: int = 3, fuse_cut: float = 0.5, erode_iterations: int = 4, bilateral_d: int = 5,
               bilateral_sigma: float = 120.0, close_iterations: int = 1) -> np.ndarray:
    """Steps 3–5 for a ``uint8 RGB`` image, a localisation map and a CAM (both [0,1]); returns ``uint8``."""
    import cv2

    fused = fuse(loc, cam, fuse_cut, erode_iterations)
    smooth = cv2.bilateralFilter(np.ascontiguousarray(image.astype(np.uint8)), bilateral_d, bilateral_sigma,
                                 bilateral_sigma)
    grey = cv2.cvtColor(smooth, cv2.COLOR_BGR2GRAY)  # König's code does this on an RGB array
    dark = window_threshold(grey, window, window_stride, classes)
    seg = fused * dark
    seg = cv2.bilateralFilter(_to_u8(seg), bilateral_d, bilateral_sigma, bilateral_sigma).astype(np.float32) / 255.0
    seg_u8 = _to_u8(seg)
    if close_iterations > 0:
        seg_u8 = cv2.morphologyEx(seg_u8, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8), iterations=close_iterations)
    return seg_u8


# -- the labeler ------------------------------------------------------------------------------
def localisation_map(classifier: Any, image: np.ndarray, patch_size: int, stride: int, batch_size: int,
                     grid: str = "covering") -> np.ndarray:
    """Step 1: grid of ``p(crack)`` of patches, resized to the image (see the module docstring).

    ``grid="koenig"`` arranges the probabilities as König's ``_merge_out_preds`` does (see
    :func:`koenig_grid_shape`); ``"covering"`` puts every patch where it was taken.
    """
    h, w = image.shape[:2]
    padded = pad_to(image, h + (-h) % patch_size, w + (-w) % patch_size)
    ph, pw = padded.shape[:2]
    n_h = (ph - patch_size) // stride + 1
    n_w = (pw - patch_size) // stride + 1
    patches, origins = extract_patches(padded[: (n_h - 1) * stride + patch_size, : (n_w - 1) * stride + patch_size],
                                       patch_size, stride)
    probs = np.concatenate([classifier.crack_probs(patches[i : i + batch_size])
                            for i in range(0, len(patches), batch_size)])
    if grid == "koenig":
        g_h, g_w = koenig_grid_shape(h, w, patch_size, stride)
        if g_h * g_w <= probs.size:
            return resize_like_pil(probs[: g_h * g_w].reshape(g_h, g_w), h, w)
    return resize_like_pil(probs.reshape(n_h, n_w), h, w)


def koenig_grid_shape(height: int, width: int, patch_size: int, stride: int) -> tuple[int, int]:
    """The localisation grid König's ``_merge_out_preds`` fills, row-major, from the patch predictions.

    It is sized from the unpadded image (rounded up to the stride) while the patches were
    taken from the image padded to a multiple of the patch size: when ``(h - patch) % stride
    != 0`` the grid has one row fewer than the patches (the last row is dropped; Crack500's
    360-px height: 22 rows of 23), and when the same holds for the width the rows wrap
    (each later row shifted). ``cam-location``'s ``koenig`` preset reproduces this.
    """
    def n(length: int) -> int:
        if (length - patch_size) % stride:
            length += stride - (length - patch_size) % stride
        return (length - patch_size) // stride + 1

    return n(height), n(width)


class CamLocationLabeler(ClassifierLabeler):
    """GPLL pseudo-labels: classifier localisation + CAM, fused, masked by local multi-Otsu thresholding."""

    name = "cam-location"

    def __init__(self, params: CamLocationParams) -> None:
        for key in ("erode_iterations", "close_iterations"):
            if getattr(params, key) < 0:
                raise ConfigError(f"labeler parameter {key!r} must be >= 0")
        for key in ("loc_stride", "window", "window_stride", "cam_stride"):
            v = getattr(params, key)
            if v is not None and v < 1:
                raise ConfigError(f"labeler parameter {key!r} must be >= 1 or null, got {v}")
        if params.otsu_classes < 2:
            raise ConfigError("labeler parameter 'otsu_classes' must be >= 2")
        if params.cam_method is not None and params.cam_method not in CAM_METHODS:
            raise ConfigError(f"labeler parameter 'cam_method': unknown CAM method {params.cam_method!r} "
                              f"(choose from {', '.join(CAM_METHODS)})")
        super().__init__(params)

    def settings(self) -> dict[str, Any]:
        return resolve(self.params, self._need_classifier().patch_size)

    def maps(self, image: np.ndarray, context: LabelContext) -> tuple[np.ndarray, np.ndarray]:
        """Localisation map and CAM of ``image`` (both [0,1], image size)."""
        clf = self._need_classifier()
        s = self.settings()
        h, w = image.shape[:2]
        batch = self.batch(context)
        loc = localisation_map(clf, image, s["patch_size"], s["loc_stride"], batch, s["loc_grid"])
        if s["cam_mode"] == "whole":
            cam = whole_image_cam(clf, image, s["cam_method"], target=None)  # König: predicted class
            cam = resize_like_pil(cam, h, w)
        else:
            p = self.params
            cam = image_cam(clf, image, s["cam_method"], s["patch_size"], s["cam_stride"], self.patch_gate,
                            p.gate_threshold, batch)
        return loc, cam

    def soft_map(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        loc, cam = self.maps(image, context)
        s, p = self.settings(), self.params
        seg = gpll_merge(image, loc, cam, s["window"], s["window_stride"], p.otsu_classes, p.fuse_cut,
                         p.erode_iterations, p.bilateral_d, p.bilateral_sigma, p.close_iterations)
        return seg.astype(np.float32) / 255.0

    def to_label(self, image: np.ndarray, soft: np.ndarray) -> PseudoLabel:
        soft = np.clip(soft, 0.0, 1.0).astype(np.float32)
        return PseudoLabel(soft=soft, binary=soft > self.params.threshold)
