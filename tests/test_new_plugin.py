"""`crackseg new-plugin`: every kind of package it writes installs, passes its own tests, and works in crackseg.

The packages are built into wheels and unpacked into a site folder on ``PYTHONPATH`` (what
``pip install`` leaves, without touching this environment); their generated tests then run in a
pytest of their own, and the backbone trains in a ``crackseg run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_main
from crackseg.apps.scaffold import KINDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(packages folder, site folder with every generated package installed)."""
    setuptools = pytest.importorskip("setuptools")
    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.skip(f"building wheels without the 'wheel' package needs setuptools >= 70.1 (found "
                    f"{setuptools.__version__}): pip install 'setuptools>=70.1'")
    base = tmp_path_factory.mktemp("new-plugin")
    packages, wheels, site = base / "packages", base / "wheels", base / "site"
    for kind in KINDS:
        r = run_main("new-plugin", f"demo-{kind}", "--kind", kind, "--out", str(packages))
        assert r.returncode == 0 and "pip install -e" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-w", str(wheels), *map(str, sorted(packages.iterdir()))],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for wheel in sorted(wheels.glob("*.whl")):
        zipfile.ZipFile(wheel).extractall(site)
    assert len(list(site.glob("*.dist-info"))) == len(KINDS)
    return packages, site


def test_generated_packages_pass_their_own_tests(installed):
    packages, site = installed
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}
    tests = sorted(str(p) for p in packages.glob("*/tests"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                       capture_output=True, text=True, env=env, cwd=packages, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "error" not in r.stdout.lower()


def test_generated_plugins_register_and_pass_the_checks(installed):
    _, site = installed
    r = run_cli("plugins", "--check", env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in KINDS:
        assert f"plugin 'demo-{kind}' (distribution crackseg-demo-{kind} 0.1.0): ok" in r.stdout


def test_the_generated_backbone_trains_in_crackseg_run(installed, tmp_path):
    _, site = installed
    out = tmp_path / "run"
    r = run_cli("run", "--backbone", "demo-backbone", "--data", "synthetic", "--device", "cpu", "--quiet",
                "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=32",
                "--set", "train.epochs=2", "--set", "train.batch_size=2", "--out", str(out),
                env={"PYTHONPATH": str(site)}, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "| fsv | demo-backbone | synthetic |" in r.stdout
    assert Path(out / "metrics.json").is_file()


def test_bad_names_and_existing_folders_are_one_line_errors(tmp_path):
    r = run_main("new-plugin", "Bad_Name", "--out", str(tmp_path))
    assert r.returncode == 2 and "lower-case letters" in r.stderr
    assert run_main("new-plugin", "twice", "--out", str(tmp_path)).returncode == 0
    r = run_main("new-plugin", "twice", "--out", str(tmp_path))
    assert r.returncode == 2 and "already exists" in r.stderr
