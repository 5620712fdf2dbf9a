"""Tests of crackseg.evaluation.metrics: fixture reproduction, hand cases, reference equality."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crackseg.base.errors import CracksegError, DataError
from crackseg.base.maps import pred_to_uint8
from crackseg.evaluation.metrics import (
    PROTOCOLS,
    MetricAccumulator,
    counts_from_histograms,
    evaluate_dirs,
    image_histograms,
    write_prf_table,
)

FIXTURE = Path(
    os.environ.get("CRACKSEG_METRIC_FIXTURE")
    or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "metrics"
)


# -- straightforward references (one binarisation per threshold) ----------------------
def _ref_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """TP, FP, FN per threshold, binarising like the authors' script: pred/255 > t."""
    rows = []
    for t in np.arange(0.0, 1.0, 0.01):
        b = pred / 255 > t
        rows.append([np.sum(b & gt), np.sum(b & ~gt), np.sum(~b & gt)])
    return np.array(rows, dtype=np.int64)  # [100, 3]


def _ref_prf(tp, fp, fn):
    """P, R, F of one (tp, fp, fn) with numpy scalar semantics, as in the script."""
    tp, fp, fn = np.int64(tp), np.int64(fp), np.int64(fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 if tp == 0 and fp == 0 else tp / (tp + fp)
        r = tp / (tp + fn)
        f = 2 * p * r / (p + r)
    return p, r, f


def _ref_crackclip(preds, gts):
    counts = [_ref_counts(p, g) for p, g in zip(preds, gts)]
    pooled = np.sum(counts, axis=0)
    table = [_ref_prf(*pooled[i]) for i in range(100)]
    fs = [row[2] for row in table]
    ods = np.nanmax(fs)
    ap = 0
    for t in range(1, 100):
        ap += (table[t - 1][1] - table[t][1]) * table[t][0]
    chosen = []
    for c in counts:
        f_img = [_ref_prf(*c[i])[2] for i in range(100)]
        chosen.append(c[int(np.argmax(f_img))])
    ois = _ref_prf(*np.sum(chosen, axis=0))[2]
    return float(ods), float(ois), float(ap)


def _ref_paper(preds, gts):
    per = []  # per image: list over thresholds 0..99 of (p, r, f)
    for p, g in zip(preds, gts):
        c = _ref_counts(p, g)
        rows = []
        for i in range(100):
            pp, rr, ff = _ref_prf(*c[i])
            rows.append((float(pp), float(rr), 0.0 if math.isnan(ff) else float(ff)))
        per.append(rows)
    f = np.array([[row[2] for row in img] for img in per])
    ods = max(f[:, i].mean() for i in range(1, 100))
    ois = float(np.mean([f[k, 1:].max() for k in range(len(per))]))
    crack = [k for k in range(len(per)) if gts[k].any()]
    pbar = [np.mean([per[k][i][0] for k in range(len(per))]) for i in range(100)]
    rbar = [np.mean([per[k][i][1] for k in crack]) for i in range(100)]
    ap = sum((rbar[i - 1] - rbar[i]) * pbar[i] for i in range(1, 100))
    return float(ods), ois, float(ap)


def _acc(protocol, preds, gts):
    acc = MetricAccumulator(protocol)
    for k, (p, g) in enumerate(zip(preds, gts)):
        acc.add(f"img{k:03d}", p, g)
    return acc.result()


def _random_set(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for k in range(n):
        h, w = rng.integers(5, 24, size=2)
        gt = rng.random((h, w)) < rng.uniform(0.0, 0.3)
        if k == 0:
            gt[:] = False  # crack-free image: NaN F everywhere (quirk)
        noise = rng.integers(0, 256, size=(h, w))
        pred = np.where(gt, np.clip(noise + 80, 0, 255), noise // 2).astype(np.uint8)
        if k == 1:
            pred[:] = 0  # empty prediction
        if k == 2:
            pred[:] = 140  # constant prediction
        preds.append(pred)
        gts.append(gt)
    return preds, gts


# -- the authors' threshold rule ------------------------------------------------------
def test_integer_threshold_rule_equals_float_rule():
    v = np.arange(256, dtype=np.uint8)
    fl = v[None, :] / 255 > np.arange(0.0, 1.0, 0.01)[:, None]
    it = 100 * v[None, :].astype(np.int64) > 255 * np.arange(100)[:, None]
    assert fl.shape == (100, 256)
    assert np.array_equal(fl, it)


def test_histogram_counts_equal_per_threshold_counts():
    preds, gts = _random_set(0, n=5)
    for p, g in zip(preds, gts):
        pos, neg = image_histograms(p, g)
        assert pos.sum() == g.sum() and neg.sum() == (~g).sum()
        tp, fp, fn = counts_from_histograms(pos, neg)
        ref = _ref_counts(p, g)
        assert np.array_equal(np.stack([tp, fp, fn], axis=1), ref)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crackclip_equals_straightforward_reference(seed):
    preds, gts = _random_set(seed)
    res = _acc("crackclip", preds, gts)
    ods, ois, ap = _ref_crackclip(preds, gts)
    assert res.ods == pytest.approx(ods, abs=1e-12)
    assert res.ois == pytest.approx(ois, abs=1e-12, nan_ok=True)
    assert res.ap == pytest.approx(ap, abs=1e-12)
    assert res.thresholds.shape == (100,) and res.precision.shape == (100,)


@pytest.mark.parametrize("seed", [4, 5])
def test_paper_equals_straightforward_reference(seed):
    preds, gts = _random_set(seed)
    res = _acc("paper", preds, gts)
    ods, ois, ap = _ref_paper(preds, gts)
    assert res.ods == pytest.approx(ods, abs=1e-12)
    assert res.ois == pytest.approx(ois, abs=1e-12)
    assert res.ap == pytest.approx(ap, abs=1e-12)
    assert res.thresholds.shape == (99,)
    assert res.thresholds[0] == pytest.approx(0.01) and res.thresholds[-1] == pytest.approx(0.99)


# -- the fixture -------------------------------------------------------------------
def test_fixture_reproduces_authors_numbers():
    if not (FIXTURE / "expected.json").is_file():
        pytest.skip(f"needs the metric fixture {FIXTURE} (40 prediction/mask pairs and the scores of the CrackCLIP "
                    f"authors' script, expected.json): ../shared/fixtures/metrics beside the repository in the "
                    f"development checkout, or CRACKSEG_METRIC_FIXTURE=DIR naming a copy")
    expected = json.loads((FIXTURE / "expected.json").read_text())
    res = evaluate_dirs(FIXTURE / "pred", FIXTURE / "gt", protocol="crackclip")
    assert res.n == expected["n"] == 40
    for key in ("ods", "ois", "ap"):
        assert abs(getattr(res, key) - expected[key]) < 1e-9, key
    out = res.to_json()
    assert set(out) >= {"ods", "ois", "ap", "n"} and out["protocol"] == "crackclip"


# -- hand-computed cases -------------------------------------------------------------
def _quirk_pair():
    # A: crack at two pixels; 100 on one of them, a 250 false positive.
    #   t <= 0.39: TP=1 FP=1 FN=1 -> F=0.5; 0.40..0.98: TP=0 FP=1 -> F=NaN; 0.99: F=0.
    a_pred = np.array([[100, 0, 250, 0]], np.uint8)
    a_gt = np.array([[True, True, False, False]])
    # B: perfect at every threshold (255 > 252).
    b_pred = np.array([[255, 0]], np.uint8)
    b_gt = np.array([[True, False]])
    return [a_pred, b_pred], [a_gt, b_gt]


def test_nan_argmax_quirk_crackclip():
    preds, gts = _quirk_pair()
    res = _acc("crackclip", preds, gts)
    # np.argmax picks the first NaN (t=0.40) for A, not its best F (0.5 at 0.00).
    assert res.per_image[0]["best_threshold"] == pytest.approx(0.40)
    assert math.isnan(res.per_image[0]["f1"])
    assert res.per_image[1]["best_threshold"] == 0.0
    # pooled at those thresholds: TP=1 FP=1 FN=2 -> P=1/2, R=1/3, F=0.4 (2/3 without the quirk)
    assert res.ois == pytest.approx(0.4, abs=1e-15)
    # pooled: F=2/3 for t<=0.39, 0.4 for 0.40..0.98, 0.5 at 0.99
    assert res.ods == pytest.approx(2 / 3, abs=1e-15)
    assert res.ods_threshold == 0.0
    # R drops 2/3 -> 1/3 at t=0.40 where P=1/2
    assert res.ap == pytest.approx(1 / 6, abs=1e-15)


def test_paper_protocol_hand_case():
    preds, gts = _quirk_pair()
    res = _acc("paper", preds, gts)
    # F1 (NaN -> 0): A = 0.5 for 0.01..0.39 then 0; B = 1 everywhere
    assert res.ods == pytest.approx(0.75, abs=1e-15)
    assert res.ods_threshold == pytest.approx(0.01)
    assert res.ois == pytest.approx(0.75, abs=1e-15)
    # mean recall 0.75 -> 0.5 at t=0.40 where mean precision = (0 + 1) / 2
    assert res.ap == pytest.approx(0.125, abs=1e-15)
    assert res.per_image[0]["best_threshold"] == pytest.approx(0.01)


def test_crack_free_image_quirk_counts_its_false_positives():
    # B perfect; C crack-free with one weak false positive (50): its F is NaN at every
    # threshold, so argmax picks 0.00 and the false positive is pooled into OIS.
    preds = [np.array([[255, 0]], np.uint8), np.array([[50, 0]], np.uint8)]
    gts = [np.array([[True, False]]), np.array([[False, False]])]
    res = _acc("crackclip", preds, gts)
    assert res.per_image[1]["best_threshold"] == 0.0
    assert res.ois == pytest.approx(2 / 3, abs=1e-15)  # TP=1 FP=1 FN=0
    assert res.ods == pytest.approx(1.0)  # from t=0.20 on, C predicts nothing
    assert res.ods_threshold == pytest.approx(0.20)


def test_only_empty_ground_truth_is_undefined():
    preds = [np.array([[30, 0, 0]], np.uint8)]
    gts = [np.zeros((1, 3), bool)]
    res = _acc("crackclip", preds, gts)
    assert math.isnan(res.ods) and math.isnan(res.ois) and math.isnan(res.ap)
    out = res.to_json()
    assert out["ods"] is None and out["ap"] is None
    json.dumps(out, allow_nan=False)  # valid strict JSON
    paper = _acc("paper", preds, gts)
    assert paper.ods == 0.0 and paper.ois == 0.0 and math.isnan(paper.ap)


def test_empty_prediction():
    res = _acc("crackclip", [np.zeros((1, 2), np.uint8)], [np.array([[True, False]])])
    # every threshold: TP=0 FP=0 FN=1 -> P=1, R=0, F=0
    assert res.ods == 0.0 and res.ois == 0.0 and res.ap == 0.0
    assert np.all(res.precision == 1.0) and np.all(res.recall == 0.0)


def test_constant_prediction():
    pred = np.full((1, 4), 128, np.uint8)
    gt = np.array([[True, False, False, False]])
    res = _acc("crackclip", [pred], [gt])
    # t <= 0.50 (128 > 127.5): TP=1 FP=3 FN=0 -> P=1/4, R=1, F=0.4; above: P=1, R=0, F=0
    assert res.ods == pytest.approx(0.4, abs=1e-15)
    assert res.ois == pytest.approx(0.4, abs=1e-15)
    # the script's AP: (R[50] - R[51]) * P[51] = 1 * 1 (P := 1 when nothing is predicted)
    assert res.ap == pytest.approx(1.0, abs=1e-15)
    assert res.recall[50] == 1.0 and res.recall[51] == 0.0


def test_float_prediction_matches_uint8():
    rng = np.random.default_rng(7)
    prob = rng.random((9, 11))
    gt = rng.random((9, 11)) < 0.2
    u8 = pred_to_uint8(prob)
    assert u8.dtype == np.uint8
    assert np.array_equal(u8, np.floor(prob * 255 + 0.5).astype(np.uint8))
    a = _acc("crackclip", [prob], [gt])
    b = _acc("crackclip", [u8], [gt])
    assert a.ods == b.ods and a.ap == b.ap


def test_pred_to_uint8_rejects_logits_and_nan():
    with pytest.raises(DataError, match="sigmoid"):
        pred_to_uint8(np.array([[-3.0, 4.0]]))
    with pytest.raises(DataError, match="NaN"):
        pred_to_uint8(np.array([[np.nan, 0.5]]))
    assert pred_to_uint8(np.array([[True, False]])).tolist() == [[255, 0]]


# -- accumulator behaviour ---------------------------------------------------------------
def test_unknown_protocol_lists_choices():
    with pytest.raises(CracksegError, match="crackclip, paper"):
        MetricAccumulator("pape")
    assert PROTOCOLS == ("crackclip", "paper")


def test_size_mismatch_names_stem_and_sizes():
    acc = MetricAccumulator()
    with pytest.raises(DataError) as err:
        acc.add("road_07", np.zeros((4, 5), np.uint8), np.zeros((4, 6), bool))
    msg = str(err.value)
    assert "road_07" in msg and "5x4" in msg and "6x4" in msg


def test_duplicate_stem_and_empty_accumulator():
    acc = MetricAccumulator()
    with pytest.raises(DataError, match="no images"):
        acc.result()
    acc.add("a", np.zeros((2, 2), np.uint8), np.zeros((2, 2), bool))
    with pytest.raises(DataError, match="twice"):
        acc.add("a", np.zeros((2, 2), np.uint8), np.zeros((2, 2), bool))


def test_zero_one_uint8_mask_is_crack_where_one():
    """The rule of read_mask: a uint8 mask whose values are only 0 and 1 is crack where 1 (issue 26)."""
    a, b = MetricAccumulator(), MetricAccumulator()
    pred = np.array([[200, 10], [10, 200]], np.uint8)
    a.add("x", pred, np.eye(2, dtype=np.uint8))
    b.add("x", pred, np.eye(2, dtype=bool))
    assert a.histograms()[0][1].tolist() == b.histograms()[0][1].tolist()
    with pytest.raises(DataError, match="0/1 or 0/255"):
        MetricAccumulator().add("x", pred, np.eye(2, dtype=np.int32))


def test_histograms_round_trip_and_sharding():
    preds, gts = _random_set(11, n=6)
    whole = _acc("crackclip", preds, gts)
    shard1, shard2 = MetricAccumulator(), MetricAccumulator()
    for k, (p, g) in enumerate(zip(preds, gts)):
        (shard1 if k % 2 else shard2).add(f"img{k:03d}", p, g)
    merged = MetricAccumulator()
    for stem, pos, neg in shard1.histograms() + shard2.histograms():
        merged.add_histograms(stem, pos, neg)
    res = merged.result()
    assert (res.ods, res.ap) == (whole.ods, whole.ap)
    assert res.ois == pytest.approx(whole.ois, abs=0, nan_ok=True)
    with pytest.raises(DataError, match="shape"):
        merged.add_histograms("bad", np.zeros(10), np.zeros(256))


# -- folders ------------------------------------------------------------------------
def _write(folder: Path, name: str, arr: np.ndarray) -> None:
    from crackseg.base.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    if name.endswith(".png"):
        write_png(folder / name, arr)
    else:
        import cv2

        assert cv2.imwrite(str(folder / name), arr)


def test_evaluate_dirs_pairs_by_stem(tmp_path):
    gt_a = np.zeros((6, 8), np.uint8)
    gt_a[2, :] = 255
    gt_b = np.zeros((6, 8), np.uint8)
    gt_b[:, 3] = 255
    # stem "a" gets a perfect prediction, "b" an empty one; suffixes differ between folders
    _write(tmp_path / "gt", "a.png", gt_a)
    _write(tmp_path / "gt", "b.png", gt_b)
    _write(tmp_path / "pred", "a.bmp", gt_a)
    _write(tmp_path / "pred", "b.png", np.zeros((6, 8), np.uint8))
    res = evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    assert res.n == 2
    by_stem = {d["stem"]: d for d in res.per_image}
    assert by_stem["a"]["f1"] == 1.0 and by_stem["b"]["f1"] == 0.0
    from crackseg.base.tables import results_table

    row = results_table([{**res.to_json(), "labeler": "x"}]).splitlines()[-1]
    assert row.startswith("| x | ") and f"| {100 * res.ods:.2f} |" in row


def test_evaluate_dirs_names_missing_and_extra(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    for s in ["a", "b", "c"]:
        _write(tmp_path / "gt", f"{s}.png", m)
    for s in ["a", "zz", "c"]:
        _write(tmp_path / "pred", f"{s}.png", m)
    with pytest.raises(DataError) as err:
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    msg = str(err.value)
    assert "no prediction: b" in msg and "no ground truth: zz" in msg


def test_evaluate_dirs_lists_at_most_five(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    _write(tmp_path / "pred", "only.png", m)
    for k in range(8):
        _write(tmp_path / "gt", f"g{k}.png", m)
    with pytest.raises(DataError) as err:
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    msg = str(err.value)
    assert "g4" in msg and "g5" not in msg and "3 more" in msg


def test_evaluate_dirs_empty_and_size_mismatch(tmp_path):
    (tmp_path / "pred").mkdir()
    _write(tmp_path / "gt", "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no prediction images"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    _write(tmp_path / "pred", "a.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"a\.png.*5x4.*4x4"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")


def _write_set(root: Path, seed: int, n: int, order: list[int] | None = None) -> list[str]:
    """``_random_set`` as ``root/pred`` and ``root/gt`` PNG folders (0/255 masks, and a 0/1 one), written in
    ``order``; returns the stems in name order."""
    preds, gts = _random_set(seed, n=n)
    stems = [f"img{k:03d}" for k in range(n)]
    for k in order if order is not None else range(n):
        gt = gts[k].astype(np.uint8) * (1 if k == 3 else 255)  # image 3: a 0/1 mask
        _write(root / "gt", f"{stems[k]}.png", gt)
        _write(root / "pred", f"{stems[k]}.png", preds[k])
    return stems


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_evaluate_dirs_same_result_with_any_number_of_workers(tmp_path, protocol):
    from crackseg.evaluation.metrics import prf_rows

    _write_set(tmp_path, seed=21, n=13)
    preds, gts = _random_set(21, n=13)
    want = _acc(protocol, preds, gts)  # in memory, in order, one by one
    for workers in (1, 2, 5, 64):
        res = evaluate_dirs(tmp_path / "pred", tmp_path / "gt", protocol=protocol, workers=workers)
        assert (res.ods, res.ap, res.n, res.ods_threshold) == (want.ods, want.ap, want.n, want.ods_threshold)
        assert res.ois == pytest.approx(want.ois, abs=0, nan_ok=True)
        assert list(prf_rows(res)) == list(prf_rows(want)), workers
        assert json.dumps(res.per_image) == json.dumps(want.per_image)  # NaN F of the crack-free image included
        assert res.gt_crack_pixels == want.gt_crack_pixels


def test_evaluate_dirs_does_not_depend_on_the_order_files_were_written(tmp_path):
    stems = _write_set(tmp_path / "a", seed=22, n=9)
    _write_set(tmp_path / "b", seed=22, n=9, order=[8, 2, 5, 0, 7, 1, 4, 6, 3])
    a = evaluate_dirs(tmp_path / "a" / "pred", tmp_path / "a" / "gt", workers=3)
    b = evaluate_dirs(tmp_path / "b" / "pred", tmp_path / "b" / "gt", workers=3)
    assert [d["stem"] for d in b.per_image] == stems  # accumulated in stem order
    assert (a.ods, a.ap) == (b.ods, b.ap) and json.dumps(a.per_image) == json.dumps(b.per_image)
    assert a.ois == pytest.approx(b.ois, abs=0, nan_ok=True)


@pytest.mark.parametrize("workers", [1, 4])
def test_evaluate_dirs_names_the_first_unreadable_file_in_stem_order(tmp_path, workers):
    _write_set(tmp_path, seed=23, n=12)
    (tmp_path / "pred" / "img009.png").write_bytes(b"not a png")
    (tmp_path / "gt" / "img005.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError) as err:
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt", workers=workers)
    assert str(err.value).startswith(f"{tmp_path / 'gt' / 'img005.png'}: cannot read image")
    (tmp_path / "gt" / "img005.png").unlink()
    _write(tmp_path / "gt", "img005.png", np.zeros((3, 3), np.uint8))  # a size mismatch, still before img009
    with pytest.raises(DataError, match=r"img005\.png: prediction is \d+x\d+ but img005\.png is 3x3"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt", workers=workers)


def test_evaluate_dirs_progress_sees_every_pair_in_order(tmp_path):
    stems = _write_set(tmp_path, seed=24, n=5)
    seen: list[str] = []

    def progress(pairs):
        for pair in pairs:
            seen.append(pair[0])
            yield pair

    res = evaluate_dirs(tmp_path / "pred", tmp_path / "gt", progress=progress, workers=2)
    assert seen == stems and res.n == 5


def test_write_prf_table(tmp_path):
    preds, gts = _quirk_pair()
    res = _acc("crackclip", preds, gts)
    out = tmp_path / "run" / "prf.tsv"
    write_prf_table(res, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "threshold\tprecision\trecall\tf1"
    assert len(lines) == 101
    t, p, r, f = lines[41].split("\t")
    assert t == "0.40" and float(p) == pytest.approx(0.5) and float(f) == pytest.approx(0.4)


def test_metrics_import_is_light():
    code = (
        "import sys, crackseg.evaluation.metrics; "
        "bad = [m for m in ('torch', 'cv2') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_value_histogram_paths_agree(monkeypatch):
    from crackseg.evaluation import metrics

    rng = np.random.default_rng(3)
    pred = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    gt = rng.random((37, 53)) < 0.1
    ref = np.bincount(pred.ravel(), minlength=256)
    assert np.array_equal(metrics._value_histogram(pred), ref)
    strided = pred[:, ::2]  # non-contiguous input
    assert np.array_equal(metrics._value_histogram(strided), np.bincount(strided.ravel(), minlength=256))
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError: numpy path
    assert np.array_equal(metrics._value_histogram(pred), ref)
    pos, neg = image_histograms(pred, gt)
    assert np.array_equal(pos, np.bincount(pred[gt], minlength=256))
    assert np.array_equal(neg, np.bincount(pred[~gt], minlength=256))


def test_crack_mask_is_the_metrics_cut_and_exact_at_the_threshold():
    """One binarisation for masks, overlays, measurements and reports: the metrics' own cut on the grid."""
    from crackseg.base.maps import crack_mask

    values = np.arange(256, dtype=np.uint8)
    for i in range(100):
        assert np.array_equal(crack_mask(values, i / 100), values > (255 * i) // 100), i
    assert not crack_mask(np.array([51], np.uint8), 0.2)[0]  # 51/255 == 0.2 exactly: not above it
    assert crack_mask(np.array([96], np.uint8), 0.375)[0] and not crack_mask(np.array([95], np.uint8), 0.375)[0]
