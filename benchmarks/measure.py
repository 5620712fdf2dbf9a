"""Accuracy of `crackseg measure` on cracks whose true length and width are known.

Each crack is a random walk drawn exactly as the synthetic generator draws its cracks
(4x supersampled, half-coverage mask), with a constant width, in a 256x256 mask.
Prints, per width: mean and worst relative length error, mean and worst width error (px),
and the time per mask.

    python benchmarks/measure.py [--seeds 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crackseg.apps.measure import MeasureOptions, measure_mask
from crackseg_datasets.synthetic import draw_crack


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=40)
    args = ap.parse_args()
    measure_mask(draw_crack(0, 2.0).mask)  # compile skan's numba kernels outside the timing
    print(f"{args.seeds} random-walk cracks per width, 256x256 masks")
    print("| width (px) | length error, mean | length error, worst | width error, mean (px) | width error, worst (px) "
          "| ms / mask |")
    print("|---:|---:|---:|---:|---:|---:|")
    for width in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        le, we = [], []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            crack = draw_crack(seed, width)
            instances, _ = measure_mask(crack.mask, options=MeasureOptions(min_area=0))
            inst = max(instances, key=lambda i: i.length)
            le.append(inst.length / crack.length - 1)
            we.append(inst.width_mean - width)
        ms = 1000 * (time.perf_counter() - t0) / args.seeds
        print(f"| {width:.1f} | {100 * np.mean(le):+.1f} % | {100 * np.max(np.abs(le)):.1f} % | {np.mean(we):+.2f} "
              f"| {np.max(np.abs(we)):.2f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
