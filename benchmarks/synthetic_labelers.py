"""Wall time of every labeler on the demo data: ``crackseg label --labeler NAME --data synthetic``.

The synthetic dataset is demo data (registered with ``demo=True``): every labeler uses its
``demo`` settings there (the CAM labelers: a ResNet18 patch classifier from scratch, 64-px
patches, 3 short epochs). The goal is under 3 minutes per labeler on 2 CPU cores, from a cold
start (a fresh output folder: the classifier is trained, then the 48 training images labelled).

    .venv/bin/python benchmarks/synthetic_labelers.py            # all labelers, CPU
    .venv/bin/python benchmarks/synthetic_labelers.py --labelers gradcam cam-crf

Prints one table row per labeler: seconds, whether it met the goal, and the command's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELERS = ["fsv", "gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam", "cam-crf",
            "cam-location"]
GOAL_S = 180.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelers", nargs="+", default=LABELERS)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS)")
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("crackseg"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.labelers:
            out = Path(tmp) / name
            t0 = time.perf_counter()
            r = subprocess.run([exe, "label", "--labeler", name, "--data", "synthetic", "--out", str(out),
                                "--device", "cpu", "--quiet"], capture_output=True, text=True, env=env)
            secs = time.perf_counter() - t0
            status = "ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
            rows.append((name, secs, status))
            print(f"{name}: {secs:.1f} s ({status})", file=sys.stderr, flush=True)
    print(f"\n`crackseg label --labeler NAME --data synthetic` (48 images, demo settings), {os.cpu_count()} "
          f"CPU cores, {args.threads} torch threads; goal < {GOAL_S:.0f} s\n")
    print("| labeler | seconds | < 3 min | status |")
    print("|---|---:|:---:|---|")
    for name, secs, status in rows:
        print(f"| `{name}` | {secs:.1f} | {'yes' if secs < GOAL_S else 'NO'} | {status} |")
    return 0 if all(s == "ok" and t < GOAL_S for _, t, s in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
