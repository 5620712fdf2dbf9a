"""``cam-crf``: a CAM refined by a fully connected CRF (PWSC, Dong et al. 2020).

The unary term is ``-log`` of the probabilities ``[1 - cam, cam]``
(pydensecrf's ``unary_from_softmax``); the pairwise terms are a Gaussian
(smoothness) and a bilateral (appearance, on the RGB image) kernel. PWSC's own
settings are not public (no code, full text unavailable). The kernels are
pydensecrf's README example (Gaussian sxy 3, compat 3; bilateral sxy 80, srgb
13, compat 10; 5 mean-field iterations); the CAM that feeds them was chosen on
DeepCrack-train masks (docs/benchmarks.md): Grad-CAM++ patch maps without the
p(crack) gate, since a gated map is too weak a unary and the CRF erases it
(pseudo-label F 0.012 → 0.70 on ten DeepCrack-train images). The soft map is
the CRF's crack marginal; the binary mask is its argmax (crack marginal ≥ 0.5).
"""

from __future__ import annotations

import numpy as np

from crackseg import ConfigError, LabelContext, PseudoLabel

from .cams import CAM_METHODS, ClassifierLabeler, image_cam
from .params import CamCrfParams


def dense_crf(image: np.ndarray, cam: np.ndarray, gaussian_sxy: float = 3.0, gaussian_compat: float = 3.0,
              bilateral_sxy: float = 80.0, bilateral_srgb: float = 13.0, bilateral_compat: float = 10.0,
              iterations: int = 5) -> np.ndarray:
    """Crack marginal ``float32 [H,W]`` of a 2-label dense CRF on ``uint8 RGB`` ``image`` and ``cam`` in [0,1]."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    h, w = cam.shape
    fg = np.clip(cam.astype(np.float32), 0.0, 1.0)
    probs = np.ascontiguousarray(np.stack([1.0 - fg, fg]).astype(np.float32))
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb,
                             rgbim=np.ascontiguousarray(image[:, :, :3].astype(np.uint8)), compat=bilateral_compat)
    q = np.array(crf.inference(iterations), dtype=np.float32).reshape(2, h, w)
    return q[1]


class CamCrfLabeler(ClassifierLabeler):
    """CAM → dense CRF refinement."""

    name = "cam-crf"
    fallback_gate = "none"  # its default: the CRF needs the full-strength unary

    def __init__(self, params: CamCrfParams) -> None:
        if params.cam_method not in CAM_METHODS:
            raise ConfigError(f"labeler parameter 'cam_method': unknown CAM method {params.cam_method!r} "
                              f"(choose from {', '.join(CAM_METHODS)})")
        if params.iterations < 1:
            raise ConfigError(f"labeler parameter 'iterations' must be >= 1, got {params.iterations}")
        super().__init__(params)

    def cam(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        size, stride = self.geometry()
        p = self.params
        return image_cam(self._need_classifier(), image, p.cam_method, size, stride, self.patch_gate,
                         p.gate_threshold, self.batch(context))

    def refine(self, image: np.ndarray, cam: np.ndarray) -> PseudoLabel:
        p = self.params
        q = dense_crf(image, cam, p.gaussian_sxy, p.gaussian_compat, p.bilateral_sxy, p.bilateral_srgb,
                      p.bilateral_compat, p.iterations)
        return self.to_label(image, q)

    def soft_map(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        p = self.params
        return dense_crf(image, self.cam(image, context), p.gaussian_sxy, p.gaussian_compat, p.bilateral_sxy,
                         p.bilateral_srgb, p.bilateral_compat, p.iterations)
