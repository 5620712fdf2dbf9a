"""The table of crackseg's public names: each name -> the module that defines it.

``crackseg/__init__.py`` loads them lazily from here; CONTRIBUTING.md's "Plugin API" section lists
them (a test holds the two equal). Plain data: importing this module imports nothing else.
"""

from __future__ import annotations

#: public name -> the module that defines it, grouped in the order the pipeline runs
API: dict[str, str] = {}


def _export(module: str, *names: str) -> None:
    for name in names:
        API[name] = module


# -- errors -------------------------------------------------------------------------
_export("crackseg.base.errors", "CracksegError", "ConfigError", "DataError", "StorageError", "PluginError",
        "UnknownComponentError", "UnknownPluginError")
# -- files, images and plain data ---------------------------------------------------------
_export("crackseg.base.io", "IMAGE_SUFFIXES", "read_image", "read_gray", "read_mask", "image_shape",
        "images_by_stem", "atomic_write", "write_png", "write_text", "write_json")
_export("crackseg.base.maps", "crack_mask", "pred_to_uint8")
_export("crackseg.base.schema", "dataclass_from_dict", "dataclass_to_dict")
_export("crackseg.base.console", "warn")
_export("crackseg.base.distributed", "DistEnv", "detect_distributed", "init_distributed", "barrier", "shard",
        "resolve_device")
# -- the plugin system: hooks and construction by name ------------------------------------------
_export("crackseg.plugins.hookspecs", "hookimpl")
_export("crackseg.plugins.factory", "create", "get_entry", "list_components", "list_plugins", "validate_params")
# -- configuration ---------------------------------------------------------------------------
_export("crackseg.config.layers", "load_yaml", "parse_set")
_export("crackseg.config.search_space", "TuneParam", "declared_space")
_export("crackseg.config.run_config", "TrainConfig", "data_spec")
# -- data: samples, datasets ------------------------------------------------------------------
_export("crackseg.data.samples", "Sample", "CrackDataset", "ListDataset", "file_sample")
_export("crackseg.data.weak_labels", "WeakLabels", "PatchLabel", "label_from_word", "weak_labels_from_mask",
        "read_weak_labels_csv")
_export("crackseg.data.factory", "create_dataset")
# -- labels: phase 1 --------------------------------------------------------------------------
_export("crackseg.labels.contract", "PseudoLabel", "LabelContext", "Labeler", "LabelFiles")
_export("crackseg.labels.factory", "create_labeler")
# -- training: phase 2 -------------------------------------------------------------------------
_export("crackseg.training.contract", "TrainJob", "Trainer")
_export("crackseg.training.result", "TrainResult")
_export("crackseg.training.engine", "Engine", "EngineSettings")
_export("crackseg.training.factory", "create_backbone", "create_loss", "create_prompt_set", "create_trainer",
        "create_logger", "load_model")
_export("crackseg.base.image_stats", "IMAGENET_MEAN", "IMAGENET_STD")
_export("crackseg.training.backbones", "as_outputs", "input_stats",
        "size_multiple", "pad_to_multiple")
_export("crackseg.training.trainer_tools", "SegmentationTrainSet", "BinaryLabels", "TrainForward", "collate",
        "check_batch", "forward_outputs", "start_training")
_export("crackseg.training.checkpoints", "read_torch_file")
# -- prediction: the script API ----------------------------------------------------------------
_export("crackseg.prediction.models", "init_model", "inference_model", "CrackModel", "Prediction")
# -- evaluation ----------------------------------------------------------------------------------
_export("crackseg.evaluation.metrics", "MetricAccumulator", "MetricsResult", "evaluate_dirs")
# -- contract tests for plugin authors ------------------------------------------------------------
_export("crackseg.testing", "BackboneContract", "DatasetContract", "LabelerContract", "LossContract",
        "PromptSetContract", "TrainerContract", "registered_plugin", "tiny_crack_samples", "write_tiny_dataset")
# -- the command line -------------------------------------------------------------------------------
_export("crackseg.cli", "main")
