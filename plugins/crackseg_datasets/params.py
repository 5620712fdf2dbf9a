"""Parameter schemas of the built-in datasets (each field is a config key).

Kept free of heavy imports: the plugin's ``__init__`` imports this module at
start-up, the readers themselves are imported only when a dataset is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FolderParams:
    """A folder of ``images/`` and ``masks/`` with the same stems, optional ``splits/*.txt``."""

    #: dataset folder (required)
    root: str = field(default="", metadata={"path": "folder"})
    #: image sub-folder, relative to ``root``
    images: str = "images"
    #: mask sub-folder, relative to ``root``
    masks: str = "masks"
    #: split-list sub-folder, relative to ``root`` (``<name>.txt``, one stem per line)
    splits: str = "splits"
    #: masks are named ``<stem><mask_suffix>.<ext>`` (e.g. ``_mask``); any image extension
    mask_suffix: str = ""
    #: an image without a mask is an error; ``false``: such samples simply have no mask
    require_masks: bool = True
    #: without train/test split files: fraction of stems put in ``test`` (by SHA-1 of the stem)
    test_fraction: float = 0.2


@dataclass
class CFDParams:
    """CrackForest as downloaded: ``image/*.jpg`` and ``groundTruth/*.mat``."""

    #: the CFD folder (holding ``image/`` and ``groundTruth/``)
    root: str = field(default="", metadata={"path": "folder"})
    #: image sub-folder, relative to ``root``
    images: str = "image"
    #: ground-truth sub-folder (MATLAB ``.mat`` files), relative to ``root``
    ground_truth: str = "groundTruth"
    #: ``Segmentation`` labels that count as crack (König et al. use [2, 4])
    crack_labels: tuple[int, ...] = (2,)
    #: fraction of labelled stems put in ``test`` (by SHA-1 of the stem); the paper tests on ``all``
    test_fraction: float = 0.2


@dataclass
class DeepCrackParams:
    """DeepCrack as downloaded: ``train_img``, ``train_lab``, ``test_img``, ``test_lab``."""

    #: the DeepCrack folder (holding ``train_img/`` ...; a ``DeepCrack/`` sub-folder is found too)
    root: str = field(default="", metadata={"path": "folder"})
    #: an image without a label is an error; ``false``: such samples simply have no mask
    require_masks: bool = True


@dataclass
class Crack500Params:
    """Crack500 as downloaded: ``traincrop/``, ``valcrop/``, ``testcrop/`` (+ optional lists)."""

    #: the Crack500 folder (holding ``traincrop/`` ...; a ``CRACK500/`` sub-folder is found too)
    root: str = field(default="", metadata={"path": "folder"})
    #: an image without a mask is an error; ``false``: such samples simply have no mask
    require_masks: bool = True


@dataclass
class SyntheticParams:
    """Procedural pavement/concrete photos with thin branching cracks and exact masks."""

    #: number of training images
    n_train: int = 48
    #: number of test images
    n_test: int = 16
    #: image side in pixels (square unless ``height``/``width`` are given)
    size: int = 128
    #: image height (default: ``size``)
    height: int | None = None
    #: image width (default: ``size``)
    width: int | None = None
    #: everything is a deterministic function of this seed
    seed: int = 0
    #: surface type
    style: Literal["pavement", "concrete", "mixed"] = "mixed"
    #: fraction of images without any crack
    crack_free_fraction: float = 0.15


@dataclass
class ClassesParams:
    """A crack classification set: images in crack / no-crack folders, image-level weak labels, no masks."""

    #: the folder holding the class folders (required)
    root: str = field(default="", metadata={"path": "folder"})
    #: extra folder names that mean crack / no crack (besides crack, positive, CD, ... and no_crack, negative, UD, ...)
    crack_folders: list[str] = field(default_factory=list)
    no_crack_folders: list[str] = field(default_factory=list)
    #: fraction of images put in ``test`` (by SHA-1 of the stem)
    test_fraction: float = 0.2


@dataclass
class PhotosParams:
    """A plain folder of photos: no masks, no labels (the no-annotation path)."""

    #: the folder holding the photos (required)
    root: str = field(default="", metadata={"path": "folder"})
