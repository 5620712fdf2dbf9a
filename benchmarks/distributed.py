"""Training throughput with 1 and 2 processes (torch.distributed), and on CUDA when available.

Each configuration runs ``crackseg run`` (U-Net resnet18, synthetic data, fixed
number of optimiser steps with the same global batch) and reads the training
images/s from the run's ``metrics.json``. On a 2-core CPU, 2 processes give little
speed-up: the point there is that the same command scales unchanged.

    python benchmarks/distributed.py [--steps 12] [--size 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], out: Path) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crackseg", "run", *args, "--out", str(out), "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_s"] = time.perf_counter() - t0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--nprocs", default="1,2")
    a = ap.parse_args()
    import torch

    n_train = a.steps * a.batch
    common = ["--data", "synthetic", "--set", f"data.n_train={n_train}", "--set", "data.n_test=8",
              "--set", f"data.size={a.size}", "--set", "train.epochs=1", "--set", f"train.batch_size={a.batch}",
              "--set", "backbone.encoder=resnet18"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in a.nprocs.split(",")]:
            m = run([*common, "--device", "cpu", "--nproc", str(n)], Path(tmp) / f"cpu{n}")
            rows.append(("cpu (gloo)", n, m))
        if torch.cuda.is_available():
            m = run([*common, "--device", "cuda"], Path(tmp) / "cuda1")
            rows.append((f"cuda ({torch.cuda.get_device_name()})", 1, m))
            m = run([*common, "--device", "cuda", "--precision", "bf16-mixed"], Path(tmp) / "cuda1bf16")
            rows.append(("cuda bf16-mixed", 1, m))
    print(f"U-Net resnet18, {a.size}px, global batch {a.batch}, {a.steps} steps, torch {torch.__version__}\n")
    print("| device | processes | train images/s | train s | ODS | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for dev, n, m in rows:
        print(f"| {dev} | {n} | {m['train_images_per_s']:.2f} | {m['train_seconds']:.1f} | "
              f"{100 * (m['ods'] or 0):.2f} | {m['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
