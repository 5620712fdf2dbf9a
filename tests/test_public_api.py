"""`crackseg` is the one import surface: its names are documented, light, used by every built-in plugin and the
scaffold, and the 0.1 module paths still work with a DeprecationWarning for one minor release."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import crackseg
from conftest import REPO, make_plugin_site

PLUGINS = REPO / "plugins"


def _documented_names() -> list[str]:
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("\n## Plugin API\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        names += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", first_cell)
    return names


def test_the_plugin_api_section_lists_exactly_crackseg_all():
    documented = _documented_names()
    assert len(documented) == len(set(documented)), "a name is listed twice"
    assert set(documented) == set(crackseg.__all__), (
        f"only in CONTRIBUTING: {sorted(set(documented) - set(crackseg.__all__))}; "
        f"only in crackseg.__all__: {sorted(set(crackseg.__all__) - set(documented))}")


def test_every_public_name_resolves_and_unknown_names_fail():
    for name in crackseg.__all__:
        assert getattr(crackseg, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'create_bakbone'"):
        crackseg.create_bakbone  # noqa: B018
    assert set(crackseg.__all__) <= set(dir(crackseg))


def test_import_crackseg_stays_light():
    code = ("import sys, crackseg\n"
            "crackseg.Sample, crackseg.PseudoLabel, crackseg.ConfigError, crackseg.write_png, crackseg.hookimpl\n"
            "heavy = sorted(m for m in ('torch', 'cv2', 'matplotlib', 'skimage', 'onnxruntime') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import crackseg loaded {r.stdout.strip()}"


def _crackseg_imports(source: str, where: str) -> list[str]:
    """The crackseg modules ``source`` imports from, other than ``crackseg`` itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("crackseg.") or (node.module == "crackseg" and any(
                    a.name not in crackseg.__all__ for a in node.names)):
                found.append(f"{where}:{node.lineno}: from {node.module} import "
                             f"{', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno}: import {a.name}" for a in node.names if a.name.startswith("crackseg.")]
    return found


def test_builtin_plugins_import_only_the_public_api():
    bad: list[str] = []
    for path in sorted(PLUGINS.rglob("*.py")):
        bad += _crackseg_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    # attribute access into internals (crackseg.engine.Engine) counts too
    for path in sorted(PLUGINS.rglob("*.py")):
        for m in re.finditer(r"(?<![\w.])crackseg\.([a-z_]+)\.", path.read_text(encoding="utf-8")):
            bad.append(f"{path.relative_to(REPO)}: crackseg.{m.group(1)}.")
    assert not bad, "built-in plugins reach into crackseg's internals:\n" + "\n".join(bad)


def test_the_new_plugin_templates_import_only_the_public_api(tmp_path):
    from crackseg.apps.scaffold import KINDS, new_plugin

    bad: list[str] = []
    for kind in KINDS:
        folder = new_plugin(f"t-{kind}", kind, tmp_path)
        for path in sorted(folder.rglob("*.py")):
            bad += _crackseg_imports(path.read_text(encoding="utf-8"), f"{kind}:{path.name}")
    assert not bad, "\n".join(bad)


# -- the 0.1 module paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("statement", "name", "replacement"), [
    ("from crackseg.errors import ConfigError", "ConfigError", "crackseg.ConfigError"),
    ("from crackseg.data import ListDataset", "ListDataset", "crackseg.ListDataset"),
    ("from crackseg.labeler import PseudoLabel", "PseudoLabel", "crackseg.PseudoLabel"),
    ("from crackseg.io import write_png", "write_png", "crackseg.write_png"),
    ("from crackseg.search_space import declared_space", "declared_space", "crackseg.declared_space"),
    ("from crackseg.trainer import LabelFiles", "LabelFiles", "crackseg.LabelFiles"),
    ("from crackseg.components import create_backbone", "create_backbone", "crackseg.create_backbone"),
    ("from crackseg.metrics import crack_mask", "crack_mask", "crackseg.crack_mask"),
    ("from crackseg.config import resolve_config", "resolve_config", "crackseg.config.run_config.resolve_config"),
    ("from crackseg.compare.grid import load_grid", "load_grid", "crackseg.apps.compare.grid.load_grid"),
])
def test_an_old_import_works_and_warns_with_the_new_spelling(statement, name, replacement):
    namespace: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(statement, namespace)  # noqa: S102 - the statement is one of the parametrized imports
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(f"use {replacement}" in m and "goes away in 0.3" in m for m in messages), messages
    if hasattr(crackseg, name) and name in crackseg.__all__:
        assert namespace[name] is getattr(crackseg, name)  # the same object, not a copy


