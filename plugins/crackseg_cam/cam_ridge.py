"""``cam-ridge``: the patch classifier (or the weak labels) says *where* the crack is, the ridge map *which pixels*.

A CAM is blob-shaped and misses thin cracks' shape; the training-free ridge map (the ``ridge`` labeler's)
follows every dark line, cracks and joints and texture alike. Their product keeps the lines where the
classifier sees crack: the CAM (the p(crack)-gated, patch-assembled map of ``cam_method``) is normalised
to its maximum and spread by a maximum filter (``cam_spread``), so a crack's whole length survives where
the CAM marks part of it, then multiplies the ridge map. With ``gate: labels`` an image's patch labels
replace the CAM where it has them (zero in its no-crack patches), and an image labelled no-crack is
empty; a photo with only an image-level crack label is located by the CAM. The binary label is the
ridge labeler's cut of the product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crackseg import ConfigError, LabelContext, PseudoLabel
from crackseg_ridge import RidgeLabeler

from .cams import ClassifierLabeler, cam_class, image_cam
from .params import CamRidgeParams


class CamRidgeLabeler(ClassifierLabeler):
    """CAM (or weak labels) × ridge map (see the module docstring)."""

    name = "cam-ridge"

    def __init__(self, params: CamRidgeParams) -> None:
        cam_class(params.cam_method)  # an unknown method fails now
        if params.cam_spread < 0 or not 0.0 <= params.cam_floor <= 1.0:
            raise ConfigError("labeler.cam_spread must be >= 0 and labeler.cam_floor in [0, 1]")
        self.ridge = RidgeLabeler(params.ridge)
        super().__init__(params)

    def where(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        """Where the classifier sees crack: the spread CAM in [0, 1] (``cam_floor`` where it sees none)."""
        import cv2

        p: Any = self.params
        size, stride = self.geometry()
        cam = image_cam(self._need_classifier(), image, p.cam_method, size, stride, self.patch_gate,
                        p.gate_threshold, self.batch(context))
        top = float(cam.max())
        if top <= 0:
            return np.full(cam.shape, p.cam_floor, np.float32)
        cam = cam / top
        if p.cam_spread > 1:
            cam = cv2.dilate(cam, np.ones((p.cam_spread, p.cam_spread), np.uint8))
        return (p.cam_floor + (1.0 - p.cam_floor) * cam).astype(np.float32)

    def soft_map(self, image: np.ndarray, context: LabelContext) -> np.ndarray:
        where = self.where(image, context) if self.patch_gate != "none" else 1.0
        return (self.ridge.soft_map(image) * where).astype(np.float32)

    def to_label(self, image: np.ndarray, soft: np.ndarray) -> PseudoLabel:
        return self.ridge.to_label(soft)
