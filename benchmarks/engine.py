"""Training images/s of crackseg's engine vs a bare PyTorch loop: same model, batch and tensors, one process.

    python benchmarks/engine.py [--steps 24] [--batch-size 8] [--image-size 128] [--threads 2] [--rounds 3]

The bare loop is forward → loss → zero_grad → backward → step. The engine loop is what the
``supervised`` trainer does per step (its forward wrapper with padding and output checks, the
loss over named outputs, ``Engine.backward_step``, ``should_stop``) plus one ``end_epoch`` (history
and an atomic checkpoint) per pass. Both read the same in-memory tensors, so the ratio is the
engine's own overhead. The rounds alternate (bare, engine, bare, engine, ...) and the median is
reported. Goal: engine >= 0.9x the bare loop on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import crackseg
from crackseg.base.distributed import DistEnv
from crackseg.training.engine import Engine, EngineSettings
from crackseg.training.losses import DeepSupervisionLoss, parse_loss
from crackseg.training.trainer_tools import TrainForward, forward_outputs


class Tensors(torch.utils.data.Dataset):
    """Pre-made (x, y, key) items: the engine's loader reads exactly the bare loop's tensors."""

    def __init__(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        self.xs, self.ys = xs, ys

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, i: int):
        return self.xs[i], self.ys[i], f"img{i}"


def collate(batch):
    xs, ys, keys = zip(*batch)
    return torch.stack(xs), torch.stack(ys), list(keys)


def bare(model, loss_fn, xs, ys, batch: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    t0 = time.perf_counter()
    for i in range(0, len(xs), batch):
        x, y = xs[i : i + batch], ys[i : i + batch]
        loss = loss_fn({"out": model(x)}, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(xs) / (time.perf_counter() - t0)


def engine_loop(model, loss_fn, xs, ys, batch: int, folder: Path) -> float:
    engine = Engine(model, EngineSettings(device="cpu", env=DistEnv(), checkpoint_path=folder / "checkpoint.pt",
                                          epochs=1, num_workers=0, quiet=True))
    params = engine.trainable()
    opt = torch.optim.Adam(params, lr=1e-4)
    net = engine.wrap(TrainForward(engine.model))
    loader = torch.utils.data.DataLoader(Tensors(xs, ys), batch_size=batch, shuffle=False, collate_fn=collate)
    t0 = time.perf_counter()
    for epoch in engine.epochs():
        total, count = 0.0, 0
        for x, y, keys in engine.progress(loader):
            with engine.autocast():
                outs = forward_outputs(net, x, keys, 1, "unet")
            loss = loss_fn(outs, y)
            engine.backward_step(loss, opt, params, images=x.shape[0])
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            if engine.should_stop():
                break
        engine.end_epoch(epoch, {"loss": engine.mean_across(total, count)}, opt)
    return len(xs) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, s = args.steps * args.batch_size, args.image_size
    xs = torch.randn(n, 3, s, s)
    ys = (torch.rand(n, 1, s, s) > 0.9).float()
    loss_fn = DeepSupervisionLoss(parse_loss("bce+dice"), {"out": 1.0})
    rates: dict[str, list[float]] = {"bare PyTorch loop": [], "crackseg engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms up both
            torch.manual_seed(1)
            a = bare(crackseg.create_backbone("unet", encoder="resnet18"), loss_fn, xs, ys, args.batch_size)
            torch.manual_seed(1)
            b = engine_loop(crackseg.create_backbone("unet", encoder="resnet18"), loss_fn, xs, ys, args.batch_size,
                            Path(tmp) / f"r{r}")
            if r:
                rates["bare PyTorch loop"].append(a)
                rates["crackseg engine"].append(b)
    base = statistics.median(rates["bare PyTorch loop"])
    print(f"U-Net resnet18, {s}x{s}, batch {args.batch_size}, {args.steps} steps per pass, CPU, "
          f"{args.threads} threads, median of {args.rounds} alternating rounds\n")
    print("| loop | images/s | ratio |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / base:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
