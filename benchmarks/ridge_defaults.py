"""How the ridge labeler's defaults were chosen: pseudo-label ODS of training-free ridge maps on TRAINING data.

Scores the soft map of ``crackseg_ridge.filters`` (``ridge_response``, then optionally ``area_opening``)
against the masks of two training sets, never a test split:

* DeepCrack-train: ``deepcrack/splits/train.txt`` (300 images);
* CFD-train: the 94 stems of ``cfd/splits/all.txt`` that the project's ``hash_split(stems, 0.2)``
  (``plugins/crackseg_datasets/common.py``, replicated below) does NOT put in test.

Score: ODS as ``crackseg evaluate`` computes it (protocol ``crackclip``): the map is stored as uint8
(``floor(255 v + 0.5)``), a pixel is crack at ``t = 0.00 .. 0.99`` when ``value / 255 > t``, TP/FP/FN are
pooled over the images at every threshold (256-bin histograms per image), ``F = 2PR / (P + R)``, ODS = max F.
Pixel-exact, no tolerance. "gated@P": the map is zeroed outside the P x P grid patches (grid from (0, 0),
partial last patches included) whose mask has at least one crack pixel: what a perfect patch-level weak
label would allow.

The search is staged coordinate descent (a full grid would take hours on 2 cores), explored on every 3rd
DeepCrack-train image (100) and all of CFD-train (``--dc-stride``); a "best k" is per objective (ungated,
gated@64), so each stage follows both:

1. method (sato / frangi / meijering) x sigma set, raw grey, 99.9th-percentile normalisation, no area opening;
2. the best 3 x pre-processing (none; Gaussian pre-smoothing std 1; background flattening: divide by, or
   subtract, a Gaussian blur of std 15 or 30 px; both);
3. the best 3 x normalisation percentile (99, 99.5, 99.9, 99.97, 100 = the maximum);
4. the best 2 x area opening min_area (10, 30, 60, 100, 200 px at 64 levels);
5. the best area opening x levels (32, 128);
6. the best ``--finalists`` (4) of each objective re-scored on the full training sets (300 + 94 images).

The recommendation, per objective, is the fastest finalist (measured on one photo, ``cost_ms``) within
``--tie`` (0.2 points) of the best finalist's full-training-set score.

Objective: the mean ODS over the two training sets (ungated, and separately gated@64).
``--test-check`` then scores the two recommended settings ONCE on DeepCrack-test and all 118 CFD images:
numbers reported after the choice, never used for it.

    .venv/bin/python benchmarks/ridge_defaults.py                  # ~6-9 min on 2 idle cores
    .venv/bin/python benchmarks/ridge_defaults.py --test-check     # + ~1 min: the after-the-choice test check
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from crackseg_datasets.common import hash_split  # the folder dataset's split rule

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
VARIANTS = ("ungated", "gated64", "gated128")
KEYS = ("ungated", "gated64")  # the two objectives
GATES = {"gated64": 64, "gated128": 128}
#: crack at threshold i/100 when value > _CUTS[i] (value / 255 > i / 100, exactly)
_CUTS = (255 * np.arange(100)) // 100

#: pre-processing variants: (Gaussian pre-smoothing std, flatten mode, flatten blur std)
PRE = {
    "none": (0.0, "", 0.0),
    "smooth1": (1.0, "", 0.0),
    "div15": (0.0, "divide", 15.0),
    "div15+smooth1": (1.0, "divide", 15.0),
    "div30": (0.0, "divide", 30.0),
    "sub15": (0.0, "subtract", 15.0),
}
SIGMA_SETS = [
    (1.0, 2.0), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0, 4.0), (1.5, 3.0), (2.0, 4.0, 6.0),
    (3.0, 6.0, 9.0), (3.0, 6.0, 9.0, 12.0), (4.0, 8.0, 12.0),
]  # fmt: skip
METHODS = ("sato", "frangi", "meijering")
PERCENTILES = (99.0, 99.5, 99.9, 99.97, 100.0)
MIN_AREAS = (10, 30, 60, 100, 200)


@dataclass(frozen=True)
class Config:
    pre: str = "none"
    method: str = "sato"
    sigmas: tuple[float, ...] = (1.0, 2.0, 3.0)
    pct: float = 99.9
    min_area: int = 0
    levels: int = 64

    def label(self) -> str:
        s = ",".join(f"{x:g}" for x in self.sigmas)
        ao = f"AO {self.min_area}px/{self.levels}lv" if self.min_area else "no AO"
        return f"{self.method} σ=({s}) p{self.pct:g} {ao} pre={self.pre}"


# -- data -------------------------------------------------------------------------------------
def read_split(path: Path) -> list[str]:
    """Stems of a split file (first token, folder and image extension dropped; blank/# lines skipped)."""
    seen: dict[str, None] = {}
    for raw in path.read_text(encoding="utf-8-sig").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        for ext in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"):
            if name.lower().endswith(ext):
                name = name[: -len(ext)]
                break
        seen.setdefault(name, None)
    return list(seen)


def find(folder: Path, stem: str, exts: tuple[str, ...]) -> Path:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"{folder}/{stem}.*")


