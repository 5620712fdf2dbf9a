"""`crackseg measure`: crack lengths, widths, orientation and topology, checked against drawn ground truth."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import run_main

pytest.importorskip("skan")

from crackseg.apps.measure import MeasureOptions, measure_mask
from crackseg.base.io import write_png
from crackseg_datasets.synthetic import draw_crack  # noqa: E402

SEEDS = range(40)


def _main(mask: np.ndarray, **opt):
    instances, summary = measure_mask(mask, "x", MeasureOptions(**opt))
    return max(instances, key=lambda i: i.length), instances, summary


@pytest.mark.parametrize("width", [2.0, 2.5, 3.0, 3.5, 4.0])
def test_length_and_width_of_drawn_cracks(width):
    """Random-walk cracks drawn like the synthetic generator's: length within 5 %, mean width within 0.5 px."""
    for seed in SEEDS:
        crack = draw_crack(seed, width)
        inst, instances, _ = _main(crack.mask)
        assert len(instances) == 1
        assert abs(inst.length / crack.length - 1) < 0.05, (seed, inst.length, crack.length)
        assert abs(inst.width_mean - width) < 0.5, (seed, inst.width_mean)
        assert inst.width_max >= inst.width_p95 >= inst.width_median - 1e-9


def test_one_pixel_cracks_have_a_known_width_bias():
    """1-px cracks: the length is right, the width reads 1.5 px (README, Measurements: the stated bias)."""
    for seed in SEEDS:
        crack = draw_crack(seed, 1.0)
        inst, _, _ = _main(crack.mask, min_area=0)
        assert abs(inst.length / crack.length - 1) < 0.05
        assert inst.width_mean == pytest.approx(1.5, abs=0.1)


def test_naive_pixel_counting_would_fail_the_length_check():
    """The staircase smoothing matters: summing 1/√2 steps overestimates a 22.5° line by about 8 %."""
    mask = np.zeros((200, 200), bool)
    t = np.linspace(0, 150, 2000)
    x, y = (20 + t * np.cos(np.radians(22.5))).round().astype(int), (100 + t * np.sin(np.radians(22.5))).round()
    mask[y.astype(int), x] = True
    from scipy import ndimage

    mask = ndimage.binary_dilation(mask)  # about 3 px wide
    inst, _, _ = _main(mask)
    true_len = 150 + 3  # the dilation adds a pixel at each end
    assert abs(inst.length / true_len - 1) < 0.03


def _line(shape, p0, p1, width=3):
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.line(m, p0, p1, 1, width)
    return m.astype(bool)


@pytest.mark.parametrize("p0,p1,travel,expected", [
    ((10, 50), (90, 52), "vertical", "transverse"),
    ((50, 10), (52, 90), "vertical", "longitudinal"),
    ((10, 10), (90, 90), "vertical", "diagonal"),
    ((10, 50), (90, 52), "horizontal", "longitudinal"),
    ((50, 10), (52, 90), "horizontal", "transverse"),
])
def test_orientation(p0, p1, travel, expected):
    inst, _, _ = _main(_line((100, 100), p0, p1), travel=travel)
    assert inst.orientation == expected


def test_angle_is_counter_clockwise_on_screen():
    inst, _, _ = _main(_line((100, 100), (10, 90), (90, 10)))  # bottom-left to top-right
    assert inst.angle_deg == pytest.approx(45, abs=3)


def test_topology_single_branched_network():
    single, _, _ = _main(_line((100, 100), (10, 50), (90, 50)))
    assert (single.topology, single.junctions, single.cells) == ("single", 0, 0)
    t = _line((100, 100), (10, 30), (90, 30)) | _line((100, 100), (50, 30), (50, 90))
    branched, _, _ = _main(t)
    assert (branched.topology, branched.junctions, branched.branches) == ("branched", 1, 3)
    grid = np.zeros((120, 120), bool)
    for k in range(10, 111, 25):  # alligator-like: 4 x 4 cells
        grid |= _line(grid.shape, (k, 10), (k, 110)) | _line(grid.shape, (10, k), (110, k))
    network, instances, _ = _main(grid)
    assert len(instances) == 1 and network.topology == "network" and network.cells == 16


