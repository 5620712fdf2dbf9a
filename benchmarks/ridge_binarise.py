"""How the ``ridge`` labeler cuts its map into binary pseudo-labels: the default, chosen on training splits only.

The binary labels are what phase 2 trains on, so the cut is chosen by the pixel F-measure of the
binary labels against the masks, summed over DeepCrack-train (300) and CFD's training split (94 of
118, the ``folder`` dataset's SHA-1 rule), with the labeler's default map (gated by weak labels from
the masks at 64 px, the default ``gate: labels``; the ungated figures are printed too). No test image
is read.

    .venv/bin/python benchmarks/ridge_binarise.py            # ~1 min on 2 cores
"""

from __future__ import annotations

import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import crackseg
from crackseg.data.weak_labels import from_mask
from crackseg_ridge import RidgeLabeler, RidgeParams

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SETS = {"DeepCrack-train": ("deepcrack", "train"), "CFD-train": ("cfd", "train")}

CANDIDATES: list[dict[str, object]] = (
    [{"binarise": "otsu"}]
    + [{"binarise": "percentile", "percentile": p} for p in (90.0, 93.0, 95.0, 97.0, 98.0, 99.0)]
    + [{"binarise": "hysteresis", "low": lo, "high": hi}
       for lo in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4) for hi in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) if hi > lo]
)


def _counts(args: tuple[str, str]) -> dict[tuple[str, int], np.ndarray]:
    """(candidate index, gated?) -> [tp, fp, fn] summed over one split's images."""
    name, split = args
    samples = crackseg.create_dataset("folder", root=str(SHARED / name)).samples(split)
    labelers = {i: RidgeLabeler(RidgeParams(**c)) for i, c in enumerate(CANDIDATES)}  # type: ignore[arg-type]
    base = labelers[0]
    out: dict[tuple[str, int], np.ndarray] = {}
    for s in samples:
        image, gt = s.load_image(), s.mask()
        soft = base.soft_map(image)
        region = from_mask(gt, 64).gate(*gt.shape)
        for gated in (True, False):
            for i, lab in labelers.items():
                binary = lab.to_label(soft, region if gated else None).binary
                tp = int(np.count_nonzero(binary & gt))
                counts = np.array([tp, int(np.count_nonzero(binary)) - tp, int(np.count_nonzero(gt)) - tp])
                key = ("gated64" if gated else "ungated", i)
                out[key] = out.get(key, 0) + counts
    return out


def f_measure(c: np.ndarray) -> float:
    tp, fp, fn = (float(x) for x in c)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main() -> None:
    if not all((SHARED / n).is_dir() for n, _ in SETS.values()):
        sys.exit(f"needs the data sets in {SHARED} (deepcrack, cfd)")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"Machine: {os.cpu_count()} CPUs, {cpu}; Python {platform.python_version()}")
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = dict(zip(SETS, pool.map(_counts, SETS.values())))
    rows = []
    for i in range(len(CANDIDATES)):
        f = {(mode, s): f_measure(results[s][(mode, i)]) for s in SETS for mode in ("gated64", "ungated")}
        rows.append((np.mean([f[("gated64", s)] for s in SETS]), i, f))
    rows.sort(reverse=True)
    print("\nBinary pseudo-label F (%) of the ridge labeler's cut, default map; training splits only\n")
    print("| cut | " + " | ".join(f"{s} gated64" for s in SETS) + " | mean gated64 | "
          + " | ".join(f"{s} ungated" for s in SETS) + " | mean ungated |")
    print("|---|" + "---:|" * (2 * len(SETS) + 2))
    for mean, i, f in rows[:12]:
        c = CANDIDATES[i]
        text = ", ".join(f"{k}={v}" for k, v in c.items())
        print(f"| {text} | " + " | ".join(f"{100 * f[('gated64', s)]:.1f}" for s in SETS) + f" | {100 * mean:.1f} | "
              + " | ".join(f"{100 * f[('ungated', s)]:.1f}" for s in SETS)
              + f" | {100 * np.mean([f[('ungated', s)] for s in SETS]):.1f} |")
    best = CANDIDATES[rows[0][1]]
    print(f"\nbest on the training splits (gated 64 px): {best}; the default is RidgeParams: "
          f"{ {k: getattr(RidgeParams(), k) for k in best} }")


if __name__ == "__main__":
    main()
