"""Peak memory of ``crackseg predict`` on big photos: one whole process per photo and mode.

    python benchmarks/photo_memory.py [--sizes 1,12,48,108] [--modes tile,resize] [--backbone unet]
                                      [--param encoder=resnet18 ...] [--image-size 256] [--batch-size 4]
                                      [--workdir DIR] [--keep DIR] [--compare-with DIR]

A checkpoint of ``--backbone`` with **random weights** (seed 0; default parameters unless ``--param``
overrides them) is written to the work folder with ``--image-size`` as its window size: the memory
that depends on the photo does not depend on what the weights learnt. Each size in megapixels gets one
synthetic 4:3 JPEG (grey noise with dark crack-like polylines, quality 90; kept in ``--workdir`` between
calls). Every photo × mode is one ``python -m crackseg predict MODEL PHOTO --mode MODE --device cpu -q``
subprocess; its peak resident memory is the operating system's own figure for that process
(``os.wait4``'s ``ru_maxrss``). A 0.3 MP photo first gives each mode's start-up figure (Python, torch,
the model, full batches of windows: what no photo size changes). The table: megapixels, mode, peak RSS
(GB = 1e9 bytes), what the photo adds to the start-up figure (GB, and bytes per photo pixel), wall seconds.

``--keep DIR`` keeps the predictions (``DIR/<mode>/``, as ``crackseg predict --out`` writes them);
``--compare-with DIR`` compares this call's probability maps and masks with ones kept earlier (say, by
the code before a change): the largest difference in 1/255 steps and how many pixels differ.

Goal (issue 28): at most 1.0 GB at 12 MP and 2.0 GB at 108 MP, in both modes, with the default U-Net.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _photo(folder: Path, mp: float, seed: int = 0) -> Path:
    """A synthetic 4:3 JPEG of about ``mp`` megapixels: noise with crack-like dark polylines."""
    import cv2

    w = int(round(math.sqrt(mp * 1e6 * 4 / 3)))
    h = int(round(w * 3 / 4))
    path = folder / f"photo-{mp:g}mp.jpg"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    img = rng.integers(110, 170, (h, w, 3), dtype=np.uint8)
    for _ in range(max(4, int(mp * 3))):
        n = int(rng.integers(4, 12))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        pts = []
        for _ in range(n):
            x += float(rng.normal(0, w / 20))
            y += float(rng.normal(0, h / 20))
            pts.append((int(x), int(y)))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (40, 40, 45), int(rng.integers(2, 9)), cv2.LINE_AA)
    tmp = folder / f".{path.name}.tmp.jpg"
    if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise SystemExit(f"{path}: could not write the photo")
    os.replace(tmp, path)
    return path


def _model(folder: Path, backbone: str, params: dict[str, object], image_size: int, batch_size: int) -> Path:
    import warnings

    import torch

    import crackseg
    from crackseg.training.checkpoints import CHECKPOINT_FORMAT, model_state

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = crackseg.create_backbone(backbone, **params)
    path = folder / "model.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "kind": "segmentation", "model": model_state(model), "done": True,
                "backbone": {"name": backbone, "params": params}, "image_size": image_size,
                "predict": {"batch_size": batch_size, "threshold": 0.5}}, path)
    return path


def _run(cmd: list[str]) -> tuple[int, float, float, str]:
    """Exit status, peak RSS in bytes, wall seconds, stderr of one subprocess."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return proc.returncode, float(usage.ru_maxrss * scale), wall, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,12,48,108", help="photo sizes in megapixels, comma-separated")
    ap.add_argument("--modes", default="tile,resize", help="predict modes, comma-separated")
    ap.add_argument("--backbone", default="unet")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a backbone parameter (YAML value), e.g. encoder=resnet18")
    ap.add_argument("--image-size", type=int, default=256, help="the model's window size (train.image_size)")
    ap.add_argument("--batch-size", type=int, default=4, help="predict.batch_size")
    ap.add_argument("--workdir", default="", help="keep the model and photos here (default: a temporary folder)")
    ap.add_argument("--keep", default="", help="keep the predictions under DIR/<mode>/")
    ap.add_argument("--compare-with", default="", help="compare the predictions with those kept in DIR")
    args = ap.parse_args()
    import yaml

    from crackseg.base.io import image_shape

    params = {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in args.param)}
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="photo-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = _model(work, args.backbone, params, args.image_size, args.batch_size)
        print("command: python benchmarks/photo_memory.py " + shlex.join(sys.argv[1:]))
        print(f"{args.backbone} {params or '(default parameters)'}, random weights, window {args.image_size}, "
              f"batch {args.batch_size}, CPU, {os.cpu_count()} CPUs; one `crackseg predict` process per row\n")
        print("| photo | pixels | mode | peak RSS (GB) | photo's share (GB) | bytes / pixel | seconds |" +
              (" vs kept |" if args.compare_with else ""))
        print("|---|---:|---|---:|---:|---:|---:|" + ("---|" if args.compare_with else ""))
        start: dict[str, float] = {}
        for mp in [0.3, *sizes]:
            photo = _photo(work, mp)
            h, w = image_shape(photo)
            for mode in modes:
                keep = Path(args.keep) / mode if args.keep and mp != 0.3 else None
                out = keep if keep else work / "out" / mode
                cmd = [sys.executable, "-m", "crackseg", "predict", str(model), str(photo), "--out", str(out),
                       "--mode", mode, "--device", "cpu", "-q"]
                rc, rss, wall, err = _run(cmd)
                if rc != 0:
                    print(f"| {mp:g} MP | {w}x{h} | {mode} | failed (exit {rc}): {err.strip().splitlines()[-1:]} |")
                    continue
                if mp == 0.3:
                    start[mode] = rss
                    print(f"| start-up ({mp:g} MP) | {w}x{h} | {mode} | {rss / 1e9:.2f} | – | – | {wall:.0f} |")
                    continue
                extra = rss - start.get(mode, 0.0)
                cells = (f"| {mp:g} MP | {w}x{h} | {mode} | {rss / 1e9:.2f} | {extra / 1e9:.2f} | "
                         f"{extra / (w * h):.1f} | {wall:.0f} |")
                if args.compare_with:
                    cells += " " + _compare(out, Path(args.compare_with) / mode, photo.stem) + " |"
                print(cells, flush=True)
                if not keep:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _compare(new: Path, old: Path, stem: str) -> str:
    """Compare ``new/<stem>.png`` and ``new/prob/<stem>.png`` with the same files under ``old``."""
    from crackseg.base.io import read_gray

    parts = []
    for what, rel in (("prob", Path("prob") / f"{stem}.png"), ("mask", Path(f"{stem}.png"))):
        if not (old / rel).is_file():
            return "nothing kept to compare"
        a, b = read_gray(new / rel).astype(np.int16), read_gray(old / rel).astype(np.int16)
        if a.shape != b.shape:
            return f"{what}: sizes differ ({a.shape} vs {b.shape})"
        d = np.abs(a - b)
        parts.append(f"{what}: max diff {int(d.max())}, {int(np.count_nonzero(d))} px differ")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
