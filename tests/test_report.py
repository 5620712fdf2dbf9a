"""crackseg report: the page of a run folder (numbers recomputed from its files), bad input, a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main

pytest.importorskip("jinja2")

N_TEST = 5


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A finished run folder built without training: predictions made from the ground truth.

    ``test_0000`` is predicted perfectly, ``test_0001`` not at all (an empty map), the rest
    with the ground truth dimmed and some noise. metrics.json holds the true scores of these maps.
    """
    from crackseg.base.io import write_json, write_png, write_text
    from crackseg.config.run_config import resolve_config, to_yaml
    from crackseg.data.loading import test_samples
    from crackseg.evaluation.metrics import MetricAccumulator

    run = tmp_path_factory.mktemp("runs") / "fake"
    cfg = resolve_config([{"labeler": {"name": "fsv"}, "backbone": {"name": "unet"},
                           "data": {"name": "synthetic", "n_train": 2, "n_test": N_TEST, "size": 64},
                           "out": str(run)}])
    write_text(run / "config.yaml", to_yaml(cfg))
    rng = np.random.default_rng(0)
    acc = MetricAccumulator("crackclip")
    for i, s in enumerate(test_samples(cfg.data)):
        gt = s.mask()
        if i == 0:
            pred = np.where(gt, 255, 0).astype(np.uint8)
        elif i == 1:
            pred = np.zeros(gt.shape, np.uint8)
        else:
            pred = np.clip(np.where(gt, 150, 40) + rng.integers(-90, 90, gt.shape), 0, 255).astype(np.uint8)
        write_png(run / "predictions" / f"{s.stem}.png", pred)
        acc.add(s.stem, pred, gt)
    res = acc.result()
    write_json(run / "metrics.json", {**res.to_json(), "labeler": "fsv", "backbone": "unet", "data": "synthetic",
                                      "test_images": N_TEST, "notes": "built by the test",
                                      "history": [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}]})
    return run


