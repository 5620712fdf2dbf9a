"""``crackseg_ridge.filters`` against scikit-image: seconds per 544x384 photo.

Times the ridge filters (sato / frangi / meijering at sigmas 1, 2, 3, the grey float32 image as input),
the whole training-free map (``ridge_response``: grey conversion, filter, 99.9th-percentile normalisation)
and the grey-level area opening (``area_opening`` by threshold decomposition with cv2 against
``skimage.morphology.area_opening``'s max-tree on the same quantised map), on the first DeepCrack image
(``../shared/datasets/deepcrack/images/``; a synthetic cracked surface of the same size when absent).
Each time is the min / median over ``--repeat`` runs (scikit-image's area opening: ``--repeat-slow``).

    .venv/bin/python benchmarks/ridge_filters.py          # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SIGMAS = (1.0, 2.0, 3.0)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def synthetic_photo(h: int = 384, w: int = 544, seed: int = 0) -> np.ndarray:
    """A grainy grey surface with a dark meandering crack, uint8 RGB."""
    import cv2

    rng = np.random.default_rng(seed)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    img = 150 + 12 * grain
    x = np.arange(w)
    y = (h / 2 + 40 * np.sin(x / 70) + np.cumsum(rng.normal(0, 0.8, w))).astype(int)
    for dx in range(-1, 2):
        img[np.clip(y + dx, 0, h - 1), x] -= 60
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def load_photo(folder: Path) -> tuple[np.ndarray, str]:
    import cv2

    paths = sorted(p for p in (folder / "images").glob("*") if p.suffix.lower() in (".jpg", ".png"))
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"DeepCrack {p.name}"
    return synthetic_photo(), "synthetic 544x384 surface (DeepCrack not found)"


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(min, median) seconds of ``fn()`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepcrack", type=Path, default=SHARED / "deepcrack")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--repeat-slow", type=int, default=3, help="repetitions of scikit-image's area opening")
    args = ap.parse_args(argv)

    import cv2
    import skimage
    import skimage.filters as skf
    import skimage.morphology as skm

    from crackseg_ridge import RidgeParams, filters

    rgb, name = load_photo(args.deepcrack)
    gray = filters.to_gray(rgb)
    h, w = gray.shape
    print(f"# crackseg_ridge.filters vs scikit-image {skimage.__version__}\n")
    print(f"Machine: {nproc()} CPUs (nproc), {cpu_model()}; numpy {np.__version__}, opencv {cv2.__version__} "
          f"({cv2.getNumThreads()} threads); python {platform.python_version()}")
    print(f"Image: {name}, {w}x{h} px; sigmas {SIGMAS}; seconds per photo, min / median of {args.repeat} runs "
          f"(scikit-image area opening: {args.repeat_slow})\n")

    print("| step | crackseg_ridge s (min / median) | scikit-image s (min / median) | speed-up (median) |")
    print("|---|---:|---:|---:|")

    def row(label: str, ours: tuple[float, float], ref: tuple[float, float] | None) -> None:
        ref_s = f"{ref[0]:.4f} / {ref[1]:.4f}" if ref else "-"
        gain = f"{ref[1] / ours[1]:.1f}x" if ref else "-"
        print(f"| {label} | {ours[0]:.4f} / {ours[1]:.4f} | {ref_s} | {gain} |")
        sys.stdout.flush()

    for method in ("sato", "frangi", "meijering"):
        ours = timed(lambda m=method: getattr(filters, m)(gray, SIGMAS), args.repeat)
        ref = timed(lambda m=method: getattr(skf, m)(gray, sigmas=SIGMAS, mode="reflect"), args.repeat)
        row(f"{method} filter (grey float32 in)", ours, ref)

    def skimage_map(method: str) -> np.ndarray:  # the prototype: same steps with scikit-image's filter
        resp = getattr(skf, method)(filters.to_gray(rgb), sigmas=SIGMAS, mode="reflect")
        return filters.normalise(resp, 99.9)

    for method in ("sato", "frangi", "meijering"):
        ours = timed(lambda m=method: filters.ridge_response(rgb, m, SIGMAS), args.repeat)
        ref = timed(lambda m=method: skimage_map(m), args.repeat)
        row(f"ridge_response {method} (RGB uint8 in, map out)", ours, ref)

    soft = filters.ridge_response(rgb, "sato", SIGMAS)
    for levels in (64, 256):
        q = filters.quantise(soft, levels)
        for min_area in (10, 30, 100):
            ours = timed(lambda a=min_area, lv=levels: filters.area_opening(soft, a, lv), args.repeat)
            ref = timed(lambda a=min_area, qq=q: skm.area_opening(qq, area_threshold=a, connectivity=2),
                        args.repeat_slow)
            same = np.array_equal(filters.quantise(filters.area_opening(soft, min_area, levels), levels),
                                  skm.area_opening(q, area_threshold=min_area, connectivity=2))
            row(f"area_opening {min_area} px, {levels} levels{'' if same else ' (DIFFERS!)'}", ours, ref)

    for method in ("sato", "frangi", "meijering"):
        ours = timed(lambda m=method: filters.area_opening(filters.ridge_response(rgb, m, SIGMAS), 30, 64),
                     args.repeat)
        ref = timed(lambda m=method: skm.area_opening(filters.quantise(skimage_map(m), 64), 30, connectivity=2),
                    args.repeat_slow)
        row(f"ridge_response {method} + area_opening 30 px / 64 levels", ours, ref)
    p = RidgeParams()  # the ridge labeler's defaults (benchmarks/ridge_defaults.py chose them)
    rr = {"method": p.method, "sigmas": tuple(p.sigmas()), "normalise_percentile": p.normalise_percentile,
          "flatten": p.flatten}
    ao = {"min_area": p.min_area, "levels": p.levels}

    def ref_default() -> np.ndarray:
        flat = filters.flatten_background(filters.to_gray(rgb), p.flatten)
        soft = filters.normalise(getattr(skf, p.method)(flat, sigmas=rr["sigmas"], mode="reflect"),
                                 p.normalise_percentile)
        return skm.area_opening(filters.quantise(soft, p.levels), p.min_area, connectivity=2)

    ours = timed(lambda: filters.area_opening(filters.ridge_response(rgb, **rr), **ao), args.repeat)
    row(f"the ridge labeler's defaults: {p.method} σ {rr['sigmas']}, flatten {p.flatten:g}, "
        f"area_opening {p.min_area} px / {p.levels} levels", ours, timed(ref_default, args.repeat_slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
