"""Benchmark of the CAM pseudo-labelers on CFD.

Trains a patch classifier from scratch (weak labels derived from the CFD masks,
a fixed budget of patches and epochs), then produces every labeler's
pseudo-labels and prints a table: the classifier's held-out patch F1 and each
labeler's ODS / OIS / AP (CrackCLIP protocol, soft maps vs ground truth) and
seconds per image.

    .venv/bin/python benchmarks/labelers.py                      # CPU, a few minutes
    .venv/bin/python benchmarks/labelers.py --device cuda --arch resnet50 \
        --epochs 3 --patches-per-epoch 0 --images 0 --all-methods   # GPU, closer to the paper

Skips with a message when ``../shared/datasets/cfd`` (or ``--root``) is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cfd"
FAST = ["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam", "cam-crf", "cam-location",
        "cam-location:koenig"]


def load_cfd(root: Path) -> list:
    from crackseg.data import file_sample

    stems = [s.strip() for s in (root / "splits" / "all.txt").read_text().split() if s.strip()]
    return [file_sample(root / "images" / f"{s}.jpg", root / "masks" / f"{s}.png", s) for s in stems]


def scores(pairs: list) -> tuple[float, float, float]:
    """ODS / OIS / AP of (stem, soft [0,1], gt bool) triples, CrackCLIP protocol."""
    import numpy as np

    try:
        from crackseg.metrics import MetricAccumulator
    except ImportError:  # pragma: no cover - metrics not installed
        MetricAccumulator = None
    if MetricAccumulator is not None:
        acc = MetricAccumulator("crackclip")
        for stem, soft, gt in pairs:
            acc.add(stem, np.clip(soft * 255.0 + 0.5, 0, 255).astype(np.uint8), gt)
        r = acc.result()
        return r.ods, r.ois, r.ap
    raise SystemExit("crackseg.metrics is missing")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--patches-per-epoch", type=int, default=1200, help="0 = all")
    ap.add_argument("--augment", default="random")
    ap.add_argument("--images", type=int, default=8, help="images to label (0 = all 118)")
    ap.add_argument("--cam-stride", type=int, default=0, help="CAM patch stride (0 = the labelers' default)")
    ap.add_argument("--all-methods", action="store_true", help="also scorecam, ablationcam, ... (slow)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="folder for the classifier (default: temporary)")
    args = ap.parse_args(argv)

    if not (args.root / "images").is_dir():
        print(f"SKIP: CFD not found at {args.root} (pass --root)")
        return 0
    import torch

    import crackseg
    from crackseg.labeler import LabelContext
    from crackseg_cam.classifier import classifier_config, load_classifier, metrics_path, train_classifier

    torch.set_num_threads(args.threads)
    samples = load_cfd(args.root)
    work = args.work or Path(tempfile.mkdtemp(prefix="cam-bench-"))
    cfg = classifier_config({
        "arch": args.arch, "patch_size": args.patch_size, "stride": args.patch_size // 2,
        "epochs": args.epochs, "batch_size": 16, "augment": args.augment, "val_fraction": 0.1,
        "max_patches_per_epoch": args.patches_per_epoch or None, "chunk_images": 16,
    })
    t0 = time.perf_counter()
    ckpt = train_classifier(samples, cfg, work / "classifier.pt", args.device, seed=0, resume=True, quiet=True)
    train_s = time.perf_counter() - t0
    import json

    m = json.loads(metrics_path(ckpt).read_text())
    clf = load_classifier(ckpt, args.device)
    n = len(samples) if args.images == 0 else min(args.images, len(samples))
    subset = samples[:n]
    gts = [s.mask() for s in subset]
    ctx = LabelContext(device=args.device, work_dir=work, quiet=True, batch_size=32)
    methods = list(FAST)
    if args.all_methods:
        from crackseg_cam import CAM_METHODS

        methods = [k for k in CAM_METHODS] + ["cam-crf", "cam-location", "cam-location:koenig"]
    rows = []
    for spec in methods:
        name, _, preset = spec.partition(":")
        params = {"preset": preset} if preset else {}
        if args.cam_stride and name != "cam-location":
            params["stride"] = args.cam_stride
        lab = crackseg.create_labeler(name, **params)
        lab.classifier = clf
        t = time.perf_counter()
        labels = lab.label(subset, ctx)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / n
        ods, ois, apv = scores([(s.stem, pl.soft, g) for s, pl, g in zip(subset, labels, gts)])
        bin_f1 = _binary_f1([pl.binary for pl in labels], gts)
        rows.append((spec, ods, ois, apv, bin_f1, dt))
        print(f"  {spec:22s} ODS {ods:.4f} OIS {ois:.4f} AP {apv:.4f} bin-F1 {bin_f1:.4f} {dt:.2f} s/img",
              file=sys.stderr)

    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({args.threads} thread)"
    print(f"\nCFD, {n} images labelled; classifier {args.arch}, {args.patch_size}-px patches, {args.epochs} epochs "
          f"x {args.patches_per_epoch or 'all'} patches ({args.augment} aug), trained in {train_s:.0f} s on {dev}")
    print(f"patch classifier (held-out images, {m['patches']} patches): accuracy {m['accuracy']:.3f} "
          f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f}\n")
    print("| labeler | ODS (%) | OIS (%) | AP (%) | binary F1 (%) | s / image |")
    print("|---|---|---|---|---|---|")
    for spec, ods, ois, apv, bf1, dt in rows:
        print(f"| {spec} | {100 * ods:.2f} | {100 * ois:.2f} | {100 * apv:.2f} | {100 * bf1:.2f} | {dt:.2f} |")
    return 0


def _binary_f1(preds: list, gts: list) -> float:
    tp = sum(int((p & g).sum()) for p, g in zip(preds, gts))
    fp = sum(int((p & ~g).sum()) for p, g in zip(preds, gts))
    fn = sum(int((~p & g).sum()) for p, g in zip(preds, gts))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


if __name__ == "__main__":
    sys.exit(main())
