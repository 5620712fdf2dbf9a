"""crackseg's built-in datasets: ``synthetic`` (default), ``folder``, ``classes``, ``cfd``, ``deepcrack``, ``crack500``.

This module only registers; the readers are imported when a dataset is built,
so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

import crackseg

from .params import (
    CFDParams,
    ClassesParams,
    Crack500Params,
    DeepCrackParams,
    FolderParams,
    PhotosParams,
    SyntheticParams,
)

__all__ = ["CFDParams", "ClassesParams", "Crack500Params", "DeepCrackParams", "FolderParams", "PhotosParams",
           "SyntheticParams"]


def _build_synthetic(**params: Any) -> Any:
    from .synthetic import SyntheticDataset

    return SyntheticDataset(**params)


def _build_folder(**params: Any) -> Any:
    from .folder import build_folder

    return build_folder(**params)


def _build_classes(**params: Any) -> Any:
    from .classes import build_classes

    return build_classes(**params)


def _is_class_layout(path: Any) -> bool:
    from .classes import is_class_layout

    return is_class_layout(path)


def _build_photos(**params: Any) -> Any:
    from .classes import build_photos

    return build_photos(**params)


def _is_photo_folder(path: Any) -> bool:
    from .classes import is_photo_folder

    return is_photo_folder(path)


def _build_cfd(**params: Any) -> Any:
    from .readers import build_cfd

    return build_cfd(**params)


def _build_deepcrack(**params: Any) -> Any:
    from .readers import build_deepcrack

    return build_deepcrack(**params)


def _build_crack500(**params: Any) -> Any:
    from .readers import build_crack500

    return build_crack500(**params)


@crackseg.hookimpl
def register_datasets(register: Any) -> None:
    """Register the built-in datasets."""
    register(
        "synthetic",
        _build_synthetic,
        params=SyntheticParams,
        description="procedural pavement/concrete images with thin branching cracks, stains, shadows; exact masks",
        # train at the images' own size instead of resampling them
        train=lambda p: {"image_size": max(p["height"] or p["size"], p["width"] or p["size"])},
        demo=True,  # for trying the pipeline: labelers use their small demo settings here
        default=True,
    )
    register(
        "folder",
        _build_folder,
        params=FolderParams,
        description="images/ + masks/ (same stems, crack > 127, or 1 in a 0/1 mask) + optional splits/<name>.txt",
        opens={"param": "root"},  # --data PATH reads a folder with this dataset
    )
    register(
        "classes",
        _build_classes,
        params=ClassesParams,
        description="a crack classification set: crack/ + no_crack/ folders (Positive/Negative, SDNET2018 CD/UD); "
                    "image-level weak labels, no masks",
        opens={"param": "root", "when": _is_class_layout},  # --data PATH of class folders
    )
    register(
        "photos",
        _build_photos,
        params=PhotosParams,
        description="a plain folder of photos, no masks, no labels: every photo is labelled, trained on and predicted",
        opens={"param": "root", "when": _is_photo_folder},  # --data PATH of photos
    )
    register(
        "cfd",
        _build_cfd,
        params=CFDParams,
        description="CrackForest download: image/*.jpg + groundTruth/*.mat (Segmentation == 2)",
    )
    register(
        "deepcrack",
        _build_deepcrack,
        params=DeepCrackParams,
        description="DeepCrack download: train_img/, train_lab/, test_img/, test_lab/",
    )
    register(
        "crack500",
        _build_crack500,
        params=Crack500Params,
        description="Crack500 download: traincrop/, valcrop/, testcrop/ (<stem>.jpg + <stem>.png)",
    )
