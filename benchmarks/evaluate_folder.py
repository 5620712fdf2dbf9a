"""Time `crackseg evaluate PRED GT` as a whole process against the authors' evaluation script.

Writes N (default 300) deterministic prediction / mask PNG pairs into a temporary folder:

* masks: the DeepCrack-train masks in ``../shared/datasets/deepcrack`` (544×384, 0/255) when that folder is
  there (``--source auto``, the default), else synthetic random-walk cracks of ``--size`` (``metrics_speed``'s
  generator); ``--source synthetic`` forces the latter;
* predictions: a soft map derived from each mask the way a ViT model's map looks (the mask at 1/8 scale with
  noise, upsampled, fine noise added, min-max scaled to 0..255 per image as CrackCLIP saves it), uint8 PNG.

Then it times whole processes (``subprocess``, wall clock; one warm-up round, then ``--rounds`` rounds in
alternating order; the median is reported):

* ``crackseg evaluate PRED GT --json``, the installed entry point (``.venv/bin/crackseg``);
* the authors' evaluation as published (CrackCLIP ``eval/eval.py`` over DeepSegmentor's ``prf_metrics.py``,
  transcribed from ../shared/paper/official-code-notes.md §6): an ODS/AP process and an OIS process, each reading
  every pair and dividing each map by 255 at every threshold; the figure is the two processes' sum;
* the authors' method counted once (a stronger baseline, written to a temporary file and run with the same
  python): sorted ``glob('*.png')`` of both folders, ``cv2.imread(path,
  cv2.IMREAD_GRAYSCALE)`` (their ``data_io.imread``), GT ``cv2.threshold(127)``, then for every image and
  threshold ``pred / 255 > t`` with boolean sums (``metrics_speed.per_threshold_counts``, counted once and shared
  by ODS, OIS and AP; their script runs ODS and OIS as two invocations, so it is slower still; importing
  ``metrics_speed`` also imports ``crackseg.evaluation.metrics``, a few tens of ms more than their imports);
* the start-up alone: ``python -c "import crackseg"``, ``crackseg --help`` (which loads every plugin to list
  their commands) and ``crackseg evaluate`` of the first pair alone (start-up, imports and one pair).

Checks that crackseg's ``crackclip`` protocol (NaN-argmax OIS quirk included) gives ODS / OIS / AP identical to
the authors' method, then prints a Markdown table. Usage::

    .venv/bin/python benchmarks/evaluate_folder.py                 # 300 pairs, 3 rounds (~1.5 min)
    .venv/bin/python benchmarks/evaluate_folder.py --n 40 --rounds 1 --source synthetic
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from metrics_speed import make_pair

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"

#: the authors' method, standalone: their reading (data_io.imread), metrics_speed's per-threshold arithmetic
AUTHORS = """\
import glob, json, os, sys

import cv2
import numpy as np

sys.path.insert(0, {bench!r})
from metrics_speed import per_threshold_counts, scores_from_counts  # the per-threshold method

pred_dir, gt_dir = sys.argv[1], sys.argv[2]
pred_list = sorted(glob.glob(os.path.join(pred_dir, "*.png")))
gt_list = sorted(glob.glob(os.path.join(gt_dir, "*.png")))
assert len(pred_list) == len(gt_list)
preds = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in pred_list]
gts = [cv2.threshold(cv2.imread(g, cv2.IMREAD_GRAYSCALE), 127, 255, cv2.THRESH_BINARY)[1] for g in gt_list]
counts = np.stack([per_threshold_counts(p, (g / 255).astype("uint8") == 1) for p, g in zip(preds, gts)])
ods, ois, ap = scores_from_counts(counts)
print(json.dumps({{"ods": ods, "ois": ois, "ap": ap, "n": len(preds)}}))
"""


#: the authors' evaluation as published (CrackCLIP ``eval/eval.py`` calling DeepSegmentor's ``prf_metrics.py``, as
#: ../shared/paper/official-code-notes.md §6 describes it): one process computes ODS and AP, another OIS; each reads
#: every pair, and for every image and threshold divides the map by 255, binarises and counts with boolean sums
PUBLISHED = """\
import glob, json, os, sys

import cv2
import numpy as np


def imread(path, thresh=-1):
    im = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if thresh > 0:
        _, im = cv2.threshold(im, thresh, 255, cv2.THRESH_BINARY)
    return im


def stats(pred, gt):
    return [np.sum((pred == 1) & (gt == 1)), np.sum((pred == 1) & (gt == 0)), np.sum((pred == 0) & (gt == 1))]


def prf(tp, fp, fn):
    p = 1.0 if tp == 0 and fp == 0 else tp / (tp + fp)
    r = tp / (tp + fn)
    return p, r, 2 * p * r / (p + r)


