"""`crackseg evaluate`: a run folder against its own test split, predictions against a dataset split,
two folders as before, bad combinations, and never writing into its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from crackseg.base.io import write_png, write_text
from crackseg.evaluation.metrics import MetricAccumulator
from crackseg.testing import tiny_crack_samples, write_tiny_dataset
from test_architecture import _without_torch
from test_run import TINY


@pytest.fixture(scope="module")
def limited_run(tmp_path_factory):
    """test_run's tiny run, with its test split limited to 2 of its 3 images."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    r = run_main("run", *TINY, "--set", "train.epochs=1", "--set", "data.limit_test=2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_run_folder_reproduces_its_metrics_exactly(limited_run):
    before = _snapshot(limited_run)
    r = run_main("evaluate", str(limited_run), "--json")
    assert r.returncode == 0, r.stderr
    got, m = json.loads(r.stdout), json.loads((limited_run / "metrics.json").read_text())
    assert m["n"] == 2 and got["n"] == 2  # limit_test applied, as the run did
    for key in ("ods", "ois", "ap", "ods_threshold", "protocol"):
        assert got[key] == m[key], key
    assert got["split"] == "test"
    assert _snapshot(limited_run) == before  # nothing written into the run folder


def test_run_folder_with_another_protocol_and_human_output(limited_run):
    r = run_main("evaluate", str(limited_run), "--protocol", "paper")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("protocol paper, 2 images") and "P/R/F" not in r.stdout


