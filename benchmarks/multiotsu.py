"""``cam-location``'s window thresholding: scikit-image's multi-Otsu against the dynamic programme.

``cam-location`` min-max normalises every ``window``² window (32 px at stride 8 by default) and
splits it into ``otsu_classes`` multi-Otsu classes. scikit-image searches every combination of
thresholds; ``crackseg_cam.multiotsu`` finds the same optimum by dynamic programming. The table
gives the time per 32×32 window of a real photo (the first CFD image, bilateral-filtered grey, as
the labeler sees it) and what that makes per CFD photo (the window count of its thresholding).
scikit-image's 5-class search is timed on one window (it takes seconds).

    .venv/bin/python benchmarks/multiotsu.py          # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from labelers import SHARED


def per_call(fn: Callable[[np.ndarray, int], object], windows: list[np.ndarray], classes: int,
             budget_s: float, most: int) -> float:
    """Seconds per ``fn(window, classes)``, cycling over ``windows``: as many calls as fit in ``budget_s``
    (at least one, at most ``most``)."""
    t0, n = time.perf_counter(), 0
    while n < most and (n == 0 or time.perf_counter() - t0 < budget_s):
        fn(windows[n % len(windows)], classes)
        n += 1
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfd", type=Path, default=SHARED / "cfd")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=8)
    args = ap.parse_args(argv)

    import cv2
    from skimage.filters import threshold_multiotsu

    from crackseg.base.io import read_image
    from crackseg_cam.multiotsu import multiotsu_thresholds

    images = sorted(p for p in (args.cfd / "images").glob("*") if p.suffix.lower() in (".jpg", ".png"))
    if not images:
        print(f"skipped: no CFD images in {args.cfd}/images", file=sys.stderr)
        return 0
    rgb = read_image(images[0])
    grey = cv2.cvtColor(cv2.bilateralFilter(rgb, 5, 120, 120), cv2.COLOR_BGR2GRAY).astype(np.float64)
    h, w = grey.shape  # window_threshold pads (reflection) to a multiple of the window
    h, w = h + (-h) % args.window, w + (-w) % args.window
    grey = np.pad(grey, [(0, h - grey.shape[0]), (0, w - grey.shape[1])], mode="reflect")
    starts = [(y, x) for y in range(0, h - args.window + 1, args.stride)
              for x in range(0, w - args.window + 1, args.stride)]
    rng = np.random.default_rng(0)
    picks = [starts[i] for i in rng.choice(len(starts), 20, replace=False)]
    windows = []
    for y, x in picks:
        win = grey[y : y + args.window, x : x + args.window]
        windows.append((win - win.min()) / max(win.max() - win.min(), 1e-9))

    print(f"{images[0].name}: {w}x{h} px, {len(starts)} windows of {args.window} px at stride {args.stride}; "
          f"times over 20 of its windows\n")
    print("| classes | scikit-image ms / window | dynamic programme ms / window | scikit-image s / photo "
          "| dynamic programme s / photo |")
    print("|---:|---:|---:|---:|---:|")
    for classes in (2, 3, 4, 5):
        budget, most = (0.0, 1) if classes == 5 else (2.0, 200)
        sk = per_call(lambda win, c: threshold_multiotsu(win, classes=c), windows, classes, budget, most)
        dp = per_call(multiotsu_thresholds, windows, classes, 2.0, 200)
        print(f"| {classes} | {1000 * sk:.2f} | {1000 * dp:.2f} | {sk * len(starts):.1f} | {dp * len(starts):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
