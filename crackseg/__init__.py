"""crackseg: weakly supervised crack segmentation, assembled from plugins.

``crackseg`` is the one import surface for plugins and scripts: everything a plugin or a
script needs is a name of this package, listed in ``__all__`` and in CONTRIBUTING.md's
"Plugin API" section, and kept stable under semantic versioning (a public name that moves or
goes away keeps working, with a ``DeprecationWarning``, for one minor release). The modules
below it (``crackseg.base``, ``crackseg.data``, ``crackseg.labels``, ...) are the
implementation, laid out in the order the pipeline runs; import from them at your own risk.

Scripts::

    import crackseg
    model = crackseg.init_model("runs/demo")              # a run folder, model.pt or checkpoint.pt
    prob = crackseg.inference_model(model, "photo.jpg")   # float32 [H, W] crack probability

Plugins::

    import crackseg

    class MyLabeler:
        def label(self, samples, context):
            return [crackseg.PseudoLabel(soft=..., binary=...) for s in samples]

``import crackseg`` is light: every name is loaded from its module on first use (a module
``__getattr__``, as pytest does), so torch is imported only when a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crackseg._api import API as _API
from crackseg.base.version import __version__

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'crackseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


from crackseg import _moved  # noqa: E402  (after the names above: the shims resolve through them)

_moved.install()

if TYPE_CHECKING:  # pragma: no cover - what a type checker sees of the lazy names
    from crackseg.base.console import warn
    from crackseg.base.distributed import DistEnv, barrier, detect_distributed, init_distributed, resolve_device, shard
    from crackseg.base.errors import (
        ConfigError,
        CracksegError,
        DataError,
        PluginError,
        StorageError,
        UnknownComponentError,
        UnknownPluginError,
    )
    from crackseg.base.image_stats import IMAGENET_MEAN, IMAGENET_STD
    from crackseg.base.io import (
        IMAGE_SUFFIXES,
        atomic_write,
        image_shape,
        images_by_stem,
        read_gray,
        read_image,
        read_mask,
        write_json,
        write_png,
        write_text,
    )
    from crackseg.base.maps import crack_mask, pred_to_uint8
    from crackseg.base.schema import dataclass_from_dict, dataclass_to_dict
    from crackseg.cli import main
    from crackseg.config.layers import load_yaml, parse_set
    from crackseg.config.run_config import TrainConfig, data_spec
    from crackseg.config.search_space import TuneParam, declared_space
    from crackseg.data.factory import create_dataset
    from crackseg.data.samples import CrackDataset, ListDataset, Sample, file_sample
    from crackseg.data.weak_labels import (
        PatchLabel,
        WeakLabels,
        label_from_word,
        read_weak_labels_csv,
        weak_labels_from_mask,
    )
    from crackseg.evaluation.metrics import MetricAccumulator, MetricsResult, evaluate_dirs
    from crackseg.labels.contract import LabelContext, Labeler, LabelFiles, PseudoLabel
    from crackseg.labels.factory import create_labeler
    from crackseg.plugins.factory import create, get_entry, list_components, list_plugins, validate_params
    from crackseg.plugins.hookspecs import hookimpl
    from crackseg.prediction.models import CrackModel, Prediction, inference_model, init_model
    from crackseg.testing import (
        BackboneContract,
        DatasetContract,
        LabelerContract,
        LossContract,
        PromptSetContract,
        TrainerContract,
        registered_plugin,
        tiny_crack_samples,
        write_tiny_dataset,
    )
    from crackseg.training.backbones import (
        as_outputs,
        input_stats,
        pad_to_multiple,
        size_multiple,
    )
    from crackseg.training.checkpoints import read_torch_file
    from crackseg.training.contract import Trainer, TrainJob
    from crackseg.training.engine import Engine, EngineSettings
    from crackseg.training.factory import (
        create_backbone,
        create_logger,
        create_loss,
        create_prompt_set,
        create_trainer,
        load_model,
    )
    from crackseg.training.result import TrainResult
    from crackseg.training.trainer_tools import (
        BinaryLabels,
        SegmentationTrainSet,
        TrainForward,
        check_batch,
        collate,
        forward_outputs,
        start_training,
    )
