"""The module paths of crackseg 0.1, kept for one minor release (0.2.x) with a ``DeprecationWarning``.

Release 0.2 laid the core out as the pipeline runs (``crackseg.base`` → ``plugins`` → ``config``
→ ``data`` → ``labels`` → ``training`` → ``prediction`` → ``evaluation`` → ``apps`` → ``cli``)
and made ``crackseg`` itself the public API. A plugin written against 0.1 imports from the flat
modules (``from crackseg.data import ListDataset``, ``from crackseg.errors import ConfigError``):
those imports still work, warn once, and name the public spelling. Release 0.3 removes them.

Two kinds of old path:

* a module that no longer exists under its name (``crackseg.labeler``, ``crackseg.errors``, ...):
  a finder on ``sys.meta_path`` answers it with the module that now holds its code;
* a module whose name is now a stage package (``crackseg.config``, ``crackseg.data``,
  ``crackseg.training``, ``crackseg.evaluation``): the package's ``__getattr__``
  (:func:`package_getattr`) answers the old names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from crackseg._api import API

#: the release that removes the old paths
REMOVED_IN = "0.3"

#: crackseg 0.1 module -> the module that holds its code now
MODULES: dict[str, str] = {
    "crackseg.errors": "crackseg.base.errors",
    "crackseg.io": "crackseg.base.io",
    "crackseg.keys": "crackseg.base.hashing",
    "crackseg.locks": "crackseg.base.locks",
    "crackseg.schema": "crackseg.base.schema",
    "crackseg.distributed": "crackseg.base.distributed",
    "crackseg.overlays": "crackseg.base.overlays",
    "crackseg.tables": "crackseg.base.tables",
    "crackseg.svg": "crackseg.base.svg",
    "crackseg.sanity": "crackseg.base.sanity",
    "crackseg.components": "crackseg.plugins.factory",
    "crackseg.plugins.report": "crackseg.plugins.inventory",
    "crackseg.layers": "crackseg.config.layers",
    "crackseg.search_space": "crackseg.config.search_space",
    "crackseg.run_folder": "crackseg.config.run_folder",
    "crackseg.labeler": "crackseg.labels.contract",
    "crackseg.pseudo_labels": "crackseg.labels.pseudo_labels",
    "crackseg.backbone": "crackseg.training.backbones",
    "crackseg.checkpoints": "crackseg.training.checkpoints",
    "crackseg.engine": "crackseg.training.engine",
    "crackseg.trainer": "crackseg.training.contract",
    "crackseg.losses": "crackseg.training.losses",
    "crackseg.windows": "crackseg.prediction.windows",
    "crackseg.inference": "crackseg.prediction.predictor",
    "crackseg.onnx_model": "crackseg.prediction.onnx_predictor",
    "crackseg.predict": "crackseg.prediction.predict_folder",
    "crackseg.metrics": "crackseg.evaluation.metrics",
    "crackseg.runner": "crackseg.apps.runner",
    "crackseg.tune": "crackseg.apps.tune",
    "crackseg.report": "crackseg.apps.report",
    "crackseg.measure": "crackseg.apps.measure",
    "crackseg.export": "crackseg.apps.export",
    "crackseg.scaffold": "crackseg.apps.scaffold",
    "crackseg.compare": "crackseg.apps.compare",
    **{f"crackseg.compare.{m}": f"crackseg.apps.compare.{m}"
       for m in ("cells", "command", "grid", "preflight", "render", "results", "store")},
}

#: crackseg 0.1 modules whose name is a stage package now -> the modules that hold their old names
PACKAGES: dict[str, tuple[str, ...]] = {
    "crackseg.config": ("crackseg.config.run_config",),
    "crackseg.data": ("crackseg.data.samples", "crackseg.data.loading", "crackseg.data.factory"),
    "crackseg.training": ("crackseg.training.trainer_tools",),
    "crackseg.evaluation": ("crackseg.evaluation.scoring",),
}

#: names that left their 0.1 module for another one (old module -> name -> its home now)
NAMES: dict[str, dict[str, str]] = {
    "crackseg.components": {
        "create_dataset": "crackseg.data.factory", "create_labeler": "crackseg.labels.factory",
        **{n: "crackseg.training.factory" for n in ("create_backbone", "create_loss", "create_prompt_set",
                                                     "create_trainer", "create_logger")},
    },
    "crackseg.checkpoints": {"load_model": "crackseg.training.factory"},
    "crackseg.trainer": {"TrainResult": "crackseg.training.result", "LabelFiles": "crackseg.labels.contract"},
    "crackseg.metrics": {"crack_mask": "crackseg.base.maps", "pred_to_uint8": "crackseg.base.maps"},
    "crackseg.plugins.manager": {"one_line": "crackseg.base.console"},
}


def _public(name: str) -> bool:
    return name in API


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated since crackseg 0.2 and goes away in {REMOVED_IN}: use {new}",
                  DeprecationWarning, stacklevel=3)


def _spelling(module: str, name: str) -> str:
    return f"crackseg.{name}" if _public(name) else f"{module}.{name}"


class _Alias(ModuleType):
    """An old module path: every attribute comes from the new module (names that moved on, from theirs)."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old)
        self.__dict__["_old"], self.__dict__["_new"] = old, new

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            return getattr(importlib.import_module(self._new), name)
        home = NAMES.get(self._old, {}).get(name, self._new)
        value = getattr(importlib.import_module(home), name)
        _warn(f"{self._old}.{name}", _spelling(home, name))
        self.__dict__[name] = value  # one warning per name and process
        return value

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self._new))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MODULES[spec.name]
        module = _Alias(spec.name, new)
        target = importlib.import_module(new)
        if hasattr(target, "__path__"):  # an old package (crackseg.compare): its submodules are old paths too
            module.__path__ = []
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        spec = importlib.util.spec_from_loader(fullname, _Loader())
        return spec


_FINDER = _Finder()


def install() -> None:
    """Answer the old module paths (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def package_getattr(package: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of a stage package whose name was a 0.1 module: old names, with a warning."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is not None:
            raise AttributeError(name)  # a submodule of the stage: the import system loads it, no warning
        for home in PACKAGES[package]:
            module = importlib.import_module(home)
            if hasattr(module, name):
                value = getattr(module, name)
                _warn(f"{package}.{name}", _spelling(home, name))
                setattr(sys.modules[package], name, value)  # one warning per name and process
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