def pairs(root: Path, stems: list[str]) -> list[tuple[str, str]]:
    return [(str(find(root / "images", s, (".jpg", ".png", ".JPG"))), str(find(root / "masks", s, (".png", ".bmp"))))
            for s in stems]


def datasets(shared: Path, test: bool = False) -> dict[str, list[tuple[str, str]]]:
    dc, cfd = shared / "deepcrack", shared / "cfd"
    cfd_all = read_split(cfd / "splits" / "all.txt")
    cfd_train, cfd_test = hash_split(cfd_all, 0.2)
    assert len(cfd_train) == 94 and len(cfd_test) == 24, (len(cfd_train), len(cfd_test))
    if test:
        return {"DeepCrack-test": pairs(dc, read_split(dc / "splits" / "test.txt")), "CFD-all118": pairs(cfd, cfd_all)}
    return {"DeepCrack-train": pairs(dc, read_split(dc / "splits" / "train.txt")), "CFD-train": pairs(cfd, cfd_train)}


# -- scoring ------------------------------------------------------------------------------------
def gate(mask: np.ndarray, patch: int) -> np.ndarray:
    """True over the patch x patch grid cells (from (0, 0), partial ones included) holding a crack pixel."""
    h, w = mask.shape
    gh, gw = -(-h // patch), -(-w // patch)
    padded = np.zeros((gh * patch, gw * patch), bool)
    padded[:h, :w] = mask
    cells = padded.reshape(gh, patch, gw, patch).any(axis=(1, 3))
    return np.repeat(np.repeat(cells, patch, 0), patch, 1)[:h, :w]


def ods(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(ODS, its threshold) from pooled 256-bin histograms, crackseg's 'crackclip' protocol."""
    cpos, cneg = np.cumsum(pos.astype(np.int64)), np.cumsum(neg.astype(np.int64))
    fn = cpos[_CUTS]
    tp = cpos[-1] - fn
    fp = cneg[-1] - cneg[_CUTS]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where((tp == 0) & (fp == 0), 1.0, tp / (tp + fp))
        r = tp / (tp + fn)
        f = 2 * p * r / (p + r)
    if np.all(np.isnan(f)):
        return float("nan"), float("nan")
    i = int(np.nanargmax(f))
    return float(f[i]), i / 100


def to_uint8(soft: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(soft.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


# -- maps --------------------------------------------------------------------------------------------
def prepared_gray(filters, rgb: np.ndarray, pre: str) -> np.ndarray:
    """The grey image ridge_response filters (same steps, same order: pre-smoothing, then flattening)."""
    import cv2

    presmooth, mode, blur = PRE[pre]
    gray = filters.to_gray(rgb)
    if presmooth > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=presmooth, borderType=cv2.BORDER_REFLECT)
    if blur > 0:
        gray = filters.flatten_background(gray, blur, mode)
    return gray


def raw_responses(filters, gray: np.ndarray, wanted: set[tuple[str, tuple[float, ...]]]) -> dict:
    """{(method, sigmas): response}. Sato and Meijering are a max of independent per-sigma maps (each sigma
    computed once); Frangi's gamma depends on the first sigma, so it is computed per set."""
    out, per_sigma = {}, {}
    for method, sigmas in wanted:
        if method == "frangi":
            out[(method, sigmas)] = filters.frangi(gray, sigmas)
            continue
        acc = np.zeros(gray.shape, np.float32)
        for s in sigmas:
            if (method, s) not in per_sigma:
                per_sigma[(method, s)] = getattr(filters, method)(gray, (s,))
            np.maximum(acc, per_sigma[(method, s)], out=acc)
        out[(method, sigmas)] = acc
    return out


def worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def score_images(task: tuple[list[tuple[str, str]], list[Config]]) -> np.ndarray:
    """Histograms [config, variant, pos/neg, 256] summed over the images of ``task``."""
    import cv2

    from crackseg_ridge import filters

    items, configs = task
    hist = np.zeros((len(configs), len(VARIANTS), 2, 256), np.int64)
    by_pre: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(configs):
        by_pre[c.pre].append(i)
    for img_path, mask_path in items:
        rgb = cv2.cvtColor(cv2.imread(img_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE) > 127
        assert mask.shape == rgb.shape[:2], img_path
        flat_mask = mask.ravel()
        pos_idx = np.flatnonzero(flat_mask)
        neg_in_gate = {v: np.flatnonzero(gate(mask, p).ravel() & ~flat_mask) for v, p in GATES.items()}
        n_neg = flat_mask.size - pos_idx.size
        for pre, idxs in by_pre.items():
            gray = prepared_gray(filters, rgb, pre)
            raws = raw_responses(filters, gray, {(configs[i].method, configs[i].sigmas) for i in idxs})
            normed: dict = {}
            for i in idxs:
                c = configs[i]
                key = (c.method, c.sigmas, c.pct)
                if key not in normed:
                    normed[key] = filters.normalise(raws[(c.method, c.sigmas)], c.pct)
                soft = normed[key]
                if c.min_area > 0:
                    soft = filters.area_opening(soft, c.min_area, c.levels)
                u8 = to_uint8(soft).ravel()
                pos = np.bincount(u8[pos_idx], minlength=256)
                allh = cv2.calcHist([u8.reshape(mask.shape)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
                hist[i, 0, 0] += pos
                hist[i, 0, 1] += allh - pos
                for v, idx in neg_in_gate.items():
                    j = VARIANTS.index(v)
                    neg = np.bincount(u8[idx], minlength=256)
                    neg[0] += n_neg - idx.size  # outside the gate: zeroed, and never crack
                    hist[i, j, 0] += pos
                    hist[i, j, 1] += neg
    return hist


def evaluate(sets: dict[str, list[tuple[str, str]]], configs: list[Config], pool, chunk: int = 12) -> dict:
    """{config: {set: {variant: (ODS, t)}}}."""
    results: dict = {c: {} for c in configs}
    for name, items in sets.items():
        tasks = [(items[k : k + chunk], configs) for k in range(0, len(items), chunk)]
        total = sum(pool.imap_unordered(score_images, tasks)) if pool else sum(map(score_images, tasks))
        for i, c in enumerate(configs):
            results[c][name] = {v: ods(total[i, j, 0], total[i, j, 1]) for j, v in enumerate(VARIANTS)}
    return results


# -- report -----------------------------------------------------------------------------------------
def mean_score(res: dict, variant: str) -> float:
    return float(np.mean([res[s][variant][0] for s in res]))


def table(all_res: dict, sets: list[str], key: str, top: int | None = None) -> None:
    rows = sorted(all_res.items(), key=lambda kv: -mean_score(kv[1], key))[:top]
    cols = " | ".join(f"{s} {v}" for v in VARIANTS for s in sets)
    print(f"| # | setting | {cols} | mean ungated | mean gated64 |")
    print("|" + "---|" * 2 + "---:|" * (len(VARIANTS) * len(sets) + 2))
    for n, (c, res) in enumerate(rows, 1):
        cells = " | ".join(f"{100 * res[s][v][0]:.1f}" for v in VARIANTS for s in sets)
        print(f"| {n} | {c.label()} | {cells} | {100 * mean_score(res, 'ungated'):.1f} "
              f"| {100 * mean_score(res, 'gated64'):.1f} |")
    print()


def cost_ms(c: Config, rgb: np.ndarray, repeat: int = 5) -> float:
    """Milliseconds of the setting's whole map (grey, pre-processing, filter, normalisation, area opening) on
    one photo: the fastest of ``repeat`` runs."""
    from crackseg_ridge import filters

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gray = prepared_gray(filters, rgb, c.pre)
        soft = filters.normalise(raw_responses(filters, gray, {(c.method, c.sigmas)})[(c.method, c.sigmas)], c.pct)
        if c.min_area:
            filters.area_opening(soft, c.min_area, c.levels)
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def best(all_res: dict, key: str, k: int, among=None) -> list[Config]:
    items = [c for c in all_res if among is None or among(c)]
    return sorted(items, key=lambda c: -mean_score(all_res[c], key))[:k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the folder holding deepcrack/ and cfd/")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images of each set (smoke test)")
    ap.add_argument("--dc-stride", type=int, default=3,
                    help="explore on every Nth DeepCrack-train image (all CFD-train); 1 = all")
    ap.add_argument("--finalists", type=int, default=4, help="settings per objective re-scored on the full sets")
    ap.add_argument("--tie", type=float, default=0.002, help="ODS within this of the best counts as a tie")
    ap.add_argument("--test-check", action="store_true",
                    help="after choosing, score the two recommended settings once on DeepCrack-test and CFD-all118")
    args = ap.parse_args(argv)
    if not (args.shared / "deepcrack" / "images").is_dir() or not (args.shared / "cfd" / "images").is_dir():
        print(f"SKIP: needs {args.shared}/deepcrack and {args.shared}/cfd (pass --shared)")
        return 0
    full_sets = datasets(args.shared)
    if args.limit:
        full_sets = {k: v[: args.limit] for k, v in full_sets.items()}
    names = list(full_sets)
    sets = full_sets
    if args.dc_stride > 1:
        sets = {k: (v[:: args.dc_stride] if k.startswith("DeepCrack") else v) for k, v in full_sets.items()}
    explore_desc = ", ".join(f"{k} {len(v)} images" for k, v in sets.items())
    full_desc = ", ".join(f"{k} {len(v)} images" for k, v in full_sets.items())
    print(f"# ridge labeler defaults: pseudo-label ODS (%) on training data only ({full_desc})\n")
    print(f"Exploration on {explore_desc} (every {args.dc_stride}-th DeepCrack-train image); the finalists are "
          "re-scored on the full training sets and the recommendation is made from those scores.\n")
    t_start = time.perf_counter()
    ctx = mp.get_context("fork")
    pool = ctx.Pool(args.workers, initializer=worker_init) if args.workers > 1 else None
    all_res: dict = {}

    def run(stage: str, configs: list[Config]) -> None:
        todo = [c for c in dict.fromkeys(configs) if c not in all_res]
        t0 = time.perf_counter()
        all_res.update(evaluate(sets, todo, pool))
        print(f"[{stage}: {len(todo)} settings, {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)

    try:
        run("stage 1", [Config(method=m, sigmas=sg) for m in METHODS for sg in SIGMA_SETS])
        run("stage 2", [replace(c, pre=p) for key in KEYS for c in best(all_res, key, 3) for p in PRE])
        run("stage 3", [replace(c, pct=p) for key in KEYS for c in best(all_res, key, 3) for p in PERCENTILES])
        run("stage 4", [replace(c, min_area=a) for key in KEYS for c in best(all_res, key, 2) for a in MIN_AREAS])
        run("stage 5", [replace(c, levels=lv) for key in KEYS
                        for c in best(all_res, key, 1, among=lambda c: c.min_area > 0) for lv in (32, 128)])
        print(f"{len(all_res)} settings scored on the exploration subset in {time.perf_counter() - t_start:.0f} s "
              f"on {args.workers} process(es).\n")
        finalists = list(dict.fromkeys(c for key in KEYS for c in best(all_res, key, args.finalists)))
        t0 = time.perf_counter()
        final = evaluate(full_sets, finalists, pool) if full_sets is not sets else {c: all_res[c] for c in finalists}
        print(f"[finalists: {len(finalists)} settings on the full training sets, {time.perf_counter() - t0:.0f} s]",
              file=sys.stderr, flush=True)

        print(f"## Exploration ({explore_desc}): all settings, sorted by mean ungated ODS\n")
        table(all_res, names, "ungated")
        print(f"## Finalists (the best {args.finalists} of each objective above) on the full training sets "
              f"({full_desc}), sorted by mean ungated ODS\n")
        table(final, names, "ungated")
        print("## The same finalists sorted by mean gated@64 ODS\n")
        table(final, names, "gated64")

        import cv2

        photo = full_sets[names[0]][0][0]
        rgb = cv2.cvtColor(cv2.imread(photo, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        costs = {c: cost_ms(c, rgb) for c in final}
        chosen = {}
        print(f"Recommended = the fastest finalist (ms per photo: min of 5 runs on {Path(photo).name}, "
              f"{rgb.shape[1]}x{rgb.shape[0]}, one process) within {100 * args.tie:.2g} points of the best "
              "finalist's mean ODS.\n")
        print("| finalist | ms / photo | mean ungated | mean gated64 |\n|---|---:|---:|---:|")
        for c in sorted(final, key=costs.get):
            print(f"| {c.label()} | {costs[c]:.1f} | {100 * mean_score(final[c], 'ungated'):.1f} "
                  f"| {100 * mean_score(final[c], 'gated64'):.1f} |")
        print()
        for key, title in (("ungated", "(i) ungated"), ("gated64", "(ii) gated (patch-level weak labels)")):
            top = mean_score(final[best(final, key, 1)[0]], key)
            near = [c for c in final if mean_score(final[c], key) >= top - args.tie]
            c = min(near, key=lambda c: (costs[c], -mean_score(final[c], key)))
            chosen[key] = c
            res = final[c]
            print(f"Recommended {title} ({costs[c]:.0f} ms / photo): method={c.method!r} sigmas={c.sigmas} "
                  f"normalise_percentile={c.pct:g} "
                  f"presmooth={PRE[c.pre][0]:g} flatten={PRE[c.pre][2]:g} ({PRE[c.pre][1] or 'none'}) "
                  f"area_opening min_area={c.min_area} levels={c.levels}")
            print("    training ODS: " + "; ".join(
                f"{s} ungated {100 * res[s]['ungated'][0]:.1f} (t={res[s]['ungated'][1]:.2f}), "
                f"gated64 {100 * res[s]['gated64'][0]:.1f}, gated128 {100 * res[s]['gated128'][0]:.1f}"
                for s in names))
        print()

        if args.test_check:
            check_public_api(full_sets[names[0]][0], chosen.values())
            test_sets = datasets(args.shared, test=True)
            if args.limit:
                test_sets = {k: v[: args.limit] for k, v in test_sets.items()}
            res = evaluate(test_sets, list(dict.fromkeys(chosen.values())), pool)
            print("## Test-set check, run once AFTER the choice above (not used to choose anything)\n")
            tnames = list(test_sets)
            print("| recommended for | setting | " + " | ".join(f"{s} {v}" for s in tnames for v in VARIANTS) + " |")
            print("|---|---|" + "---:|" * (len(tnames) * len(VARIANTS)))
            for key, c in chosen.items():
                cells = " | ".join(f"{100 * res[c][s][v][0]:.1f}" for s in tnames for v in VARIANTS)
                print(f"| {key} | {c.label()} | {cells} |")
            print()
    finally:
        if pool:
            pool.close()
            pool.join()
    return 0


def check_public_api(item: tuple[str, str], configs) -> None:
    """The study's cached path gives the same map as the public ridge_response (+ area_opening)."""
    import cv2

    from crackseg_ridge import filters

    rgb = cv2.cvtColor(cv2.imread(item[0], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    for c in configs:
        presmooth, mode, blur = PRE[c.pre]
        if mode == "subtract":
            continue  # ridge_response flattens by division only
        public = filters.ridge_response(rgb, c.method, c.sigmas, normalise_percentile=c.pct, presmooth=presmooth,
                                        flatten=blur)
        gray = prepared_gray(filters, rgb, c.pre)
        ours = filters.normalise(raw_responses(filters, gray, {(c.method, c.sigmas)})[(c.method, c.sigmas)], c.pct)
        if c.min_area:
            public = filters.area_opening(public, c.min_area, c.levels)
            ours = filters.area_opening(ours, c.min_area, c.levels)
        assert np.array_equal(to_uint8(public), to_uint8(ours)), c


if __name__ == "__main__":
    sys.exit(main())
