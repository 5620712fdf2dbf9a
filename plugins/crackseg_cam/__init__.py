"""The ``cam`` plugin: patch classifier and CAM pseudo-labelers.

Labelers (phase 1 of the paper, §3.2 / §4.4.2):

* one per pytorch-grad-cam method (``gradcam``, ``gradcam++``, ``xgradcam``,
  ``layercam``, ``eigencam``, ...): gated, patch-assembled class activation maps;
* ``cam-crf``: a CAM refined by a dense CRF (PWSC, Dong et al. 2020);
* ``cam-location``: GPLL (König et al. 2022), presets ``crackclip`` and ``koenig``;
* ``cam-ridge``: the classifier's CAM (or the weak labels) says where, the ``ridge`` labeler's
  training-free map which pixels.

All of them need a binary patch classifier: each labeler's ``classifier``
section either names a finished checkpoint (``classifier.checkpoint``) or sets
how one is trained in ``prepare`` from weak labels. The ``train-classifier``
command trains one on its own.

This module only registers; torch, cv2 and pytorch-grad-cam are imported by
the factories' modules when a labeler is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import crackseg

from .params import CAM_METHODS, CamCrfParams, CamLocationParams, CamParams, CamRidgeParams, ClassifierConfig

__all__ = ["CAM_METHODS", "CamParams", "CamCrfParams", "CamLocationParams", "CamRidgeParams", "ClassifierConfig"]

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch", "torchvision", "pytorch_grad_cam", "pydensecrf", "skimage")
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[cam]'"

_CAM_DESCRIPTIONS = {
    "gradcam": "Grad-CAM of a patch classifier (the paper's Grad-CAM baseline)",
    "gradcam++": "Grad-CAM++ of a patch classifier",
}


def _cam_factory(method: str) -> Callable[..., Any]:
    def build(**params: Any) -> Any:
        from .cams import CamLabeler

        return CamLabeler(method, CamParams(**params))

    build.__name__ = f"build_{method}"
    return build


def _build_crf(**params: Any) -> Any:
    from .crf import CamCrfLabeler

    return CamCrfLabeler(CamCrfParams(**params))


def _build_cam_ridge(**params: Any) -> Any:
    from .cam_ridge import CamRidgeLabeler

    return CamRidgeLabeler(CamRidgeParams(**params))


def _build_location(**params: Any) -> Any:
    from .location import CamLocationLabeler

    return CamLocationLabeler(CamLocationParams(**params))


#: the patch classifier on demo data (the synthetic images): a ResNet18 from scratch on 64-px
#: patches for 3 short epochs, so every CAM labeler finishes in about a minute on 2 CPU cores
#: (benchmarks/labelers.py --synthetic measures it); the paper's ResNet50 x 10 epochs takes far longer
DEMO_CLASSIFIER: dict[str, Any] = {
    "arch": "resnet18", "weights": None, "patch_size": 64, "stride": 32, "augment": "random",
    "epochs": 3, "batch_size": 32, "lr": 0.01, "lr_decay": 0.5, "max_patches_per_epoch": 1024,
}


@crackseg.hookimpl
def register_labelers(register: Any) -> None:
    # demo data carries patch labels (the synthetic images' 32-px weak labels): they gate every CAM labeler
    demo = {"classifier": DEMO_CLASSIFIER, "gate": "labels"}
    for name, cls in CAM_METHODS.items():
        register(name, _cam_factory(name), params=CamParams, demo=demo,
                 description=_CAM_DESCRIPTIONS.get(name, f"{cls} (pytorch-grad-cam) of a patch classifier"))
    register("cam-crf", _build_crf, params=CamCrfParams, demo=demo,
             description="CAM refined by a dense CRF (PWSC, Dong et al. 2020)")
    register("cam-location", _build_location, params=CamLocationParams, demo=demo,
             description="classifier localisation + CAM + local multi-Otsu (GPLL, König et al. 2022)")
    register("cam-ridge", _build_cam_ridge, params=CamRidgeParams, demo=demo,
             description="the classifier's CAM (or the weak labels) says where, the ridge map which pixels")


@crackseg.hookimpl
def register_commands(cli: Any) -> None:
    from .commands import register

    register(cli)
