"""`crackseg compare`: grid expansion, stable cells, caching, resume, parallel cells, tables.

The end-to-end tests use a tiny third-party plugin (installed through a
``PYTHONPATH`` site folder, as pip would leave it): a two-layer CNN backbone
``tinyseg`` and a labeler ``counted`` that returns the ground truth and logs
every image it labels, so a test can count how often labels were computed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, make_plugin_site, run_cli

PLUGIN = '''
import os
import time
from dataclasses import dataclass

import crackseg


@dataclass
class TinySegParams:
    width: int = 4


def build_tinyseg(width):
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(width, 1, 3, padding=1))
    if width == 6:  # the pipeline reads this without knowing the plugin: tables mark the rows with a dagger
        net.placeholder = "wide test net: a placeholder"
    return net


class CountedLabeler:
    """The ground truth as labels; one line per labelled image in $CRACKSEG_TEST_COUNTER."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            time.sleep(0.05)  # long enough for two parallel cells to overlap
            m = s.mask()
            path = os.environ.get("CRACKSEG_TEST_COUNTER")
            if path:
                with open(path, "a") as fh:
                    fh.write(f"{os.getpid()} {s.stem}\\n")
            out.append(PseudoLabel(soft=m.astype("float32"), binary=m))
        return out

    def fingerprint(self):
        return "counted-v1"


@crackseg.hookimpl
def register_backbones(register):
    register("tinyseg", build_tinyseg, params=TinySegParams, description="two-layer CNN (test plugin)")


@crackseg.hookimpl
def register_labelers(register):
    register("counted", CountedLabeler, description="ground truth, counted (test plugin)")
