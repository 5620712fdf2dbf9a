"""Training images/s of a user's `crackseg run` against a bare PyTorch loop over the same model, batch and images.

    python benchmarks/training_overhead.py [--epochs 6] [--rounds 3] [--threads 2] [--backbone unet]

A (the user's setting): ``crackseg run --labeler fsv --backbone unet --data synthetic --set train.epochs=E``
as a process of its own: the default resnet34 U-Net, the 48 synthetic training images, the data
pipeline (images and labels read from disk, resized, flipped/rotated in a loader process), the engine
(progress, history, checkpoints: the weights and Adam's state, 293 MB for this model, every
``train.checkpoint_every_s`` and after the last epoch; the allocator settings of ``crackseg.base.allocator``).
Its images/s is ``train_images * epochs_done / train_seconds`` from ``metrics.json``: the time
from the first epoch to the last checkpoint on disk.

B (the bare loop), a process of its own: the same backbone built the same way, the same training images
and labels (read from A's run folder, resized to the run's ``train.image_size``) held as tensors in
memory, shuffled each epoch, forward → the run's loss → zero_grad → backward → Adam step, the same batch
size, learning rate and number of epochs; no loader, no checkpoint, no progress bar.

C, the same bare loop with the allocator settings that A's training engine makes for itself
(:mod:`crackseg.base.allocator`: glibc's mmap and trim thresholds, given to C as ``MALLOC_MMAP_THRESHOLD_``
and ``MALLOC_TRIM_THRESHOLD_``). A/B is the goal's ratio, against the loop a user writes; A/C is what the
engine itself costs, once both processes allocate the same way.

The rounds alternate (A, B, C, A, B, C, ...); each prints its images/s, then the median ratios. All use
``--threads`` torch threads (``OMP_NUM_THREADS``). Goal: A >= 0.95x B.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def user_run(out: Path, backbone: str, epochs: int, env: dict[str, str]) -> float:
    cmd = [str(Path(sys.executable).with_name("crackseg")), "run", "--labeler", "fsv", "--backbone", backbone,
           "--data", "synthetic", "--set", f"train.epochs={epochs}", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    m = json.loads((out / "metrics.json").read_text())
    return m["train_images"] * m["epochs_done"] / m["train_seconds"]


def tuned_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the allocator settings the training engine makes for itself (crackseg.base.allocator)."""
    from crackseg.base.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

    return {**env, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def bare_run(run_dir: Path, env: dict[str, str]) -> float:
    r = subprocess.run([sys.executable, str(HERE), "--bare", str(run_dir)], check=True, env=env,
                       capture_output=True, text=True)
    return float(r.stdout.strip().splitlines()[-1])


def bare_loop(run_dir: Path) -> float:
    """The bare loop over what ``run_dir`` trained on; prints and returns images/s."""
    import numpy as np
    import torch

    from crackseg.base.image_stats import IMAGENET_MEAN, IMAGENET_STD
    from crackseg.base.io import read_mask
    from crackseg.config.run_folder import load_run_config
    from crackseg.data.loading import dataset_from_section, split_of
    from crackseg.plugins.factory import create_from_section
    from crackseg.training.backbones import loss_weights
    from crackseg.training.losses import DeepSupervisionLoss, parse_loss
    from crackseg.training.trainer_tools import resize_pair

    cfg = load_run_config(run_dir)
    torch.manual_seed(cfg.seed)
    samples = split_of(dataset_from_section(cfg.data), cfg.data["train_split"], cfg.data["limit_train"])
    size, t = cfg.train.image_size, cfg.train
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    xs, ys = [], []
    for s in samples:
        img = s.load_image()
        lab = read_mask(run_dir / "labels" / f"{s.stem}.png")[..., None]
        img, lab = resize_pair(img, lab, size)
        xs.append((img.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std)
        ys.append(lab.transpose(2, 0, 1).astype(np.float32))
    x_all, y_all = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
    model = create_from_section("backbones", cfg.backbone)
    loss_fn = DeepSupervisionLoss(parse_loss(cfg.loss, cfg.loss_params), cfg.loss_weights or loss_weights(model))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay)
    model.train()
    n = len(x_all)
    t0 = time.perf_counter()
    for _ in range(t.epochs):
        order = torch.randperm(n)
        for i in range(0, n, t.batch_size):
            idx = order[i : i + t.batch_size]
            out = model(x_all[idx])
            loss = loss_fn(out if isinstance(out, dict) else {"out": out}, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    ips = n * t.epochs / (time.perf_counter() - t0)
    print(f"{ips:.4f}")
    return ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone", default="unet")
    ap.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare_loop(args.bare)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONWARNINGS": "ignore"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            out = Path(tmp) / f"run{k}"
            a = user_run(out, args.backbone, args.epochs, env)
            b = bare_run(out, env)
            c = bare_run(out, tuned_env(env))
            rows.append((a, b, c))
            print(f"round {k + 1}: crackseg run {a:.3f} img/s, bare loop {b:.3f}, bare loop + allocator settings "
                  f"{c:.3f}; ratios {a / b:.3f}, {a / c:.3f}", file=sys.stderr, flush=True)
    print(f"`crackseg run --labeler fsv --backbone {args.backbone} --data synthetic --set train.epochs={args.epochs}` "
          f"vs a bare loop, {args.threads} threads, {args.rounds} alternating rounds\n")
    print("| round | crackseg run (img/s) | bare loop (img/s) | bare loop + the engine's allocator settings (img/s) "
          "| run / bare loop | run / bare loop + allocator settings |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k, (a, b, c) in enumerate(rows, 1):
        print(f"| {k} | {a:.3f} | {b:.3f} | {c:.3f} | {a / b:.3f}x | {a / c:.3f}x |")
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    ab, ac = statistics.median(a / b for a, b, _ in rows), statistics.median(a / c for a, _, c in rows)
    print(f"| median | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {ab:.3f}x | {ac:.3f}x |")


if __name__ == "__main__":
    main()