def test_run_folder_uses_its_own_protocol(limited_run, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "copy"
    shutil.copytree(limited_run / "predictions", copy / "predictions")
    cfg = yaml.safe_load((limited_run / "config.yaml").read_text())
    cfg["eval"]["protocol"] = "paper"
    write_text(copy / "config.yaml", yaml.safe_dump(cfg))
    got = json.loads(run_main("evaluate", str(copy), "--json").stdout)
    want = json.loads(run_main("evaluate", str(limited_run), "--protocol", "paper", "--json").stdout)
    assert got["protocol"] == "paper" and got == want


def test_run_folder_without_torch(limited_run):
    m = json.loads((limited_run / "metrics.json").read_text())
    r = _without_torch(f"""
        import sys
        from crackseg.cli import main
        try:
            main(["evaluate", {str(limited_run)!r}, "--json"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        assert "torch" not in sys.modules or sys.modules["torch"] is None
    """, limited_run.parent)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert (got["ods"], got["ois"], got["ap"]) == (m["ods"], m["ois"], m["ap"])


def test_run_folder_whose_predictions_do_not_match_its_split(limited_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(limited_run, copy, ignore=shutil.ignore_patterns("*.pt", "labels", "overlays"))
    first = sorted((copy / "predictions").glob("*.png"))[0]
    write_png(copy / "predictions" / "stranger.png", np.zeros((64, 64), np.uint8))
    r = run_main("evaluate", str(copy))
    assert r.returncode == 2 and "not images of the run's test split" in r.stderr and "stranger" in r.stderr
    (copy / "predictions" / "stranger.png").unlink()
    first.unlink()
    r = run_main("evaluate", str(copy))
    assert r.returncode == 2 and f"have no prediction in {copy / 'predictions'}: {first.stem}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.fixture
def folder_data(tmp_path):
    """A folder dataset (train: tiny0-2, test: tiny3-5) and predictions of every image plus one stranger."""
    root = write_tiny_dataset(tmp_path / "data", n=6, size=32)
    write_text(root / "splits" / "train.txt", "tiny0\ntiny1\ntiny2\n")
    write_text(root / "splits" / "test.txt", "tiny3\ntiny4\ntiny5\n")
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds"
    for s in tiny_crack_samples(6, 32):
        noisy = s.mask() * 180 + rng.integers(0, 60, (32, 32))
        write_png(preds / f"{s.stem}.png", noisy.astype(np.uint8))
    write_png(preds / "not-in-the-data.png", np.zeros((32, 32), np.uint8))
    return root, preds


def _expected(preds: Path, stems: list[str], protocol: str = "crackclip") -> dict:
    from crackseg.base.io import read_gray

    acc = MetricAccumulator(protocol)
    for s in tiny_crack_samples(6, 32):
        if s.stem in stems:
            acc.add(s.stem, read_gray(preds / f"{s.stem}.png"), s.mask())
    return acc.result().to_json()


@pytest.mark.parametrize("split, stems", [(None, ["tiny3", "tiny4", "tiny5"]), ("train", ["tiny0", "tiny1", "tiny2"])])
def test_predictions_against_a_dataset_split(folder_data, split, stems):
    root, preds = folder_data
    before = _snapshot(preds)
    args = ["evaluate", str(preds), "--data", str(root), "--json"] + (["--split", split] if split else [])
    r = run_main(*args)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = _expected(preds, stems)
    assert got["n"] == 3 and got["split"] == (split or "test") and got["data"] == "data"
    assert (got["ods"], got["ois"], got["ap"]) == (want["ods"], want["ois"], want["ap"])
    assert _snapshot(preds) == before


def test_dataset_split_names_missing_predictions(folder_data):
    root, preds = folder_data
    (preds / "tiny4.png").unlink()
    r = run_main("evaluate", str(preds), "--data", str(root))
    assert r.returncode == 2 and "have no prediction" in r.stderr and "tiny4" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_two_folders_write_nothing_unless_asked(folder_data, tmp_path):
    _, preds = folder_data
    gt = tmp_path / "gt"
    for s in tiny_crack_samples(6, 32):
        write_png(gt / f"{s.stem}.png", s.mask())
    (preds / "not-in-the-data.png").unlink()
    before = _snapshot(preds)
    r = run_main("evaluate", str(preds), str(gt))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("protocol crackclip, 6 images") and "P/R/F" not in r.stdout
    assert _snapshot(preds) == before and not (preds / "prf.tsv").exists()
    r = run_main("evaluate", str(preds), str(gt), "--prf", str(tmp_path / "t" / "prf.tsv"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["n"] == 6
    assert (tmp_path / "t" / "prf.tsv").read_text().startswith("threshold\tprecision\trecall\tf1\n")


def test_unwritable_prf_warns_and_still_scores(folder_data, tmp_path):
    root, preds = folder_data
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run_main("evaluate", str(preds), "--data", str(root), "--json", "--prf", str(blocker / "prf.tsv"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crackseg: warning: ") and "P/R/F" in lines[0]


def test_bad_combinations_are_one_line(limited_run, folder_data, tmp_path):
    root, preds = folder_data
    cases = [
        (["evaluate", str(limited_run), str(root / "masks")], "takes no GT_DIR"),
        (["evaluate", str(limited_run), "--data", str(root)], "takes no GT_DIR, --data or --split"),
        (["evaluate", str(preds)], "give GT_DIR"),
        (["evaluate", str(limited_run / "predictions")], f"or pass the run folder {limited_run.resolve()}"),
        (["evaluate", str(preds), str(root / "masks"), "--data", str(root)], "not both"),
        (["evaluate", str(preds), str(root / "masks"), "--split", "train"], "--split"),
        (["evaluate", str(preds), "--data", str(root), "--split", "nope"], "no split 'nope'"),
    ]
    for args, words in cases:
        r = run_main(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    bare = tmp_path / "unfinished"
    write_text(bare / "config.yaml", (limited_run / "config.yaml").read_text())
    r = run_main("evaluate", str(bare))
    assert r.returncode == 2 and "without predictions/" in r.stderr


def test_two_folders_decoded_in_parallel_a_bad_file_is_one_line(tmp_path, monkeypatch):
    import threading

    from crackseg.evaluation import metrics

    gt, preds = tmp_path / "gt", tmp_path / "preds"
    rng = np.random.default_rng(5)
    for k in range(12):
        mask = np.zeros((24, 32), np.uint8)
        mask[k + 2, :] = 255
        write_png(gt / f"p{k:02d}.png", mask)
        write_png(preds / f"p{k:02d}.png", (mask // 2 + rng.integers(0, 100, mask.shape)).astype(np.uint8))
    threads: set[str] = set()
    read_gray = metrics.read_gray

    def spy(path):
        threads.add(threading.current_thread().name)
        return read_gray(path)

    monkeypatch.setattr(metrics.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)  # 4 CPUs
    monkeypatch.setattr(metrics, "read_gray", spy)
    one = metrics.evaluate_dirs(preds, gt, workers=1)
    threads.clear()
    r = run_main("evaluate", str(preds), str(gt), "--json")
    assert r.returncode == 0, r.stderr
    assert threads and all(t.startswith("crackseg-decode") for t in threads), threads  # the pool decoded them
    got = json.loads(r.stdout)
    assert (got["ods"], got["ois"], got["ap"], got["n"]) == (one.ods, one.ois, one.ap, 12)

    (preds / "p06.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")  # in the middle
    r = run_main("evaluate", str(preds), str(gt), "--json")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crackseg: error: ") and "p06.png" in lines[0], r.stderr
    assert "cannot read image" in lines[0]


def test_two_folders_start_light(tmp_path):
    """Scoring two folders imports neither torch and the plotting libraries nor what reads run configurations."""
    import subprocess
    import sys

    write_png(tmp_path / "gt" / "a.png", np.eye(8, dtype=np.uint8) * 255)
    write_png(tmp_path / "pred" / "a.png", np.eye(8, dtype=np.uint8) * 200)
    code = (f"import sys\nfrom crackseg.cli import main\ntry:\n    main(['evaluate', {str(tmp_path / 'pred')!r}, "
            f"{str(tmp_path / 'gt')!r}, '--json'])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "heavy = ('torch', 'matplotlib', 'skimage', 'onnxruntime', 'crackseg.config.run_config', "
            "'crackseg.evaluation.scoring', 'crackseg.apps.compare')\n"
            "print('loaded:', ','.join(m for m in heavy if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    *scores, loaded = r.stdout.strip().splitlines()
    assert json.loads(scores[-1])["ods"] == 1.0 and loaded.strip() == "loaded:", loaded


def test_lazily_imported_commands_are_still_commands():
    import click

    from crackseg.apps import evaluate
    from crackseg.cli import build_config, cli
    from crackseg.config.assembly import run_config_from_options
    from crackseg.config.run_folder import CONFIG_FILE

    assert evaluate.CONFIG_FILE == CONFIG_FILE and build_config is run_config_from_options
    ctx = click.Context(cli)
    assert "compare" in cli.list_commands(ctx) and cli.get_command(ctx, "compare").name == "compare"
    r = run_main("--help")
    assert r.returncode == 0 and " compare " in r.stdout
