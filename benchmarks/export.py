"""CPU images/s of an exported ONNX model in onnxruntime (fp32 and int8) vs the same backbone in torch eager.

    python benchmarks/export.py [--backbones unet deepcrack-liu] [--tiles 32] [--tile 256] [--batch-size 4]
                                [--threads 2] [--rounds 3] [--seed 1] [--fp16] [--no-int8]

Each backbone (random weights, default parameters) is written as a checkpoint, exported with
``crackseg.apps.export.export_onnx`` (checked against torch there) and loaded as ``crackseg predict``
loads it (``onnx_predictor.load_onnx``: its tuned session, ``--threads`` intra-op threads); the int8
model is that graph quantised with ``crackseg.apps.export.quantize_int8`` (what ``crackseg export
--int8`` does), calibrated on 16 other random tiles: random weights say nothing about accuracy, the
speed of the quantised ops does not depend on their ranges. Every predictor runs the same ``--tiles``
uint8 tiles through ``forward_batch`` (normalisation, padding, sigmoid included), with the same thread
count. The rounds alternate (torch, fp32, int8, torch, ...) and the median is reported, as a Markdown
table with the ratios to torch eager. Goal: fp32 onnxruntime >= 1.3x torch on CPU. ``--fp16`` adds a
column for the same model exported with ``--fp16``. ``--seed`` seeds the random weights (seed 0 gives a
unet whose ONNX graph differs from torch by 1.1e-4 on random inputs, just over the export's 1e-4 check).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import crackseg
from crackseg.apps.export import _write_metadata, export_onnx, quantize_int8
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
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fp16", action="store_true", help="also time the --fp16 export")
    ap.add_argument("--no-int8", action="store_true", help="leave the int8 model out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    tiles = np.random.default_rng(0).integers(0, 256, (args.tiles, args.tile, args.tile, 3), dtype=np.uint8)
    calib = np.random.default_rng(1).integers(0, 256, (16, args.tile, args.tile, 3), dtype=np.uint8)
    kinds = ["fp32", *([] if args.no_int8 else ["int8"]), *(["fp16"] if args.fp16 else [])]
    print("command: python benchmarks/export.py " + shlex.join(sys.argv[1:]))
    print(f"{args.tiles} tiles of {args.tile}x{args.tile}, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}; median of {args.rounds} alternating rounds, "
          f"random weights\n")
    print("| backbone | torch eager (img/s) | " + " | ".join(f"onnxruntime {k} (img/s) | {k} / torch" for k in kinds)
          + (" | int8 / fp32" if "int8" in kinds else "") + " |")
    print("|---|---:|" + "---:|---:|" * len(kinds) + ("---:|" if "int8" in kinds else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            torch.manual_seed(args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = crackseg.create_backbone(name)
            ckpt = Path(tmp) / f"{name}.pt"
            torch.save({"format": CHECKPOINT_FORMAT, "kind": "segmentation", "model": model_state(model),
                        "backbone": {"name": name, "params": {}}, "image_size": args.tile, "predict": {}}, ckpt)
            predictors = {"torch": Predictor(model, args.tile, "cpu", batch_size=args.batch_size)}
            for kind in kinds:
                path = Path(tmp) / f"{name}-{kind}.onnx"
                try:
                    if kind == "int8" and "fp32" not in predictors:
                        continue
                    if kind == "int8":  # the checked fp32 file, quantised as `crackseg export --int8` does
                        quantize_int8(Path(tmp) / f"{name}-fp32.onnx", path, calib)
                        path = _with_metadata_of(Path(tmp) / f"{name}-fp32.onnx", path)
                    else:
                        export_onnx(ckpt, path, fp16=kind == "fp16")
                except CracksegError as exc:  # e.g. fp16 beyond its tolerance: say so in the table
                    print(f"{name} {kind}: not timed ({exc})")
                    continue
                session, meta = load_onnx(path, threads=args.threads)
                predictors[kind] = OnnxPredictor(session, meta, batch_size=args.batch_size)
            for p in predictors.values():
                _rate(p, tiles[: args.batch_size], args.batch_size)  # warm-up
            rates: dict[str, list[float]] = {k: [] for k in predictors}
            for _ in range(args.rounds):
                for k, p in predictors.items():
                    rates[k].append(_rate(p, tiles, args.batch_size))
            med = {k: statistics.median(v) for k, v in rates.items()}
            t = med["torch"]
            cells = [f"{med[k]:.2f} | {med[k] / t:.2f}x" if k in med else "– | –" for k in kinds]
            if "int8" in kinds:
                cells.append(f"{med['int8'] / med['fp32']:.2f}x" if "int8" in med and "fp32" in med else "–")
            print(f"| {name} | {t:.2f} | " + " | ".join(cells) + " |")


def _with_metadata_of(src: Path, dst: Path) -> Path:
    """``dst`` with the crackseg metadata of ``src`` (so that ``load_onnx`` opens it), marked int8."""
    import json

    import onnx

    from crackseg.prediction.onnx_predictor import META_KEY

    meta = json.loads({p.key: p.value for p in onnx.load(str(src)).metadata_props}[META_KEY])
    _write_metadata(dst, {**meta, "precision": "int8"})
    return dst


if __name__ == "__main__":
    main()