def test_small_components_and_image_totals():
    m = _line((100, 100), (10, 50), (90, 50))
    m[5:7, 5:7] = True  # 4 px: dropped by min_area=10
    _, instances, summary = _main(m)
    assert len(instances) == 1 and summary.instances == 1
    assert summary.total_length == pytest.approx(instances[0].length)
    assert summary.crack_fraction == pytest.approx((m.sum() - 4) / m.size)
    assert summary.density == pytest.approx(summary.total_length / m.size)


def test_millimetres():
    m = _line((100, 100), (10, 50), (90, 50))
    px, _, spx = _main(m)
    mm, _, smm = _main(m, px_per_mm=4.0)
    assert mm.length == pytest.approx(px.length / 4) and mm.width_mean == pytest.approx(px.width_mean / 4)
    assert mm.area == pytest.approx(px.area / 16) and smm.density == pytest.approx(spx.density * 4)


def _mask_folder(tmp_path, n=2):
    folder = tmp_path / "masks"
    for i in range(n):
        write_png(folder / f"m{i}.png", draw_crack(i, 3.0, size=96).mask.astype(np.uint8) * 255)
    return folder


def test_measure_command_writes_three_files_and_overlays(tmp_path):
    folder = _mask_folder(tmp_path)
    out = tmp_path / "meas"
    r = run_main("measure", str(folder), "--out", str(out), "--px-per-mm", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "2 cracks in 2 images" in r.stdout and "mm" in r.stdout
    rows = list(csv.DictReader((out / "instances.csv").open()))
    assert [r["image"] for r in rows] == ["m0", "m1"] and all(r["topology"] for r in rows)
    images = list(csv.DictReader((out / "images.csv").open()))
    assert [int(r["instances"]) for r in images] == [1, 1]
    data = json.loads((out / "measurements.json").read_text())
    assert data["unit"] == "mm" and data["px_per_mm"] == 2.0
    assert float(rows[0]["length"]) == pytest.approx(data["images"][0]["instances"][0]["length"], rel=1e-3)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["m0.png", "m1.png"]
    # measuring again replaces the folder
    r = run_main("measure", str(folder), "--out", str(out), "--quiet")
    assert r.returncode == 0 and json.loads((out / "measurements.json").read_text())["unit"] == "px"


def test_measure_a_run_folder_uses_its_ods_threshold(tmp_path):
    run = tmp_path / "run"
    prob = np.where(draw_crack(0, 3.0, size=96).mask, 200, 40).astype(np.uint8)
    write_png(run / "predictions" / "a.png", prob)
    (run / "config.yaml").write_text("{}\n")
    (run / "metrics.json").write_text(json.dumps({"ods_threshold": 0.5}))
    r = run_main("measure", str(run), "--out", str(tmp_path / "m"), "--quiet")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "m" / "measurements.json").read_text())
    assert data["threshold"] == 0.5 and data["images"][0]["instances"][0]["length"] > 20


@pytest.mark.parametrize("case", ["empty", "grey", "px0", "missing", "occupied"])
def test_measure_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    folder = _mask_folder(tmp_path, 1)
    out = tmp_path / "meas"
    args = ["measure", str(folder), "--out", str(out)]
    if case == "empty":
        args[1] = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
    elif case == "grey":
        write_png(folder / "m1.png", np.full((96, 96), 128, np.uint8))
    elif case == "px0":
        args += ["--px-per-mm", "0"]
    elif case == "missing":
        args[1] = str(tmp_path / "nope")
    elif case == "occupied":
        out.mkdir()
        (out / "photo.jpg").write_bytes(b"mine")
    r = run_main(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crackseg: error:"), r.stderr
    expected = {"empty": "no mask images", "grey": "m1.png: not a binary mask", "px0": "--px-per-mm",
                "missing": "no such folder", "occupied": "not an earlier crackseg measure output"}[case]
    assert expected in lines[0]
    if case == "occupied":
        assert sorted(p.name for p in out.iterdir()) == ["photo.jpg"]
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))
