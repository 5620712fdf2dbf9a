"""How ``cam-crf``'s defaults were chosen: candidate CAM settings scored on ten DeepCrack-**train** masks.

The CRF kernels stay pydensecrf's reference values; what feeds them varies: the CAM method and
the p(crack) gate. Each candidate labels the first ``--annotated`` DeepCrack-train images that
have a mask (the images ``crackseg tune --data .../deepcrack --split train --annotated 10``
scores, never a test image) with one patch classifier, and the table gives the pseudo-label F
of the binary masks pooled over them (``crackseg tune``'s default objective). The classifier is
the one ``benchmarks/labelers.py`` trains (same options; ``--work DIR`` shares it with that run).

    .venv/bin/python benchmarks/cam_crf_defaults.py --work labelers-bench     # ~3 min on 2 cores

Skips with a message when DeepCrack is absent (``--deepcrack``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from labelers import SHARED, bench_classifier, folder

#: (CAM method, gate, gate threshold); the first is the earlier releases' default, the marked one today's
CANDIDATES: list[tuple[str, str, float]] = [
    ("gradcam", "prob", 0.5), ("gradcam", "hard", 0.5), ("gradcam", "none", 0.5),
    ("gradcam++", "prob", 0.5), ("gradcam++", "hard", 0.5), ("gradcam++", "hard", 0.1), ("gradcam++", "none", 0.5),
    ("layercam", "prob", 0.5), ("layercam", "hard", 0.5), ("layercam", "none", 0.5),
    ("xgradcam", "none", 0.5),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepcrack", type=Path, default=SHARED / "deepcrack")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--patches-per-epoch", type=int, default=1500, help="0 = all")
    ap.add_argument("--annotated", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="folder for the classifier (default: temporary)")
    args = ap.parse_args(argv)
    if not (args.deepcrack / "images").is_dir():
        print(f"SKIP: no dataset at {args.deepcrack} (pass --deepcrack)")
        return 0
    import torch

    import crackseg
    from crackseg.apps.tune import score_labeler
    from crackseg.labels.contract import LabelContext
    from crackseg_cam.classifier import load_classifier
    from crackseg_cam.params import CamCrfParams

    torch.set_num_threads(args.threads)
    train = folder(args.deepcrack, "train")
    annotated = [s for s in train if s.has_mask][: args.annotated]
    masks = {s.stem: s.mask() for s in annotated}
    work = args.work or Path(tempfile.mkdtemp(prefix="cam-crf-defaults-"))
    args.weights, args.augment = None, "random"  # benchmarks/labelers.py's defaults: the same classifier
    ckpt = bench_classifier(train, work, args)
    clf = load_classifier(ckpt, args.device)
    ctx = LabelContext(device=args.device, work_dir=work, quiet=True)
    today = (CamCrfParams.cam_method, CamCrfParams.gate, CamCrfParams.gate_threshold)
    print(f"cam-crf with pydensecrf's kernels; {args.arch} classifier in {ckpt}; pseudo-label F (binary masks, "
          f"pooled) on {len(annotated)} DeepCrack-train images: {', '.join(s.stem for s in annotated)}\n")
    print("| CAM | gate | gate threshold | F | s |")
    print("|---|---|---:|---:|---:|")
    for method, gate, cut in CANDIDATES:
        lab = crackseg.create_labeler("cam-crf", cam_method=method, gate=gate, gate_threshold=cut)
        lab.classifier = clf
        t = time.perf_counter()
        f = score_labeler(lab, annotated, masks, ctx, name="cam-crf", chunk=len(annotated))
        mark = " (today's default)" if (method, gate, cut) == today else ""
        cut_text = f"{cut:g}" if gate != "none" else "–"
        print(f"| {method}{mark} | {gate} | {cut_text} | {f:.4f} | {time.perf_counter() - t:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