mode, pred_dir, gt_dir = sys.argv[1:4]
gts = [imread(g, thresh=127) for g in sorted(glob.glob(os.path.join(gt_dir, "*.png")))]
preds = [imread(p) for p in sorted(glob.glob(os.path.join(pred_dir, "*.png")))]
assert len(gts) == len(preds)
with np.errstate(divide="ignore", invalid="ignore"):
    if mode == "ods":
        rows = []
        for t in np.arange(0.0, 1.0, 0.01):
            s = [stats((p / 255 > t).astype("uint8"), (g / 255).astype("uint8")) for p, g in zip(preds, gts)]
            tp, fp, fn = (np.sum([v[i] for v in s]) for i in range(3))
            rows.append([t, *prf(tp, fp, fn)])
        ap = sum((rows[t - 1][2] - rows[t][2]) * rows[t][1] for t in range(1, 100))
        print(json.dumps({"ods": float(np.nanmax([r[3] for r in rows])), "ap": float(ap)}))
    else:
        s = []
        for p, g in zip(preds, gts):
            f1s = [prf(*stats((p / 255 > t).astype("uint8"), (g / 255).astype("uint8")))[2]
                   for t in np.arange(0.0, 1.0, 0.01)]
            best = np.arange(0.0, 1.0, 0.01)[int(np.argmax(f1s))]
            s.append(stats((p / 255 > best).astype("uint8"), (g / 255).astype("uint8")))
        tp, fp, fn = (np.sum([v[i] for v in s]) for i in range(3))
        print(json.dumps({"ois": float(prf(tp, fp, fn)[2])}))