def page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def cells(html: str, stem: str) -> list[str]:
    """The text of the per-image table's cells of ``stem``."""
    row = re.search(rf"<tr>\s*<td>{stem}</td>(.*?)</tr>", html, re.S)
    assert row, stem
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_run_report_holds_the_runs_numbers(fake_run, tmp_path):
    out = tmp_path / "r.html"
    r = run_main("report", str(fake_run), "--out", str(out), "--no-measure", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    html = page(out)
    m = json.loads((fake_run / "metrics.json").read_text())
    assert f"{100 * m['ods']:.2f}" in html and f"{100 * m['ap']:.2f}" in html
    # F, precision, recall, crack % truth, crack % predicted (no measurement columns with --no-measure)
    perfect, empty = cells(html, "test_0000"), cells(html, "test_0001")
    assert perfect[:3] == ["100.0", "100.0", "100.0"] and len(perfect) == 5
    assert empty[0] == "0.0" and empty[1] == "–" and empty[2] == "0.0" and empty[4] == "0.00"
    assert perfect[3] == perfect[4] != "0.00"  # the crack share of truth and prediction agree
    assert len(re.findall(r"<tr>\s*<td>test_\d{4}</td>", html)) == N_TEST
    assert html.count("<svg") == 3  # PR curve, F against threshold, loss
    assert "built by the test" in html and "no longer match" not in html
    assert "labeler: " in html or "labeler:" in html  # the resolved config is shown


def test_run_report_is_self_contained(fake_run, tmp_path):
    out = tmp_path / "r.html"
    assert run_main("report", str(fake_run), "--out", str(out), "--quiet").returncode == 0
    html = page(out)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "fetches something from the network"
    assert "<link" not in html and "@import" not in html and "<script src" not in html
    uris = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', html)
    assert len(uris) == 4 * N_TEST  # image, truth, overlay, probability for every image (gallery 12 > 5)


def test_gallery_goes_from_worst_to_best(fake_run, tmp_path):
    out = tmp_path / "r.html"
    assert run_main("report", str(fake_run), "--out", str(out), "--gallery", "2", "--quiet").returncode == 0
    heads = re.findall(r'<div class="g-head">(test_\d{4})', page(out))
    assert heads == ["test_0001", "test_0000"]  # F 0 first, F 100 last
    assert run_main("report", str(fake_run), "--out", str(out), "--gallery", "0", "--quiet").returncode == 0
    assert 'class="g-item"' not in page(out)


def test_measurements_join_the_table(fake_run, tmp_path):
    pytest.importorskip("skan")
    out = tmp_path / "r.html"
    assert run_main("report", str(fake_run), "--out", str(out), "--gallery", "0", "--quiet").returncode == 0
    html = page(out)
    assert "total length" in html and "Cracks measured on the predictions" in html
    perfect, empty = cells(html, "test_0000"), cells(html, "test_0001")
    assert int(perfect[5]) >= 1 and float(perfect[6]) > 10  # at least one crack, tens of pixels long
    assert empty[5:] == ["0", "0.0", "0.0", "0.0000"]


def test_report_notices_a_changed_run_folder(fake_run, tmp_path):
    run = tmp_path / "changed"
    shutil.copytree(fake_run, run)
    m = json.loads((run / "metrics.json").read_text())
    m["ods"] = 0.99
    (run / "metrics.json").write_text(json.dumps(m))
    assert run_main("report", str(run), "--no-measure", "--gallery", "0", "--quiet").returncode == 0
    assert "predictions/ no longer match metrics.json (ODS" in page(run / "report.html")


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such folder"),
    ("empty", "not a run folder"),
    ("unfinished", "has not finished"),
    ("no-predictions", "no predictions"),
    ("out-is-folder", "is a directory"),
    ("gallery", "--gallery -1"),
])
def test_bad_input_is_one_line(fake_run, tmp_path, case, needle):
    src, extra = tmp_path / "src", []
    if case == "empty":
        src.mkdir()
    elif case in ("unfinished", "no-predictions"):
        shutil.copytree(fake_run, src)
        (src / ("metrics.json" if case == "unfinished" else "predictions")).unlink() if case == "unfinished" \
            else shutil.rmtree(src / "predictions")
    elif case in ("out-is-folder", "gallery"):
        src = fake_run
        extra = ["--out", str(tmp_path)] if case == "out-is-folder" else ["--gallery", "-1", "--out",
                                                                         str(tmp_path / "x.html")]
    r = run_main("report", str(src), *extra)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.glob("*.html")) and not (src / "report.html").exists()


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path):
    """Results are atomic *and* as readable as any file the user writes (mkstemp alone gives 0600)."""
    from crackseg.base.io import write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = write_text(tmp_path / "atomic.txt", "x")
    assert oct(path.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)


def chromium() -> str | None:
    for name in (os.environ.get("CRACKSEG_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(chromium() is None, reason="needs headless Chromium (Debian: apt-get install chromium)")
def test_page_renders_in_chromium_without_errors(fake_run, tmp_path):
    """A real browser loads the page, runs its script to the end and reports no page error."""
    out = tmp_path / "r.html"
    assert run_main("report", str(fake_run), "--out", str(out), "--quiet").returncode == 0
    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                        "--v=0", "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    html_tag = re.search(r"<html[^>]*>", r.stdout).group(0)
    assert 'data-ready="1"' in html_tag, "the page's script did not run to the end"
    assert "data-errors" not in html_tag, html_tag
    assert "Uncaught" not in r.stderr, [ln for ln in r.stderr.splitlines() if "Uncaught" in ln]
    # a broken page is caught: the same check fails on a script error
    bad = tmp_path / "bad.html"
    bad.write_text(page(out).replace('document.documentElement.setAttribute("data-ready", "1");',
                                     'undefinedFunction(); document.documentElement.setAttribute("data-ready", "1");'))
    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", bad.as_uri()],
                       capture_output=True, text=True, timeout=120)
    html_tag = re.search(r"<html[^>]*>", r.stdout).group(0)
    assert 'data-ready="1"' not in html_tag and "undefinedFunction" in html_tag
