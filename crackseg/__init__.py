"""crackseg: weakly supervised crack segmentation, assembled from plugins.

Public API::

    import crackseg
    model = crackseg.create_backbone("unet", encoder="resnet18")
    crackseg.list_plugins("backbones", "deepcrack*")

Imports: torch, cv2, matplotlib, scipy.ndimage and skan (and the core modules that need them at module
level: ``training``, ``inference``, ``checkpoints``, ``backbone``, ``losses``) are
imported inside the functions that use them, so that ``import crackseg``, ``crackseg
--help`` and ``crackseg evaluate`` start fast and work without torch. Everything
else is imported at the top of its module.
"""

from __future__ import annotations

from .components import (
    create,
    create_backbone,
    create_dataset,
    create_labeler,
    create_loss,
    create_prompt_set,
    create_trainer,
    get_entry,
    list_plugins,
    validate_params,
)
from .errors import ConfigError, CracksegError, DataError, UnknownPluginError
from .plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "create_backbone",
    "create_labeler",
    "create_loss",
    "create_prompt_set",
    "create_dataset",
    "create_trainer",
    "create",
    "get_entry",
    "list_plugins",
    "validate_params",
    "CracksegError",
    "ConfigError",
    "DataError",
    "UnknownPluginError",
]
