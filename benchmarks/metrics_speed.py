"""Time crackseg's histogram metrics against straightforward per-threshold code.

Generates N deterministic crack-like pairs (thin random-walk cracks, noisy soft
predictions with stains), then computes ODS / OIS / AP (``crackclip``
protocol) three ways:

* ``crackseg``: :class:`crackseg.evaluation.metrics.MetricAccumulator` (one histogram pass
  per image, cumulative sums for all 100 thresholds);
* ``per-threshold``: the straightforward way, as the authors' script does it:
  for every image and threshold, binarise ``pred / 255 > t`` and count TP, FP
  and FN with boolean masks (done once and shared by ODS, OIS and AP);
* ``per-threshold, lean``: the same loop with an integer comparison and
  ``np.count_nonzero`` (a stronger baseline, reported for honesty).

Checks that all three give identical counts and identical ODS / OIS / AP,
then prints a Markdown table. Usage::

    python benchmarks/metrics_speed.py            # 500 images of 544x384
    python benchmarks/metrics_speed.py --n 20 --size 128x96
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from crackseg.evaluation.metrics import MetricAccumulator, counts_from_histograms, image_histograms


def make_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One crack-like (prediction uint8, ground truth bool) pair."""
    gt = np.zeros((h, w), bool)
    n_cracks = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))  # 10% crack-free
    for _ in range(n_cracks):
        steps = int(rng.integers(w // 2, 2 * w))
        angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, steps))
        y = np.clip(rng.uniform(0, h) + np.cumsum(np.sin(angle)), 0, h - 1).astype(int)
        x = np.clip(rng.uniform(0, w) + np.cumsum(np.cos(angle)), 0, w - 1).astype(int)
        width = int(rng.integers(1, 6))  # 1..5 px wide
        for dy in range(width):
            for dx in range(width):
                gt[np.minimum(y + dy, h - 1), np.minimum(x + dx, w - 1)] = True
    stain = np.kron(rng.normal(0, 25, (h // 32 + 1, w // 32 + 1)), np.ones((32, 32)))[:h, :w]
    noise = rng.normal(0, 30, (h, w))
    soft = np.where(gt, rng.uniform(90, 200), 20.0) + stain + noise
    return np.clip(soft, 0, 255).astype(np.uint8), gt


def per_threshold_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[100, 3] TP, FP, FN by binarising ``pred / 255 > t`` at each threshold."""
    out = np.empty((100, 3), np.int64)
    not_gt = ~gt
    for i, t in enumerate(np.arange(0.0, 1.0, 0.01)):
        b = pred / 255 > t
        out[i] = (np.sum(b & gt), np.sum(b & not_gt), np.sum(~b & gt))
    return out


def per_threshold_counts_lean(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Same counts, integer comparison (value > floor(2.55 i)) and count_nonzero."""
    out = np.empty((100, 3), np.int64)
    n_pos = int(np.count_nonzero(gt))
    for i in range(100):
        b = pred > (255 * i) // 100
        tp = int(np.count_nonzero(b & gt))
        out[i] = (tp, int(np.count_nonzero(b)) - tp, n_pos - tp)
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    tp_, fp_, fn_ = np.int64(tp), np.int64(fp), np.int64(fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 if tp_ == 0 and fp_ == 0 else tp_ / (tp_ + fp_)
        r = tp_ / (tp_ + fn_)
        f = 2 * p * r / (p + r)
    return float(p), float(r), float(f)


def scores_from_counts(counts: np.ndarray) -> tuple[float, float, float]:
    """ODS, OIS, AP (crackclip protocol) from a [N, 100, 3] count table, plainly."""
    pooled = counts.sum(axis=0)
    table = [_prf(*pooled[i]) for i in range(100)]
    ods = float(np.nanmax([row[2] for row in table]))
    ap = 0.0
    for t in range(1, 100):
        ap += (table[t - 1][1] - table[t][1]) * table[t][0]
    chosen = [c[int(np.argmax([_prf(*c[i])[2] for i in range(100)]))] for c in counts]
    ois = _prf(*np.sum(chosen, axis=0))[2]
    return ods, ois, ap


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="number of image pairs (default 500)")
    ap.add_argument("--size", default="544x384", help="W x H of each image (default 544x384)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true", help="skip the slow pred/255 > t baseline")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    rng = np.random.default_rng(args.seed)
    pairs = [make_pair(rng, h, w) for _ in range(args.n)]
    crack_frac = float(np.mean([g.mean() for _, g in pairs]))

    t0 = time.perf_counter()
    acc = MetricAccumulator("crackclip")
    for k, (p, g) in enumerate(pairs):
        acc.add(f"{k:04d}", p, g)
    res = acc.result()
    t_fast = time.perf_counter() - t0
    fast_scores = (res.ods, res.ois, res.ap)
    fast_counts = np.stack(
        [np.stack(counts_from_histograms(*image_histograms(p, g)), axis=1) for p, g in pairs]
    )

    rows = [("crackseg (histograms)", t_fast, fast_scores)]
    methods = [("per-threshold, lean (int compare, count_nonzero)", per_threshold_counts_lean)]
    if not args.skip_naive:
        methods.insert(0, ("per-threshold (pred/255 > t, boolean sums)", per_threshold_counts))
    ok = True
    for name, fn in methods:
        t0 = time.perf_counter()
        counts = np.stack([fn(p, g) for p, g in pairs])
        scores = scores_from_counts(counts)
        dt = time.perf_counter() - t0
        same = np.array_equal(counts, fast_counts) and all(map(_same, scores, fast_scores))
        ok &= same
        rows.append((name, dt, scores))

    print(f"{args.n} images of {w}x{h}, crack pixels {100 * crack_frac:.2f}%, "
          f"numpy {np.__version__}, identical numbers: {'yes' if ok else 'NO'}\n")
    print("| method | seconds | ratio vs crackseg | ODS | OIS | AP |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, dt, (ods, ois, apv) in rows:
        print(f"| {name} | {dt:.3f} | {dt / t_fast:.1f}x | {ods:.6f} | {ois:.6f} | {apv:.6f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