def test_an_old_module_attribute_is_the_new_object():
    import crackseg.engine  # type: ignore[import-not-found]  # noqa: F401 - the 0.1 path

    with pytest.warns(DeprecationWarning, match=r"crackseg\.engine\.Engine is deprecated.*use crackseg\.Engine"):
        engine = sys.modules["crackseg.engine"].Engine
    assert engine is crackseg.Engine


OLD_PLUGIN = '''
"""A labeler written against crackseg 0.1, importing from the modules an outside author used."""
from dataclasses import dataclass, field

import numpy as np

import crackseg
from crackseg.data import ListDataset, file_sample
from crackseg.errors import ConfigError
from crackseg.io import write_png
from crackseg.labeler import PseudoLabel
from crackseg.search_space import declared_space


@dataclass
class DarkParams:
    threshold: float = field(default=90.0, metadata={"tune": (10.0, 200.0)})


class Dark:
    def __init__(self, threshold):
        if threshold <= 0:
            raise ConfigError("threshold must be positive")
        self.threshold = threshold

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        out = []
        for s in samples:
            grey = s.load_image().mean(axis=2)
            binary = grey < self.threshold
            out.append(PseudoLabel(soft=binary.astype(np.float32), binary=binary))
        return out

    def fingerprint(self):
        return f"dark:{self.threshold}"


@crackseg.hookimpl
def register_labelers(register):
    assert "threshold" in declared_space(DarkParams)
    register("old-dark", Dark, params=DarkParams, description="dark pixels (0.1 plugin)")
'''

OLD_TESTS = '''
import warnings

from crackseg.cli import main
from crackseg.testing import LabelerContract, write_tiny_dataset


class TestOldDark(LabelerContract):
    name = "old-dark"
    changed_params = {"threshold": 60.0}


def test_a_run_with_it(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    main(["label", "--labeler", "old-dark", "--data", str(data), "--split", "all", "--out", str(tmp_path / "labels"),
          "--quiet", "--device", "cpu"])
    assert len(list((tmp_path / "labels").glob("*.png"))) >= 6
'''


def test_a_plugin_written_against_0_1_passes_its_own_tests_with_deprecation_warnings_only(tmp_path):
    env = make_plugin_site(tmp_path / "site", "crackseg_olddark", textwrap.dedent(OLD_PLUGIN),
                           dist="crackseg-olddark")
    tests = tmp_path / "plugin_tests"
    tests.mkdir()
    (tests / "test_olddark.py").write_text(textwrap.dedent(OLD_TESTS))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
                        "always::DeprecationWarning", str(tests)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env={**_env(), **env})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
    assert "DeprecationWarning" in r.stdout and "goes away in 0.3" in r.stdout
    warned = set(re.findall(r"(crackseg\.[a-z_]+\.\w+) is deprecated", r.stdout))
    assert {"crackseg.data.ListDataset", "crackseg.errors.ConfigError", "crackseg.labeler.PseudoLabel"} <= warned


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS",)}


def test_the_public_api_modules_do_not_import_internals_they_should_not(tmp_path: Path):
    """crackseg/__init__.py imports nothing heavy at run time: only the table, the version and the shims."""
    tree = ast.parse((REPO / "crackseg" / "__init__.py").read_text(encoding="utf-8"))
    runtime = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = sorted({n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in runtime})
    assert modules == ["__future__", "crackseg", "crackseg._api", "crackseg.base.version", "importlib", "typing"]


def test_the_0_1_engine_keywords_still_work_with_a_warning(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.warns(DeprecationWarning, match=r"Engine\(model, device=\.\.\., \.\.\.\) is deprecated"):
        old = crackseg.Engine(torch.nn.Linear(2, 1), device="cpu", checkpoint_path=tmp_path / "a.pt", epochs=2)
    settings = crackseg.EngineSettings(device="cpu", checkpoint_path=tmp_path / "b.pt", epochs=2)
    new = crackseg.Engine(torch.nn.Linear(2, 1), settings)
    assert (old.epochs_total, old.device, old.kind) == (new.epochs_total, new.device, new.kind) == (2, "cpu",
                                                                                                   "segmentation")
    with pytest.raises(TypeError, match="not both"):
        crackseg.Engine(torch.nn.Linear(2, 1), new.settings, epochs=3)
