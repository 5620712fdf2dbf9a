"""Train each baseline backbone from scratch under the same CPU time budget and compare.

For every backbone, ``crackseg run`` trains on ``fsv`` labels (the ground
truth) of DeepCrack's train split for a fixed wall-clock budget
(``train.time_budget_s``), predicts the test split and evaluates it (CrackCLIP
protocol). Each backbone keeps its paper's optimiser, learning rate and loss;
the image size and batch size are the same for all so that the budget buys
comparable work. The script then times inference on full-size test images
(random weights, batch 1, padded to the network's multiple) and reads each
run's peak resident memory from ``resource.getrusage`` of its own process.

Prints a Markdown table: ODS / OIS / AP (%), training images/s, inference
images/s, peak memory (MiB), parameters. Usage::

    python benchmarks/backbones.py                          # 10 min per backbone
    python benchmarks/backbones.py --budget-s 30 --image-size 96 --limit-test 10   # smoke run

Without the dataset (``--data``, default ``../shared/datasets/deepcrack``) it
prints why and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKBONES = ("unet", "unet-original", "deepcrack-liu", "deepcrack-zou", "oed")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "deepcrack"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (images/ masks/ splits/)")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated backbone names")
    p.add_argument("--budget-s", type=float, default=600.0, help="training wall-clock seconds per backbone")
    p.add_argument("--image-size", type=int, default=256, help="training image size (same for all)")
    p.add_argument("--batch-size", type=int, default=4, help="training batch size (same for all)")
    p.add_argument("--limit-train", type=int, default=0, help="use only this many training images (0 = all)")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on this many test images (0 = all)")
    p.add_argument("--infer-images", type=int, default=3, help="full-size test images timed for inference speed")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train and time (default cpu)")
    p.add_argument("--out", default="", help="folder for the runs (default: a temporary folder)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- one backbone, in its own process (so that its peak memory is its own) ---------------
def child(args: argparse.Namespace) -> None:
    name = args.child
    out = Path(args.out) / name
    cmd = [
        sys.executable, "-m", "crackseg", "run", "--labeler", "fsv", "--backbone", name,
        "--data", args.data, "--out", str(out), "--device", args.device, "--seed", "0", "-q",
        "--set", "train.epochs=100000", "--set", f"train.time_budget_s={args.budget_s}",
        "--set", f"train.image_size={args.image_size}", "--set", f"train.batch_size={args.batch_size}",
        "--set", f"data.limit_train={args.limit_train}", "--set", f"data.limit_test={args.limit_test}",
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        print(json.dumps({"name": name, "error": " | ".join(tail)}))
        return
    metrics = json.loads((out / "metrics.json").read_text())
    run_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    infer = time_inference(name, args)
    print(json.dumps({"name": name, "wall_s": round(wall, 1), "run_peak_rss_mib": round(run_rss_mib), **infer,
                      **{k: metrics.get(k) for k in ("ods", "ois", "ap", "n", "train_images_per_s",
                                                      "train_seconds", "epochs_done", "train_images")}}))


def time_inference(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Forward passes of full-size test images (batch 1) per second, and parameters."""
    import numpy as np
    import torch

    import crackseg
    from crackseg.base.io import read_image

    torch.set_num_threads(args.threads)
    model = crackseg.create_backbone(name).eval().to(args.device)
    stems = (Path(args.data) / "splits" / "test.txt").read_text().split()[: max(args.infer_images, 1)]
    images = []
    for stem in stems:
        files = sorted((Path(args.data) / "images").glob(stem + ".*"))
        if files:
            images.append(read_image(files[0]))
    if not images:
        return {"params": sum(p.numel() for p in model.parameters())}
    xs = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float().div(255).to(args.device)
          for im in images]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    with torch.no_grad():
        model(xs[0])  # warm-up
        sync()
        t0 = time.perf_counter()
        for x in xs:
            model(x)
        sync()
        dt = time.perf_counter() - t0
    h, w = images[0].shape[:2]
    return {"infer_images_per_s": round(len(xs) / dt, 3), "infer_size": f"{w}x{h}",
            "params": sum(p.numel() for p in model.parameters())}


# -- driver ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    data = Path(args.data)
    if not (data / "images").is_dir() or not (data / "splits" / "test.txt").is_file():
        print(f"skipped: DeepCrack not found at {data} (need images/, masks/, splits/test.txt); "
              "pass --data DIR", file=sys.stderr)
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="crackseg-bench-"))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows = []
    for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        cmd = [sys.executable, __file__, "--child", name, "--out", str(out), "--data", str(data),
               "--budget-s", str(args.budget_s), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--limit-train", str(args.limit_train),
               "--limit-test", str(args.limit_test), "--infer-images", str(args.infer_images),
               "--threads", str(args.threads), "--device", args.device]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        error = (res.stderr.strip().splitlines() or ["?"])[-1]
        row = json.loads(lines[-1]) if lines else {"name": name, "error": error}
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    print(f"\nfsv labels, DeepCrack, {args.budget_s:g} s {args.device} training per backbone at {args.image_size} px, "
          f"batch {args.batch_size}, {args.threads} thread(s); runs in {out}\n")
    print("| backbone | params | ODS | OIS | AP | epochs | train img/s | infer img/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | error: {r['error']} |||||||| ")
            continue
        pct = lambda v: f"{100 * v:.2f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(f"| {r['name']} | {r.get('params', 0):,} | {pct(r.get('ods'))} | {pct(r.get('ois'))} | "
              f"{pct(r.get('ap'))} | {r.get('epochs_done', '-')} | {r.get('train_images_per_s', '-')} | "
              f"{r.get('infer_images_per_s', '-')} ({r.get('infer_size', '')}) | {r.get('run_peak_rss_mib', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
