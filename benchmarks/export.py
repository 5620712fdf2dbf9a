"""CPU images/s of an exported ONNX model in onnxruntime vs the same backbone in torch eager.

    python benchmarks/export.py [--backbones unet deepcrack-liu] [--tiles 32] [--tile 256] [--batch-size 4]
                                [--threads 2] [--rounds 3] [--fp16]

Each backbone (random weights, default parameters) is written as a checkpoint, exported with
``crackseg.apps.export.export_onnx`` (checked against torch there), and both predictors run the same
``--tiles`` uint8 tiles through ``forward_batch`` (normalisation, padding, sigmoid included), with
the same thread count. The rounds alternate (torch, onnxruntime, torch, ...) and the median is
reported. Goal: onnxruntime >= 1.3x torch on CPU. ``--fp16`` adds a column for the same model
exported with ``--fp16``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import crackseg
from crackseg.apps.export import export_onnx
from crackseg.base.errors import CracksegError
from crackseg.prediction.onnx_predictor import OnnxPredictor, load_onnx
from crackseg.prediction.predictor import Predictor
from crackseg.training.checkpoints import CHECKPOINT_FORMAT, model_state


def _rate(predictor: object, tiles: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(tiles), batch):
        predictor.forward_batch(tiles[i : i + batch])  # type: ignore[attr-defined]
    return len(tiles) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", nargs="+", default=["unet", "deepcrack-liu"])
    ap.add_argument("--tiles", type=int, default=32)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fp16", action="store_true", help="also time the --fp16 export")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    tiles = np.random.default_rng(0).integers(0, 256, (args.tiles, args.tile, args.tile, 3), dtype=np.uint8)
    print(f"{args.tiles} tiles of {args.tile}x{args.tile}, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}; median of {args.rounds} alternating rounds")
    half = " onnxruntime fp16 (img/s) | fp16 ratio |" if args.fp16 else ""
    print("| backbone | torch eager (img/s) | onnxruntime (img/s) | ratio |" + half)
    print("|---|---:|---:|---:|" + ("---:|---:|" if args.fp16 else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = crackseg.create_backbone(name)
            ckpt = Path(tmp) / f"{name}.pt"
            torch.save({"format": CHECKPOINT_FORMAT, "kind": "segmentation", "model": model_state(model),
                        "backbone": {"name": name, "params": {}}, "image_size": args.tile, "predict": {}}, ckpt)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            predictors = {"torch": Predictor(model, args.tile, "cpu", batch_size=args.batch_size)}
            for kind in ("fp32", "fp16") if args.fp16 else ("fp32",):
                path = Path(tmp) / f"{name}-{kind}.onnx"
                try:
                    export_onnx(ckpt, path, fp16=kind == "fp16")
                except CracksegError as exc:  # e.g. fp16 beyond its tolerance: say so in the table
                    print(f"{name} {kind}: not timed ({exc})")
                    continue
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                predictors[kind] = OnnxPredictor(session, load_onnx(path)[1], batch_size=args.batch_size)
            for p in predictors.values():
                _rate(p, tiles[: args.batch_size], args.batch_size)  # warm-up
            rates: dict[str, list[float]] = {k: [] for k in predictors}
            for _ in range(args.rounds):
                for k, p in predictors.items():
                    rates[k].append(_rate(p, tiles, args.batch_size))
            med = {k: statistics.median(v) for k, v in rates.items()}
            t, o = med["torch"], med["fp32"]
            extra = (f" {med['fp16']:.2f} | {med['fp16'] / t:.2f}x |" if "fp16" in med else " – | – |") \
                if args.fp16 else ""
            print(f"| {name} | {t:.2f} | {o:.2f} | {o / t:.2f}x |" + extra)


if __name__ == "__main__":
    main()
