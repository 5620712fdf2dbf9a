"""Peak memory of a training run against the number of training images: 200 vs 2,000 synthetic at 256 px.

    python benchmarks/streaming.py [--sizes 200 2000] [--image-size 256] [--steps 10] [--old PATH]

Each run is ``crackseg run`` (fsv labels, U-Net resnet18, batch 8, ``train.max_steps`` steps,
4 test images) in a process of its own; the table gives that process's peak RSS and the
largest peak of its loader processes. The engine streams images from disk, so the peak must
not grow with the number of images (goal: within 15 %). ``--old PATH`` runs a crackseg
checkout from before the engine (it held every resized training image in memory) the same way,
for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
sys.argv = ["crackseg"] + sys.argv[1:]
from crackseg.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("PEAK " + json.dumps({"self": self_kib, "children": children_kib}))
"""


def run(n: int, size: int, steps: int, out: Path, pythonpath: str | None) -> dict[str, float]:
    args = ["run", "--labeler", "fsv", "--backbone", "unet", "--data", "synthetic", "--device", "cpu", "--quiet",
            "--set", f"data.n_train={n}", "--set", "data.n_test=4", "--set", f"data.size={size}",
            "--set", "backbone.encoder=resnet18", "--set", "train.batch_size=8", "--set", f"train.max_steps={steps}",
            "--set", "train.epochs=1", "--set", "predict.overlays=0", "--out", str(out)]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # run outside the repository, so that PYTHONPATH (not the current folder) decides which crackseg runs
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=out.parent)
    if r.returncode != 0:
        raise SystemExit(f"run with {n} images failed: {r.stderr.strip().splitlines()[-1:]}")
    peak = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("PEAK "))[5:])
    return {"self": peak["self"] / 1024, "children": peak["children"] / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--old", help="a crackseg checkout from before the engine, run the same way for comparison")
    args = ap.parse_args()
    versions = [("this release (engine, streaming)", None)]
    if args.old:
        old = Path(args.old).resolve()
        versions.append(("before the engine (in memory)", f"{old}{os.pathsep}{old / 'plugins'}"))
    print(f"synthetic images at {args.image_size} px, U-Net resnet18, batch 8, {args.steps} steps, CPU "
          f"({os.cpu_count()} cores); peak RSS in MiB\n")
    print("| version | training images | run process | largest child process (loaders) | growth vs first |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in versions:
            first = None
            for n in args.sizes:
                peak = run(n, args.image_size, args.steps, Path(tmp) / f"{len(label)}-{n}", path)
                first = first or peak["self"]
                print(f"| {label} | {n:,} | {peak['self']:,.0f} | {peak['children']:,.0f} | "
                      f"{100 * (peak['self'] / first - 1):+.1f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
