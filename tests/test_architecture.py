"""The core knows no plugin: no built-in plugin's name or parameter in crackseg/, and generic contracts instead.

Also: ``crackseg evaluate`` and ``crackseg plugins`` work without torch, and a
third-party labeler with a model of its own trains it through the artefact contract.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import re
import subprocess
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

import numpy as np
import pytest

import crackseg
from conftest import REPO
from crackseg.config.run_config import DataSplits, EvalConfig, PredictConfig, RunConfig, TrainConfig, WeakLabelsConfig
from crackseg.plugins import EXTRAS, KINDS, SINGULAR, get_manager
from crackseg.plugins.manager import BUILTIN_DISTRIBUTION

CORE = REPO / "crackseg"

#: words of the core's own vocabulary that a built-in plugin happens to use too (name or parameter)
CORE_WORDS = {
    # the metric protocol named after the CrackCLIP authors' evaluation script (crackseg.evaluation.metrics)
    "crackclip": "metric protocol",
    # the classes of the prompt-set contract ({"normal": [...], "crack": [...]}) and the English word
    "crack": "prompt-set contract",
    # English words the core uses for files on disk, images, models and sizes
    **{w: "generic word" for w in (
        "folder", "path", "root", "size", "model", "images", "masks", "splits", "layers", "weights", "width",
        "height", "depth", "checkpoint", "window", "iterations", "style", "stride", "preset", "object", "gate",
        "alpha", "gamma", "activation", "smooth", "dropout", "arch", "edge", "generic", "encoder", "pretrained",
        "file", "csv", "pad",
        # crack measurements (crackseg measure) and image processing words a ridge filter shares
        "method", "min_area", "min_width", "max_width", "percentile", "levels", "binarise", "low", "high", "scales",
        "flatten", "photos",
    )},
}


def _core_vocabulary() -> set[str]:
    words = set(CORE_WORDS) | set(KINDS) | set(SINGULAR.values()) | {e for v in EXTRAS.values() for e in v}
    for cls in (RunConfig, TrainConfig, PredictConfig, EvalConfig, DataSplits, WeakLabelsConfig):
        words |= {f.name for f in dataclasses.fields(cls)}
    return words


def _builtin_words() -> set[str]:
    """Every name a built-in plugin registers and every parameter name of its components."""
    m = get_manager()
    out: set[str] = set()

    def params(cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.add(f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                params(hints[f.name])

    for kind in KINDS:
        for entry in m.registries[kind]._entries.values():
            if m.info[entry.plugin].distribution != BUILTIN_DISTRIBUTION:
                continue
            out.add(entry.name)
            if entry.params is not None:
                params(entry.params)
    return out


def _code_tokens(path: Path):
    """NAME and STRING tokens outside docstrings and comments."""
    src = path.read_text(encoding="utf-8")
    docs: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) and tok.start[0] not in docs:
            yield tok


def test_core_names_no_builtin_plugin_or_parameter():
    # ``prompts`` is both the core's plugin kind (and its --prompts flag) and crackclip's parameter: the
    # core may use the kind; which parameter takes a prompt set is the backbone's ``prompt_param`` extra
    forbidden = sorted(_builtin_words() - _core_vocabulary(), key=len, reverse=True)
    # what the check looks for, so that it cannot silently check nothing
    assert {"classifier", "random_init", "synthetic", "gradcam", "fsv", "unet", "cam-location", "smp-fpn",
            "prompt_object", "train_prompts", "gate_threshold", "token_cache", "n_train", "bce", "dice",
            "ridge", "normalise_percentile"} <= set(forbidden)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in forbidden) + r")(?![\w-])")
    hits = []
    for path in sorted(CORE.rglob("*.py")):
        for tok in _code_tokens(path):
            for m in pattern.finditer(tok.string):
                hits.append(f"{path.relative_to(REPO)}:{tok.start[0]}: {m.group(1)!r} in {tok.string[:80]}")
    assert not hits, "the core names built-in plugins:\n" + "\n".join(hits)


def test_core_imports_no_plugin_module():
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("crackseg_"), f"{path}: imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("crackseg_") for a in node.names), f"{path}: imports a plugin"


def test_metric_protocols_agree():
    from crackseg.config.run_config import PROTOCOLS
    from crackseg.evaluation.metrics import PROTOCOLS as IMPLEMENTED

    assert PROTOCOLS == IMPLEMENTED


# -- a lean install: no torch --------------------------------------------------------------------
BLOCK = "import sys\nfor _m in {mods!r}:\n    sys.modules[_m] = None  # 'import torch' now fails as if not installed\n"
HEAVY = ["torch", "torchvision", "open_clip", "segmentation_models_pytorch", "pytorch_grad_cam", "pydensecrf",
         "skimage", "matplotlib", "timm", "transformers"]


def _without_torch(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "lean.py"
    script.write_text(BLOCK.format(mods=HEAVY) + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_evaluate_and_plugins_work_without_torch(tmp_path):
    from crackseg.base.io import write_png

    gt = np.zeros((16, 16), np.uint8)
    gt[5:8, :] = 255
    write_png(tmp_path / "p" / "a.png", (gt // 2).astype(np.uint8))
    write_png(tmp_path / "g" / "a.png", gt)
    r = _without_torch(f"""
        from crackseg.cli import main
        try:
            main(["evaluate", {str(tmp_path / 'p')!r}, {str(tmp_path / 'g')!r}, "--json",
                  "--prf", {str(tmp_path / 'prf.tsv')!r}])
        except SystemExit as exc:
            assert not exc.code, exc.code
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ods"] == pytest.approx(1.0)
    r = _without_torch("""
        from crackseg.cli import main
        main(["plugins"])
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "NOT AVAILABLE: needs torch, open_clip" in r.stdout and "pip install 'crackseg[clip]'" in r.stdout
    assert "datasets: synthetic" in r.stdout  # plugins that need no torch still work
    r = _without_torch("""
        from crackseg.cli import main
        main(["run", "--backbone", "crackclip"])
    """, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("crackseg: error: backbone 'crackclip' is not available: "
                                "plugin 'crackclip' needs torch, "
                                "open_clip, which are not installed (pip install 'crackseg[clip]')")


# -- a third-party labeler that trains a model of its own ----------------------------------------
class _ThresholdLabeler:
    """Learns one grey-level threshold from the training masks (its 'model'), saved in its artefact folder."""

    trained: list[Path] = []

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self.threshold: float | None = None

    def artefacts(self):
        return {"threshold-model": {"margin": self.margin}}

    def prepare(self, train, context):
        folder = context.artefact_dir("threshold-model")
        path = folder / "model.json"
        if not path.is_file():
            crack = np.concatenate([s.load_image().mean(axis=2)[s.mask()] for s in train if s.mask().any()])
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"threshold": float(np.percentile(crack, 90)) + self.margin}))
            _ThresholdLabeler.trained.append(path)
        self.threshold = json.loads(path.read_text())["threshold"]

    def label(self, samples, context):
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            grey = s.load_image().mean(axis=2)
            binary = grey <= self.threshold
            out.append(PseudoLabel(soft=binary.astype(np.float32), binary=binary))
        return out

    def fingerprint(self):
        return f"threshold:{self.threshold}"


@dataclasses.dataclass
class _ThresholdParams:
    margin: float = 0.0


class _Plugin:
    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        register("threshold-model", _ThresholdLabeler, params=_ThresholdParams, description="learned threshold")


def test_third_party_labeler_trains_its_own_model_without_core_changes(tmp_path):
    from crackseg.apps.runner import run
    from crackseg.config.run_config import resolve_config
    from crackseg.testing import registered_plugin

    tiny = {"data": {"name": "synthetic", "n_train": 4, "n_test": 2, "size": 48},
            "labeler": {"name": "threshold-model"}, "backbone": {"encoder": "resnet18"},
            "train": {"epochs": 1, "batch_size": 2}, "predict": {"overlays": 0}, "device": "cpu"}
    _ThresholdLabeler.trained.clear()
    with registered_plugin(_Plugin, "threshold-test"):
        shared = tmp_path / "shared"
        for out in ("a", "b"):  # two runs sharing stages: the model is trained once
            cfg = resolve_config([tiny, {"out": str(tmp_path / out), "shared_dir": str(shared)}])
            metrics = run(cfg, quiet=True)
            assert metrics["labeler"] == "threshold-model" and metrics["n"] == 2
        assert len(_ThresholdLabeler.trained) == 1
        assert _ThresholdLabeler.trained[0].parent.parent == shared / "artefacts"
        # another setting of the labeler's own params is another artefact
        cfg = resolve_config([tiny, {"out": str(tmp_path / "c"), "shared_dir": str(shared),
                                     "labeler": {"margin": 5.0}}])
        run(cfg, quiet=True)
        assert len(_ThresholdLabeler.trained) == 2
        # without a shared folder the artefact lives in the run folder
        cfg = resolve_config([tiny, {"out": str(tmp_path / "d")}])
        run(cfg, quiet=True)
        assert (tmp_path / "d" / "labeler" / "threshold-model" / "model.json").is_file()
    assert "threshold-model" not in crackseg.list_components("labelers")  # removed again
