"""CrackCLIP speed: training epoch with/without the token cache, inference throughput, peak memory.

RANDOM WEIGHTS (random_init: true): the numbers measure speed and memory only,
never accuracy. Each model runs in its own subprocess so that peak memory
(``ru_maxrss`` on the CPU, ``max_memory_allocated`` on CUDA) is its own.

    .venv/bin/python benchmarks/crackclip.py                       # ViT-B-16 and ViT-L-14-336 at 518, CPU
    .venv/bin/python benchmarks/crackclip.py --models ViT-B-16 --images 4 --device cuda

Training epoch: ``--images`` synthetic images in batches of ``--batch``, the
four-stage BCE on the adapters, Adam. "cached" = ``forward_train`` with one key
per image (epoch 1 fills the cache, epoch 2 reuses it); "uncached" =
``token_cache: off``. The speed-up is uncached epoch / cached warm epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

#: stage blocks per model (the authors' 6/12/18/24 for 24-block ViT-L; quarters for 12-block models)
DEFAULT_LAYERS = {"ViT-L-14-336": [6, 12, 18, 24], "ViT-L-14": [6, 12, 18, 24], "ViT-B-16": [3, 6, 9, 12],
                  "ViT-B-32": [3, 6, 9, 12]}


def run_one(args: argparse.Namespace, model_name: str) -> dict[str, Any]:
    import torch

    import crackseg

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    layers = DEFAULT_LAYERS.get(model_name, [6, 12, 18, 24])
    kw = dict(model=model_name, image_size=args.image_size, layers=layers, random_init=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        cached = crackseg.create_backbone("crackclip", token_cache="memory", **kw).to(device)
        build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
        cached.prepare_text()
    sync_text = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync_text()
    text_s = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(1)
    s = args.image_size
    xs = torch.randn(args.images, 3, s, s, generator=gen)
    ys = (torch.rand(args.images, 1, s, s, generator=gen) > 0.9).float()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def epoch(model: Any, use_keys: bool) -> float:
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.5, 0.999))
        model.train()
        sync()
        t = time.perf_counter()
        for i in range(0, args.images, args.batch):
            x, y = xs[i : i + args.batch].to(device), ys[i : i + args.batch].to(device)
            keys = [f"img{j}" for j in range(i, i + x.shape[0])] if use_keys else None
            with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
                out = model.forward_train(x, keys)
            loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(out[k], y) for k in model.stage_names)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        return time.perf_counter() - t

    cold = epoch(cached, True)
    warm = epoch(cached, True)
    uncached_model = cached
    uncached_model.token_cache = None  # same weights, cache switched off
    uncached = epoch(uncached_model, False)

    uncached_model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, args.images, args.batch):
            with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
                uncached_model(xs[i : i + args.batch].to(device))
    sync()
    infer = time.perf_counter() - t
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "model": model_name,
        "layers": layers,
        "build_s": build_s,
        "text_s": text_s,
        "epoch_uncached_s": uncached,
        "epoch_cached_cold_s": cold,
        "epoch_cached_warm_s": warm,
        "speedup": uncached / warm if warm > 0 else float("inf"),
        "infer_img_s": args.images / infer,
        "peak_mib": peak_mib,
        "cache_mib_per_image": cached.width * cached.grid[0] * cached.grid[1] * len(layers) * 2 / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ViT-B-16,ViT-L-14-336")
    ap.add_argument("--image-size", type=int, default=518)
    ap.add_argument("--images", type=int, default=2, help="training images per epoch (and inference images)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="CUDA only: run under fp16 autocast (the authors' setting)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args, args.one)))
        return
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--image-size", str(args.image_size),
               "--images", str(args.images), "--batch", str(args.batch), "--threads", str(args.threads),
               "--device", args.device] + (["--amp"] if args.amp else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{name}: failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    import torch

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"CrackCLIP benchmark, RANDOM WEIGHTS (speed only), {args.image_size}x{args.image_size}, "
          f"{args.images} images, batch {args.batch}, {where}{', fp16 autocast' if args.amp else ', fp32'}")
    head = ("model", "layers", "text enc s", "epoch uncached s", "epoch cached cold s", "epoch cached warm s",
            "speed-up", "infer img/s", "peak MiB*", "cache MiB/img")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['model']} | {','.join(map(str, r['layers']))} | {r['text_s']:.1f} | {r['epoch_uncached_s']:.2f} "
              f"| {r['epoch_cached_cold_s']:.2f} | {r['epoch_cached_warm_s']:.3f} | {r['speedup']:.1f}x "
              f"| {r['infer_img_s']:.2f} | {r['peak_mib']:.0f} | {r['cache_mib_per_image']:.1f} |")
    print("* peak MiB: CUDA = max allocated during inference; CPU = peak resident set of the whole "
          "subprocess (model build, text encoding, training and inference)")


if __name__ == "__main__":
    main()