'''

GRID = """
name: tiny
shared:
  device: cpu
  data: {name: synthetic, n_train: 4, n_test: 3, size: 48}
  train: {epochs: 2, batch_size: 2, image_size: 48}
  predict: {overlays: 0}
tests:
  - {id: syn, label: Synthetic, run_test: true}
  - {id: other, label: Other set, data: {name: synthetic, n_train: 1, n_test: 2, size: 48, seed: 7, split: test}}
default_preset: small
presets:
  small: {caption: "tiny grid on synthetic data", published: true, qualitative: {images: 1}}
  nopub: {caption: "no published numbers", published: false}
tables:
  - id: main
    title: "Main table"
    rows:
      - {id: gt, label: GT labels, labeler: counted, backbone: tinyseg}
      - {id: cac, label: CAC, missing: "not implemented in this test"}
    grid:
      labelers: [counted, fsv]
      backbones:
        - {name: tinyseg, label: narrow, set: {backbone: {width: 4}}}
        - {name: tinyseg, label: wide, set: {backbone: {width: 6}}}
    published:
      gt: {syn: [50.0, 60.0, 70.0]}
      cac: {syn: [1.0, 2.0, 3.0], other: [4.0, 5.0, 6.0]}
"""

N_TRAIN = 4


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder with the plugin module and its dist-info (entry point group ``crackseg``)."""
    root = tmp_path_factory.mktemp("site")
    make_plugin_site(root, "crackseg_cmpplug", PLUGIN, "crackseg-cmpplug", entry_point="cmpplug")
    grid = root / "grid.yaml"
    grid.write_text(GRID)
    return root


def env_for(site: Path, counter: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "CRACKSEG_TEST_COUNTER": str(counter), "OMP_NUM_THREADS": "1"}


def counted(counter: Path) -> list[str]:
    return counter.read_text().split("\n")[:-1] if counter.is_file() else []


@pytest.fixture(scope="module")
def serial(site, tmp_path_factory):
    """One serial compare of the tiny grid: (runs dir, completed process, counter file)."""
    base = tmp_path_factory.mktemp("serial")
    runs, counter = base / "runs", base / "counter.txt"
    r = run_cli("compare", str(site / "grid.yaml"), "--out", str(runs), env=env_for(site, counter))
    assert r.returncode == 0, r.stderr
    return runs, r, counter


def cell_dirs(runs: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((runs / "cells").iterdir()) if p.is_dir()}


# -- expansion (in process, built-in plugins) -----------------------------------------------------
def test_paper_grid_cells_are_shared_between_tables():
    from crackseg.apps.compare import load_grid

    grid = load_grid(REPO / "configs/paper/all.yaml", "cpu-small")
    names = [c.name for c in grid.cells]
    assert names == [
        "gradcam+deepcrack-liu", "cam-crf+deepcrack-liu", "cam-location+deepcrack-liu", "gradcam+deepcrack-liu+cac",
        "cam-location+crackclip", "ridge+unet-original", "ridge+oed", "ridge+crackclip", "cam-ridge+unet-original",
        "cam-ridge+oed", "cam-ridge+crackclip", "fsv+crackclip+focal+dice", "fsv+crackclip+focal+dice+edge",
        "cam-crf+crackclip+focal+dice", "cam-crf+crackclip+focal+dice+edge",
        "cam-location+crackclip+focal+dice+edge", "cam-crf+unet-original", "cam-crf+deepcrack-zou", "cam-crf+oed",
        "cam-location+crackclip+generic+focal+dice", "cam-location+crackclip+generic+focal+dice+edge",
    ]
    rows = {(t.id, r.id): r for t in grid.tables for r in t.rows}
    # Table 1's CrackCLIP = Table 2's CAM-Location (released loss) = Figure 5's crack prompts: one cell
    assert rows["table1", "crackclip"].cell == rows["table2", "cam-location+crackclip+focal+dice"].cell \
        == rows["figure5", "cam-location+crackclip+crack+focal+dice"].cell == 4
    # the edge-loss arms (the paper's formula): Table 2's CAM-CRF arm is Table 3's extra CrackCLIP row
    edge = grid.cells[rows["table2", "cam-crf+crackclip+focal+dice+edge"].cell]
    assert edge.config["loss"] == "focal+dice+edge" and grid.cells[4].config["loss"] == "focal+dice"
    assert rows["table3", "cam-crf+crackclip+focal+dice+edge"].cell == edge.index
    assert rows["table3", "cam-crf+crackclip"].cell == rows["table2", "cam-crf+crackclip+focal+dice"].cell
    # PWSC = Table 3's DeepCrack1 on CAM-CRF labels
    assert rows["table1", "pwsc"].cell == rows["table3", "cam-crf+deepcrack-liu"].cell == 1
    # crackseg's rows: ridge on the images alone (no weak labels in the cell's data section)
    ridge = grid.cells[rows["table1", "ridge+oed"].cell]
    assert ridge.config["labeler"]["name"] == "ridge" and "weak_labels" not in ridge.config["data"]
    # CAC is a cell of its own: DeepCrack1 on Grad-CAM maps with the cac trainer and its recipe
    cac = grid.cells[rows["table1", "cac"].cell]
    assert cac.config["trainer"]["name"] == "cac" and cac.config["labeler"]["name"] == "gradcam"
    assert rows["table1", "cac"].cell != rows["table1", "gradcam"].cell
    assert [t.id for t in grid.tests] == ["crack500", "cfd", "deepcrack"]
    assert grid.cells[4].config["backbone"]["random_init"] and not grid.published
    paper = load_grid(REPO / "configs/paper/all.yaml", "paper")
    assert [c.name for c in paper.cells] == names  # same indices in both presets
    assert paper.published and paper.tables[0].published["crackclip"]["cfd"] == [40.80, 41.74, 31.81]
    clip = paper.cells[4].config["backbone"]
    assert paper.cells[3].config["train"]["epochs"] == 40 and paper.cells[3].config["train"]["optimizer"] == "sgd"
    assert clip["image_size"] == 518 and not clip["random_init"]


def test_cell_keys_follow_the_inputs():
    from crackseg.apps.compare import load_grid

    a = load_grid(REPO / "configs/paper/table3.yaml", "cpu-small")
    b = load_grid(REPO / "configs/paper/table3.yaml", "cpu-small", {"train": {"epochs": 7}})
    assert [c.name for c in a.cells] == [c.name for c in b.cells]
    assert all(x.key != y.key for x, y in zip(a.cells, b.cells))
    again = load_grid(REPO / "configs/paper/table3.yaml", "cpu-small")
    assert [c.key for c in again.cells] == [c.key for c in a.cells]


@pytest.mark.parametrize("text, needle", [
    ("tables: [{id: t, rows: [{labeler: fsv, backbone: unet}]}]\nbogus: 1", "'bogus'"),
    ("tests: [{id: a, run_test: true}]\ntables: [{id: t, rows: [{labeler: fsvv, backbone: unet}]}]", "fsvv"),
    ("tests: [{id: a}]\ntables: [{id: t, rows: [{labeler: fsv, backbone: unet}]}]", "run_test"),
    ("tests: [{id: a, run_test: true}]\npresets: {x: {}}\ntables: [{id: t, rows: [{labeler: fsv, backbone: unet}]}]",
     "unknown preset"),
    ("tests: [{id: a, run_test: true}]\ntables: [{id: t, rows: [{labeler: fsv}]}]", "'backbone' is required"),
])
def test_bad_grid_configs_name_the_problem(tmp_path, text, needle):
    from crackseg.apps.compare import load_grid
    from crackseg.base.errors import CracksegError

    p = tmp_path / "g.yaml"
    p.write_text(text)
    with pytest.raises(CracksegError) as exc:
        load_grid(p, "nope" if "presets" in text else None)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_missing_paper_data_is_one_line_exit_2(tmp_path):
    r = run_cli("compare", str(REPO / "configs/paper/table1.yaml"), "--preset", "paper", "--out", str(tmp_path / "r"),
                cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Crack500" in r.stderr and "crack500_sample/reference" in r.stderr


# -- rendering (in process) --------------------------------------------------------------------------
def _fake_results() -> dict:
    tests = [{"id": "a", "label": "Set A"}, {"id": "b", "label": "Set_B & co"}]
    rows = [
        {"id": "m1", "label": "Method 1", "status": "done", "placeholder": "",
         "metrics": {"a": {"ods": 61.0, "ois": 70.0, "ap": 50.0}, "b": {"ods": 10.0, "ois": None, "ap": 5.0}},
         "published": {"a": {"ods": 60.0, "ois": 71.5, "ap": 50.0}}},
        {"id": "m2", "label": "Method 2", "status": "done", "placeholder": "random weights",
         "metrics": {"a": {"ods": 40.0, "ois": 80.0, "ap": 30.0}, "b": {"ods": 20.0, "ois": 25.0, "ap": 9.0}}},
        {"id": "cac", "label": "CAC", "status": "not implemented", "metrics": {},
         "published": {"a": {"ods": 1.0, "ois": 2.0, "ap": 3.0}}},
    ]
    table = {"id": "t1", "title": "Table 1", "caption": "100% real", "footnotes": ["CAC: missing"], "rows": rows,
             "published_shown": True}
    return {"tests": tests, "table": table}


def test_markdown_table_layout():
    from crackseg.apps.compare.render import markdown_table

    f = _fake_results()
    md = markdown_table(f["table"], f["tests"])
    lines = md.splitlines()
    assert lines[0] == "### Table 1" and "100% real" in md
    assert "| Method | Set A ODS | Set A OIS | Set A AP | Set_B & co ODS | Set_B & co OIS | Set_B & co AP |" in md
    assert "| Method 1 | **61.00** | 70.00 | **50.00** | 10.00 | – | 5.00 |" in md
    assert "| ↳ paper | 60.00 | 71.50 | 50.00 | – | – | – |" in md
    assert "| ↳ Δ | +1.00 | -1.50 | +0.00 | – | – | – |" in md
    assert "| Method 2 † | 40.00 | **80.00** | 30.00 | **20.00** | **25.00** | **9.00** |" in md
    assert "| CAC | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    assert "- CAC: missing" in md and "– = undefined" in md


def test_csv_and_latex_tables():
    from crackseg.apps.compare.render import csv_table, latex_table

    f = _fake_results()
    rows = list(csv.DictReader(io.StringIO(csv_table(f["table"], f["tests"]))))
    assert [(r["row_id"], r["source"]) for r in rows] == [
        ("m1", "ours"), ("m1", "paper"), ("m1", "diff"), ("m2", "ours"), ("cac", "ours"), ("cac", "paper")]
    assert float(rows[0]["a_ods"]) == 61.0 and rows[0]["b_ois"] == "" and float(rows[2]["a_ois"]) == -1.5
    assert rows[4]["status"] == "not implemented" and rows[4]["a_ods"] == ""
    tex = latex_table(f["table"], f["tests"])
    assert r"\multicolumn{3}{c}{Set\_B \& co}" in tex and r"\caption{Table 1. 100\% real}" in tex
    assert r"Method 1 & \textbf{61.00} & 70.00 & \textbf{50.00} & 10.00 & -- & 5.00 \\" in tex
    assert r"Method 2 $^\dagger$" in tex and r"\quad $\Delta$ & +1.00" in tex
    assert tex.count(r"\\") >= 8 and tex.strip().endswith(r"\end{table}")


# -- end to end (subprocesses, the test plugin) -------------------------------------------------------
def test_list_cells_is_stable(site):
    env = env_for(site, site / "unused.txt")
    a = run_cli("compare", str(site / "grid.yaml"), "--list-cells", env=env)
    b = run_cli("compare", str(site / "grid.yaml"), "--list-cells", env=env)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    lines = [line.split("\t") for line in a.stdout.splitlines()]
    assert [k for k, _ in lines] == ["0", "1", "2", "3"]
    names = [n for _, n in lines]
    assert names[0] == "counted+tinyseg" and names[2] == "fsv+tinyseg"
    assert names[1].startswith("counted+tinyseg@") and names[3].startswith("fsv+tinyseg@")


def test_report_of_a_grid_shows_every_table_with_its_curves(serial, tmp_path):
    """`crackseg report GRID_DIR`: the tables of results.json (bold best, paper rows), PR curves, figures."""
    pytest.importorskip("jinja2")
    runs, _, _ = serial
    out = tmp_path / "grid.html"
    r = run_cli("report", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    results = json.loads((runs / "results.json").read_text())
    table = results["tables"][0]
    assert f'<h2 id="main">{table["title"]}</h2>' in html
    for row in table["rows"]:
        assert f"<td>{row['label']}" in html
    assert html.count("<td>↳ paper</td>") == 2 and "<b>" in html  # published rows and the best numbers
    # one PR chart per test set, a curve per finished row; the qualitative figure embedded
    assert html.count("<svg") == 2 and html.count('<polyline fill="none"') >= 2 * 4
    assert 'alt="main qualitative"' in html and 'src="data:image/png;base64,' in html


def test_serial_compare_writes_every_table(serial):
    runs, r, counter = serial
    assert len(cell_dirs(runs)) == 4
    # the explicit row and the grid's narrow row are one cell; labels of `counted` were computed once
    assert len(counted(counter)) == N_TRAIN
    md = (runs / "main" / "table.md").read_text()
    assert r.stdout.strip() == md.strip()  # printed and saved
    assert "| Method | Synthetic ODS | Synthetic OIS | Synthetic AP | Other set ODS |" in md
    assert "| CAC | n/a |" in md and "| ↳ paper | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 |" in md
    for label in ("GT labels", "counted / narrow", "counted / wide †", "fsv / narrow", "fsv / wide †"):
        assert f"| {label} |" in md
    assert "- † wide test net: a placeholder: these rows test the pipeline" in md
    data = json.loads((runs / "main" / "table.json").read_text())
    rows = {row["id"]: row for row in data["table"]["rows"]}
    assert rows["gt"]["cell"] == rows["counted+tinyseg[narrow]"]["cell"] == "counted+tinyseg"
    for rid in ("gt", "counted+tinyseg[wide]", "fsv+tinyseg[narrow]"):
        for t in ("syn", "other"):
            m = rows[rid]["metrics"][t]
            assert 0.0 <= m["ods"] <= 100.0 and m["n"] == (3 if t == "syn" else 2)
    # FSV and `counted` both train on the ground truth: same labels, same seed, same numbers
    assert rows["gt"]["metrics"]["syn"]["ods"] == pytest.approx(rows["fsv+tinyseg[narrow]"]["metrics"]["syn"]["ods"])
    assert rows["cac"]["status"] == "not implemented"
    assert (runs / "main" / "table.csv").read_text().startswith("table,row_id,method,source,status,syn_ods")
    assert "\\begin{tabular}" in (runs / "main" / "table.tex").read_text()
    for png in ("pr-syn.png", "pr-other.png", "qualitative.png"):
        assert (runs / "main" / png).read_bytes()[:4] == b"\x89PNG"
    assert (runs / "results.md").is_file() and (runs / "compare.yaml").is_file()
    assert not list(runs.rglob("*.tmp*"))


def test_second_compare_recomputes_nothing(site, serial):
    runs, first, counter = serial
    stamps = {p: p.stat().st_mtime_ns for d in cell_dirs(runs).values()
              for p in (d / "checkpoint.pt", d / "compare-cell.json", d / "metrics.json")}
    n = len(counted(counter))
    r = run_cli("compare", str(site / "grid.yaml"), "--out", str(runs), env=env_for(site, counter))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("finished earlier, skipped") == 4 and "computing" not in r.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(counted(counter)) == n
    assert r.stdout == first.stdout


def test_from_rebuilds_tables_without_computing(site, serial):
    runs, first, counter = serial
    before = (runs / "main" / "table.md").read_text()
    for f in (runs / "main").iterdir():
        f.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (runs / "cells").rglob("*") if p.is_file()}
    r = run_cli("compare", "--from", str(runs), "--no-figures", env=env_for(site, counter))
    assert r.returncode == 0, r.stderr
    assert (runs / "main" / "table.md").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # with the config, another preset: no published rows
    r = run_cli("compare", str(site / "grid.yaml"), "--preset", "nopub", "--from", str(runs), "--no-figures",
                env=env_for(site, counter))
    assert r.returncode == 0, r.stderr
    assert "↳ paper" not in r.stdout and "| GT labels |" in r.stdout


def test_parallel_cells_match_serial(site, serial, tmp_path):
    runs_serial, _, _ = serial
    runs, counter = tmp_path / "runs", tmp_path / "counter.txt"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **env_for(site, counter)}
    base = [sys.executable, "-m", "crackseg", "compare", str(site / "grid.yaml"), "--out", str(runs), "--quiet"]
    # two processes at once, as two array tasks would; cells 0 and 1 need the same `counted` labels
    procs = [subprocess.Popen([*base, "--cell", "0", "--cell", "2"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen([*base, "--cell", "1", "--cell", "3"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert len(counted(counter)) == N_TRAIN  # the lock: one process labelled, the other reused
    r = run_cli("compare", "--from", str(runs), "--no-figures", env=env_for(site, counter))
    assert r.returncode == 0, r.stderr
    assert _numbers(runs) == _numbers(runs_serial)


def test_workers_run_cells_in_processes(site, serial, tmp_path):
    runs_serial, _, _ = serial
    runs = tmp_path / "runs"
    r = run_cli("compare", str(site / "grid.yaml"), "--out", str(runs), "--workers", "2", "--no-figures",
                env=env_for(site, tmp_path / "c.txt"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (runs / "logs").iterdir()) == [f"cell-{k}.log" for k in range(4)]
    assert _numbers(runs) == _numbers(runs_serial)


def _numbers(runs: Path) -> dict:
    rows = json.loads((runs / "main" / "table.json").read_text())["table"]["rows"]
    return {r["id"]: {t: {k: round(v[k], 6) if v[k] is not None else None for k in ("ods", "ois", "ap")}
                      for t, v in r["metrics"].items()} for r in rows}


def test_interrupted_compare_continues(site, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent("""
        name: resume
        shared:
          device: cpu
          data: {name: synthetic, n_train: 4, n_test: 2, size: 32}
          train: {epochs: 1, batch_size: 2, image_size: 32}
          predict: {overlays: 0}
        tests: [{id: syn, label: Synthetic, run_test: true}]
        tables:
          - id: t
            rows:
              - {id: quick, labeler: fsv, backbone: tinyseg}
              - {id: long, labeler: fsv, backbone: tinyseg, set: {backbone: {width: 3}, train: {epochs: 400}}}
        """))
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **env_for(site, tmp_path / "c.txt")}
    cmd = [sys.executable, "-m", "crackseg", "compare", str(grid), "--out", str(runs)]
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    ckpt = None
    while time.monotonic() < deadline and p.poll() is None:
        # an epoch is finished (its checkpoint may be held back by train.checkpoint_every_s until Ctrl-C)
        found = list(runs.glob("cells/fsv+tinyseg@*/history.csv"))
        if found:
            ckpt = found[0].with_name("checkpoint.pt")
            break
        time.sleep(0.05)
    assert ckpt is not None, "the long cell never started training"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert ckpt.is_file()  # Ctrl-C wrote the last finished epoch
    assert "run the same command again" in err
    quick = next(d for n, d in cell_dirs(runs).items() if "@" not in n)
    long_dir = ckpt.parent
    assert (quick / "compare-cell.json").is_file() and not (long_dir / "compare-cell.json").is_file()
    stamp = (quick / "compare-cell.json").stat().st_mtime_ns
    r = run_cli("compare", str(grid), "--out", str(runs), "--no-figures", env=env_for(site, tmp_path / "c.txt"))
    assert r.returncode == 0, r.stderr
    assert "cell 0 fsv+tinyseg: finished earlier, skipped" in r.stderr
    assert (quick / "compare-cell.json").stat().st_mtime_ns == stamp
    m = json.loads((long_dir / "metrics.json").read_text())
    assert m["epochs_done"] == 400
    assert "| long |" in r.stdout and "| quick |" in r.stdout


def test_a_row_setting_that_a_preset_would_drop_is_one_line(tmp_path):
    """A preset's data section names its dataset and replaces the row's: the row's data keys would vanish."""
    from crackseg.apps.compare import load_grid
    from crackseg.base.errors import ConfigError

    base = ("tests: [{id: a, run_test: true}]\n"
            "presets: {small: {shared: {data: {name: synthetic, n_train: 4, n_test: 2}, train: {epochs: 1}}}}\n")
    dropped = base + ("tables: [{id: t, rows: [{id: r, labeler: ridge, backbone: unet, "
                      "set: {data: {weak_labels: {source: masks}}}}]}]")
    p = tmp_path / "g.yaml"
    p.write_text(dropped)
    with pytest.raises(ConfigError, match=r"t row 'r': set.data.weak_labels.source does not reach the cell's "
                                          r"config: preset 'small' replaces that section"):
        load_grid(p, "small")
    # a key the preset sets itself is overridden on purpose, and a key that reaches the cell is fine
    kept = base + ("tables: [{id: t, rows: [{id: r, labeler: ridge, backbone: unet, "
                   "set: {train: {epochs: 3, batch_size: 2}}}]}]")
    p.write_text(kept)
    cell = load_grid(p, "small").cells[0]
    assert cell.config["train"]["epochs"] == 1 and cell.config["train"]["batch_size"] == 2