"""


def prediction_from_mask(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft uint8 map that looks like an upsampled patch-token map of ``gt``, min-max scaled to 0..255."""
    h, w = gt.shape
    g = gt.astype(np.float32)
    coarse = cv2.resize(g, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    coarse = coarse * rng.uniform(2.0, 6.0) + rng.normal(0.0, 0.2, coarse.shape).astype(np.float32)
    soft = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    soft += g * rng.uniform(0.0, 0.5) + rng.normal(0.0, 0.05, (h, w)).astype(np.float32)
    lo, hi = float(soft.min()), float(soft.max())
    return np.round((soft - lo) / max(hi - lo, 1e-6) * 255.0).astype(np.uint8)


def write_pairs(root: Path, n: int, source: str, size: tuple[int, int], seed: int) -> str:
    """Write ``root/pred/*.png`` and ``root/gt/*.png``; returns a description of what was written."""
    rng = np.random.default_rng(seed)
    (root / "pred").mkdir(parents=True)
    (root / "gt").mkdir()
    deepcrack = SHARED / "deepcrack"
    stems: list[str] = []
    if source in ("auto", "deepcrack") and (deepcrack / "splits" / "train.txt").is_file():
        stems = (deepcrack / "splits" / "train.txt").read_text().split()[:n]
    elif source == "deepcrack":
        raise SystemExit(f"{deepcrack}: not found (use --source synthetic)")
    w, h = size
    for k in range(n):
        if k < len(stems):
            stem = stems[k]
            gt = cv2.imread(str(deepcrack / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
        else:
            stem = f"synthetic{k:04d}"
            gt = make_pair(rng, h, w)[1]
        cv2.imwrite(str(root / "gt" / f"{stem}.png"), gt.astype(np.uint8) * 255)
        cv2.imwrite(str(root / "pred" / f"{stem}.png"), prediction_from_mask(gt, rng))
    sizes = {sub: sum(p.stat().st_size for p in (root / sub).glob("*.png")) / n / 1024 for sub in ("pred", "gt")}
    what = (f"DeepCrack-train masks ({deepcrack})" if len(stems) == n else
            f"{len(stems)} DeepCrack-train masks and {n - len(stems)} synthetic ones" if stems else
            f"synthetic masks of {w}x{h}")
    return (f"{n} pairs: {what}, synthetic predictions; mean PNG size {sizes['pred']:.0f} KiB (prediction), "
            f"{sizes['gt']:.1f} KiB (mask)")


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return dt, r.stdout


def _same(a: float | None, b: float | None) -> bool:
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    return (math.isnan(a) and math.isnan(b)) or a == b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="number of pairs (default 300)")
    ap.add_argument("--source", choices=["auto", "deepcrack", "synthetic"], default="auto",
                    help="masks: DeepCrack-train when present (auto), or synthetic")
    ap.add_argument("--size", default="544x384", help="W x H of synthetic pairs (default 544x384)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-authors", action="store_true", help="time crackseg and the start-up only")
    ap.add_argument("--other-crackseg", metavar="EXE",
                    help="also time `EXE evaluate PRED GT --json` (e.g. another checkout's crackseg, for before/after)")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    bin_dir = Path(sys.executable).parent
    crackseg = str(bin_dir / "crackseg")
    if not Path(crackseg).is_file():
        raise SystemExit(f"{crackseg}: not found; install crackseg into this python's environment")
    with tempfile.TemporaryDirectory(prefix="crackseg-evaluate-bench-") as tmp:
        root = Path(tmp)
        what = write_pairs(root, args.n, args.source, size, args.seed)  # type: ignore[arg-type]
        script = root / "authors_prf_metrics.py"
        script.write_text(AUTHORS.format(bench=str(HERE)))
        pred, gt = str(root / "pred"), str(root / "gt")
        for sub in ("pred", "gt"):  # the first pair alone
            first = sorted((root / sub).glob("*.png"))[0]
            (root / "one" / sub).mkdir(parents=True, exist_ok=True)
            (root / "one" / sub / first.name).write_bytes(first.read_bytes())
        commands = {
            "crackseg": [crackseg, "evaluate", pred, gt, "--json"],
            "one": [crackseg, "evaluate", str(root / "one" / "pred"), str(root / "one" / "gt"), "--json"],
            "import": [sys.executable, "-c", "import crackseg"],
            "help": [crackseg, "--help"],
        }
        if not args.skip_authors:
            published = root / "authors_eval_as_published.py"
            published.write_text(PUBLISHED)
            commands["published-ods"] = [sys.executable, str(published), "ods", pred, gt]
            commands["published-ois"] = [sys.executable, str(published), "ois", pred, gt]
            commands["authors"] = [sys.executable, str(script), pred, gt]
        if args.other_crackseg:
            commands["other"] = [args.other_crackseg, "evaluate", pred, gt, "--json"]
        times: dict[str, list[float]] = {k: [] for k in commands}
        outputs: dict[str, str] = {}
        order = list(commands)
        for r in range(args.rounds + 1):  # round 0 is the warm-up
            for key in order if r % 2 == 0 else order[::-1]:
                dt, out = run(commands[key])
                outputs[key] = out
                if r:
                    times[key].append(dt)
        if "published-ods" in times:  # the published evaluation is its two processes, one after the other
            times["published"] = [a + b for a, b in zip(times.pop("published-ods"), times.pop("published-ois"))]
        med = {k: statistics.median(v) for k, v in times.items()}

        ours = json.loads(outputs["crackseg"])
        same = True
        if not args.skip_authors:
            theirs = json.loads(outputs["authors"].strip().splitlines()[-1])
            same = ours["n"] == theirs["n"] and all(_same(ours[k], theirs[k]) for k in ("ods", "ois", "ap"))
            as_published = {**json.loads(outputs["published-ods"]), **json.loads(outputs["published-ois"])}
            # their AP and F sums run in another order than crackseg's: equal to 1e-9, not bit for bit
            same &= all(abs(ours[k] - as_published[k]) < 1e-9 for k in ("ods", "ois", "ap"))
        if args.other_crackseg:
            other = json.loads(outputs["other"])
            same &= all(_same(ours[k], other[k]) for k in ("ods", "ois", "ap", "n"))

        def shown(cmd: list[str]) -> str:
            return shlex.join(cmd).replace(tmp, "$TMP").replace(str(bin_dir) + "/", ".venv/bin/" if
                                                                  bin_dir.name == "bin" else "")

        print(f"{what}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}, numpy {np.__version__}, "
              f"opencv {cv2.__version__}; median of {args.rounds} rounds after a warm-up")
        print(f"crackseg: ODS {ours['ods']!r} OIS {ours['ois']!r} AP {ours['ap']!r}")
        if not args.skip_authors:
            print(f"authors:  ODS {theirs['ods']!r} OIS {theirs['ois']!r} AP {theirs['ap']!r}")
        print("identical ODS / OIS / AP in every scoring row (the published script's to 1e-9): "
              + ("yes" if same else "NO"))
        rows = [("the authors' evaluation as published (ODS process + OIS process)", "published"),
                ("the authors' method, counted once for ODS, OIS and AP (a stronger baseline)", "authors"),
                ("crackseg evaluate", "crackseg"), (f"crackseg evaluate ({args.other_crackseg})", "other"),
                ("start-up: crackseg evaluate of 1 pair", "one"),
                ("start-up: import crackseg", "import"),
                ("start-up: crackseg --help", "help")]
        print("\n| what | command | seconds | published / this | stronger baseline / this |\n|---|---|---:|---:|---:|")
        for label, key in rows:
            if key in med:
                scored = "authors" in med and key in ("published", "authors", "crackseg", "other")
                vs_published = f"{med['published'] / med[key]:.1f}×" if scored else ""
                vs_strong = f"{med['authors'] / med[key]:.1f}×" if scored else ""
                cmd = (f"{shown(commands['published-ods'])}; … ois …" if key == "published" else shown(commands[key]))
                print(f"| {label} | `{cmd}` | {med[key]:.3f} | {vs_published} | {vs_strong} |")
        print("\nall rounds (s): " + "; ".join(f"{k} " + ", ".join(f"{t:.3f}" for t in v) for k, v in times.items()))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
