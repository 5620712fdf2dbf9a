"""Shared test fixtures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"

#: the real data sets some tests read from ../shared/datasets: what each is and where it comes from
SHARED_DATASETS = {
    "cfd": "CFD, 118 pavement photos with masks, from github.com/cuilimeng/CrackForest-dataset",
    "deepcrack": "DeepCrack, 537 photos with masks, from github.com/yhlleo/DeepCrack",
    "crack500_sample": "18 Crack500 crops with masks, from github.com/TachibanaYoshino/Road-Crack-Segmentation--Keras",
}


def missing_data_reason(name: str = "") -> str:
    """The skip reason of a test that reads ``../shared/datasets/NAME`` (any of them: ``name`` empty)."""
    what = f"../shared/datasets/{name} ({SHARED_DATASETS.get(name, 'a real data set')})" if name else \
        "../shared/datasets (the real data sets: " + "; ".join(SHARED_DATASETS.values()) + ")"
    return (f"needs {what} in crackseg's folder layout (images/, masks/, splits/): the development checkout has it "
            f"beside the repository; elsewhere put the download there (README, section Datasets)")


#: the crackseg extra that installs each optional module a test imports (pytest.importorskip)
EXTRA_OF = {"torch": "baselines", "torchvision": "baselines", "segmentation_models_pytorch": "baselines",
            "matplotlib": "baselines", "pytorch_grad_cam": "cam", "pydensecrf": "cam", "open_clip": "clip",
            "transformers": "clip", "skimage": "measure", "skan": "measure", "onnx": "onnx", "onnxruntime": "onnx",
            "onnxscript": "onnx", "onnxconverter_common": "onnx", "jinja2": "report", "optuna": "tune"}
_NOT_IMPORTED = re.compile(r"could not import '([\w.]+)'")


def install_hint(reason: str) -> str:
    """A skip reason of ``pytest.importorskip`` ("could not import 'skan': ...") with how to install the module."""
    found = _NOT_IMPORTED.search(reason)
    if not found:
        return reason
    extra = EXTRA_OF.get(found.group(1).split(".")[0])
    how = f"pip install 'crackseg[{extra}]'" if extra else "pip install -e '.[all,test]'"
    return f"{reason} (install it: {how}; ./dev test installs everything)"


def _explain_skip(report: Any) -> None:
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, reason = report.longrepr
        report.longrepr = (path, line, install_hint(str(reason)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """A test skipped for a missing module says how to install it (see :func:`install_hint`)."""
    outcome = yield
    _explain_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: Any) -> Any:
    """The same for a test file skipped as a whole (a module-level ``pytest.importorskip``)."""
    outcome = yield
    _explain_skip(outcome.get_result())


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests are small; one thread keeps them predictable on a 2-core machine."""
    try:
        import torch

        n = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        yield


def pinned_version(distribution: str) -> str | None:
    """The version of ``distribution`` pinned in constraints.txt (None when it is not pinned)."""
    import re

    wanted = re.sub(r"[-_.]+", "-", distribution).lower()
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep and re.sub(r"[-_.]+", "-", name).lower() == wanted:
            return version.strip()
    return None


def require_pinned(distribution: str) -> None:
    """Skip the calling test unless the installed ``distribution`` is the version constraints.txt pins.

    For assertions that hold for one version of a dependency (e.g. its exact parameter counts).
    """
    from importlib import metadata

    want = pinned_version(distribution)
    have = metadata.version(distribution)
    if want is None:
        pytest.skip(f"constraints.txt pins no version of {distribution}; this test checks the pinned one")
    if have != want:
        pytest.skip(f"{distribution} {have} installed; this test checks the version constraints.txt pins: "
                    f"pip install {distribution}=={want}, or ./dev test")


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``crackseg ARGS`` in this process (``crackseg.cli.main``); return what a subprocess would.

    For end-to-end tests where a subprocess adds nothing but start-up time: same argument
    parsing, same one-line errors and exit statuses, stdout and stderr captured.
    """
    import contextlib
    import io

    from crackseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["crackseg", *args], code, out.getvalue(), err.getvalue())


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 600):
    """Run ``python -m crackseg ARGS`` in a subprocess; return the CompletedProcess.

    For what needs a process of its own: installed plugins (entry points on ``PYTHONPATH``),
    signals, environment variables read at start-up, torch.distributed.
    """
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "crackseg", *args], capture_output=True, text=True,
        env=full_env, cwd=cwd or REPO, timeout=timeout,
    )


def make_plugin_site(site: Path, module: str, source: str, dist: str | None = None, version: str = "0.1.0",
                     entry_point: str | None = None) -> dict[str, str]:
    """Install a plugin the way pip leaves it (module + dist-info with an entry point) into ``site``.

    Returns the environment (PYTHONPATH) under which crackseg subprocesses see it.
    """
    import textwrap

    dist = dist or module.replace("_", "-")
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[crackseg]\n{entry_point or module} = {module}\n")
    return {"PYTHONPATH": str(site)}


def channel_mean_onnx(path: Path, meta: Any) -> Path:
    """A tiny ONNX graph (channel mean: [N,3,H,W] → [N,1,H,W]) carrying ``meta`` (a dict, or a string as it is) as
    its crackseg metadata; ``None`` adds none. Fast, and predicts without torch."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], initializer=[axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "crackseg", meta if isinstance(meta, str) else json.dumps(meta)
    onnx.save(model, str(path))
    return path
