"""Pseudo-label quality of every CAM labeler: classifier trained on DeepCrack-train, scored on CFD and DeepCrack-test.

A patch classifier is trained once on DeepCrack-train (weak labels derived from its masks),
then every labeler turns it into pseudo-labels of all 118 CFD images and the DeepCrack-test
images; the table gives each labeler's ODS / OIS / AP (CrackCLIP protocol, soft maps against
the ground truth), the F1 of its binary masks and the seconds per image. ``--tuned FILE``
adds a row per YAML layer of ``crackseg tune`` (its labeler section applied on top of the
defaults), so defaults and tuned values are compared on the same classifier; ``--tune TRIALS`` runs
``crackseg tune`` for every labeler first (on ``--annotated`` DeepCrack-**train** images, with the
benchmark's classifier, never on a test set; ``--objective`` is tune's) and adds each tuned row;
``--tune-on cfd`` tunes on the first ``--annotated`` CFD images instead (a user calibrating on their own
photos) and scores CFD on the other images.
``--work DIR`` keeps the classifier and the studies: a rerun reuses them (a finished study runs
no trial again).

A labeler is ``NAME[:PRESET][,KEY=VALUE...][@W]``: ``KEY=VALUE`` set its parameters (YAML values), ``@W``
gives the scored images weak labels, patch labels of W pixels derived from their masks (a patch is crack
when it holds a crack pixel), as ``data.weak_labels: {source: masks, patch_size: W}`` does: what the
``gate: labels`` of ``ridge``, ``cam-ridge`` and the CAM labelers reads. ``ridge`` trains nothing (the
classifier is trained only when a row needs it). ``--deepcrack-train-images`` also scores DeepCrack-train,
the images the classifier was trained on (pseudo-labels are made for training images).

    .venv/bin/python benchmarks/labelers.py --images 0 --deepcrack-images 0 --deepcrack-train-images 0 \
        --labelers ridge,gate=none ridge@128 ridge@64       # the training-free rows: ~2 min on 2 cores

    .venv/bin/python benchmarks/labelers.py                    # CPU: resnet18, short budget, ~10 min on 2 cores
    python benchmarks/labelers.py --device cuda --arch resnet50 --epochs 3 --patches-per-epoch 0 --images 0
    .venv/bin/python benchmarks/labelers.py --tune 20 --images 0 --deepcrack-images 60 --labelers gradcam cam-crf

No ImageNet weights can be downloaded where this runs: the classifier starts from random
weights unless ``--weights FILE`` names a local file (the table says which).
Skips with a message when the datasets are absent (``--deepcrack``, ``--cfd``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
LABELERS = ["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam", "cam-crf", "cam-location",
            "cam-location:koenig"]


def folder(root: Path, split: str, limit: int = 0) -> list:
    from crackseg.data.loading import load_samples

    return load_samples({"name": "folder", "root": str(root)}, split, limit)


def with_weak_labels(samples: list, patch_size: int) -> list:
    """The samples with weak labels of ``patch_size``-px patches derived from their masks (none for 0)."""
    from crackseg.config.run_config import WeakLabelsConfig
    from crackseg.data.loading import with_weak_labels as attach

    return attach(samples, WeakLabelsConfig(source="masks", patch_size=patch_size) if patch_size
                  else WeakLabelsConfig(source="none"))


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any], int]:
    """``NAME[:PRESET][,KEY=VALUE...][@W]`` -> (row name, labeler, params, weak-label patch size)."""
    import yaml

    body, _, weak = spec.partition("@")
    name, *sets = body.split(",")
    name, _, preset = name.partition(":")
    params: dict[str, Any] = {"preset": preset} if preset else {}
    for item in sets:
        key, _, value = item.partition("=")
        params[key] = yaml.safe_load(value)
    row = body + ("" if sets else " (defaults)") + (f", weak labels {weak} px" if weak else "")
    return row, name, params, int(weak or 0)


def scores(samples: list, labels: list) -> dict[str, float]:
    """ODS / OIS / AP of the soft maps (CrackCLIP protocol) and the F1 of the binary masks, pooled."""
    import numpy as np

    from crackseg.evaluation.metrics import MetricAccumulator

    acc = MetricAccumulator("crackclip")
    tp = fp = fn = 0
    for s, pl in zip(samples, labels):
        gt = s.mask()
        acc.add(s.stem, np.clip(pl.soft * 255.0 + 0.5, 0, 255).astype(np.uint8), gt)
        tp += int((pl.binary & gt).sum())
        fp += int((pl.binary & ~gt).sum())
        fn += int((~pl.binary & gt).sum())
    r = acc.result()
    return {"ods": r.ods, "ois": r.ois, "ap": r.ap, "bin_f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}


def bench_classifier(train: list, work: Path, args: argparse.Namespace) -> Path:
    """Train (or, in ``work``, reuse) the benchmark's patch classifier on ``train``; its checkpoint."""
    from crackseg_cam.classifier import classifier_config, train_classifier

    cfg = classifier_config({
        "arch": args.arch, "weights": args.weights, "patch_size": args.patch_size, "stride": args.patch_size // 2,
        "epochs": args.epochs, "batch_size": 32 if args.device.startswith("cuda") else 16, "augment": args.augment,
        "val_fraction": 0.1, "max_patches_per_epoch": args.patches_per_epoch or None, "chunk_images": 16,
    })
    return train_classifier(train, cfg, work / "classifier.pt", args.device, seed=0, resume=True, quiet=True)


def tuned_layers(paths: list[Path]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row name, labeler, params) of each ``crackseg tune`` YAML layer."""
    import yaml

    out = []
    for p in paths:
        section = dict((yaml.safe_load(p.read_text()) or {}).get("labeler") or {})
        name = str(section.pop("name"))
        out.append((f"{name} (tuned: {p.name})", name, section))
    return out


def tune_labeler(spec: str, args: argparse.Namespace, work: Path, ckpt: Path | None) -> tuple[Path, int]:
    """``crackseg tune`` of labeler ``spec`` (see :func:`parse_spec`) on the annotated images: its layer and the
    weak-label patch size it was tuned with.

    ``--tune-on deepcrack``: the first ``--annotated`` DeepCrack-train images; ``cfd``: the first CFD images
    (which the CFD column then leaves out).
    """
    import subprocess

    import crackseg

    _, name, params, weak = parse_spec(spec)
    where = "" if args.tune_on == "deepcrack" else f"-{args.tune_on}"
    slug = spec.replace(":", "-").replace(",", "-").replace("=", "").replace("@", "-w")
    out = work / f"tuned-{slug}{where}.yaml"
    data, split = (args.deepcrack, "train") if args.tune_on == "deepcrack" else (args.cfd, "all")
    cmd = [str(Path(sys.executable).with_name("crackseg")), "tune", "--labeler", name, "--data", str(data),
           "--split", split, "--annotated", str(args.annotated), "--trials", str(args.tune), "--out", str(out),
           "--device", args.device, "--quiet", "--objective", args.objective]
    if ckpt is not None and crackseg.get_entry("labelers", name).plugin == "cam":
        cmd += ["--set", f"labeler.classifier.checkpoint={ckpt}"]
    for key, value in params.items():
        cmd += ["--set", f"labeler.{key}={value}"]
    if weak:
        cmd += ["--set", "data.weak_labels.source=masks", "--set", f"data.weak_labels.patch_size={weak}"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"crackseg tune of {spec} failed: {r.stderr.strip()}")
    print(f"  tuned {spec} in {time.perf_counter() - t:.0f} s: {r.stdout.strip().splitlines()[0]}",
          file=sys.stderr, flush=True)
    return out, weak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepcrack", type=Path, default=SHARED / "deepcrack")
    ap.add_argument("--cfd", type=Path, default=SHARED / "cfd")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--weights", default=None, help="local ImageNet weights for the classifier (default: none)")
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--patches-per-epoch", type=int, default=1500, help="0 = all")
    ap.add_argument("--augment", default="random")
    ap.add_argument("--train-images", type=int, default=0, help="DeepCrack-train images (0 = all 300)")
    ap.add_argument("--images", type=int, default=24, help="images per test set (0 = all: 118 CFD, 237 DeepCrack)")
    ap.add_argument("--deepcrack-images", type=int, default=None,
                    help="DeepCrack-test images (default: --images; 0 = all 237, -1 = none)")
    ap.add_argument("--deepcrack-train-images", type=int, default=-1,
                    help="also score this many DeepCrack-train images (0 = all 300, -1 = none)")
    ap.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                    help="also tune every labeler with crackseg tune (TRIALS trials) and add the tuned rows")
    ap.add_argument("--annotated", type=int, default=10, help="images crackseg tune scores on")
    ap.add_argument("--tune-on", choices=["deepcrack", "cfd"], default="deepcrack",
                    help="tune on DeepCrack-train images, or on the first CFD images (then left out of the CFD column)")
    ap.add_argument("--objective", choices=["binary", "soft"], default="binary",
                    help="crackseg tune's objective: F of the binary masks, or ODS of the soft maps")
    ap.add_argument("--labelers", nargs="+", default=LABELERS, help="NAME[:PRESET][,KEY=VALUE...][@W]")
    ap.add_argument("--tuned", type=Path, nargs="*", default=[], help="YAML layers written by crackseg tune")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="folder for the classifier (default: temporary)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    for root in (args.deepcrack, args.cfd):
        if not (root / "images").is_dir():
            print(f"SKIP: no dataset at {root} (pass --deepcrack / --cfd)")
            return 0
    import torch

    import crackseg
    from crackseg.labels.contract import LabelContext
    from crackseg_cam.classifier import load_classifier, metrics_path

    torch.set_num_threads(args.threads)
    train = folder(args.deepcrack, "train", args.train_images)
    dc_images = args.images if args.deepcrack_images is None else args.deepcrack_images
    cfd, cfd_name = folder(args.cfd, "all", 0), "CFD"
    if args.tune and args.tune_on == "cfd":  # the images tune scores on are not test images
        tuned_on = {s.stem for s in [s for s in cfd if s.has_mask][: args.annotated]}
        cfd = [s for s in cfd if s.stem not in tuned_on]
        cfd_name = f"CFD ({len(cfd)} held out)"
    tests = {cfd_name: cfd[: args.images] if args.images else cfd}
    if dc_images >= 0:
        tests["DeepCrack-test"] = folder(args.deepcrack, "test", dc_images)
    if args.deepcrack_train_images >= 0:
        tests["DeepCrack-train"] = folder(args.deepcrack, "train", args.deepcrack_train_images)
    work = args.work or Path(tempfile.mkdtemp(prefix="labelers-bench-"))
    runs: list[tuple[str, str, dict[str, Any], int]] = []
    for spec in args.labelers:
        runs.append(parse_spec(spec))
    runs += [(r, n, p, 0) for r, n, p in tuned_layers(args.tuned)]
    needs_classifier = any(crackseg.get_entry("labelers", n).plugin == "cam" for _, n, _, _ in runs)
    train_s, m, clf = 0.0, {}, None
    ckpt = None
    if needs_classifier:
        t0 = time.perf_counter()
        ckpt = bench_classifier(train, work, args)
        train_s = time.perf_counter() - t0
        m = json.loads(metrics_path(ckpt).read_text())
        clf = load_classifier(ckpt, args.device)
    if args.tune:
        for spec in args.labelers:
            layer, weak = tune_labeler(spec, args, work, ckpt)
            runs += [(f"{r}" + (f", weak labels {weak} px" if weak else ""), n, p, weak)
                     for r, n, p in tuned_layers([layer])]
    ctx = LabelContext(device=args.device, work_dir=work, quiet=True)
    rows = []
    for row_name, name, params, weak in runs:
        params = {k: v for k, v in params.items() if k != "classifier"}
        lab = crackseg.create_labeler(name, **params)
        if clf is not None and hasattr(lab, "classifier"):
            lab.classifier = clf  # the one classifier trained above
        row: dict[str, Any] = {"labeler": row_name}
        seconds = images = 0.0
        for tname, samples in tests.items():
            samples = with_weak_labels(samples, weak)
            t = time.perf_counter()
            labels = lab.label(samples, ctx)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t
            images += len(samples)
            row[tname] = scores(samples, labels)
        row["s_per_image"] = seconds / images
        rows.append(row)
        print(f"  {row_name:36s} " + "  ".join(f"{t} ODS {100 * row[t]['ods']:.2f}" for t in tests)
              + f"  {row['s_per_image']:.2f} s/img", file=sys.stderr, flush=True)

    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({args.threads} threads)"
    init = f"initialised from {args.weights}" if args.weights else "trained from random weights (no ImageNet file)"
    if m:
        print(f"\nclassifier: {args.arch}, {init}; {len(train)} DeepCrack-train images, {args.patch_size}-px "
              f"patches, {args.epochs} epochs x {args.patches_per_epoch or 'all'} patches ({args.augment} "
              f"augmentation), {train_s:.0f} s on {dev}")
        print(f"held-out patches ({m['patches']}): accuracy {m['accuracy']:.3f}, precision {m['precision']:.3f}, "
              f"recall {m['recall']:.3f}, F1 {m['f1']:.3f}")
    else:
        print(f"\nno patch classifier (no CAM labeler among the rows); {dev}")
    print("test images: " + ", ".join(f"{t} {len(s)}" for t, s in tests.items()) + "\n")
    head = " | ".join(f"{t} ODS | {t} OIS | {t} AP | {t} bin-F1" for t in tests)
    print(f"| labeler | {head} | s / image |")
    print("|---|" + "---:|" * (4 * len(tests) + 1))
    for row in rows:
        cells = " | ".join(f"{100 * row[t][k]:.2f}" for t in tests for k in ("ods", "ois", "ap", "bin_f1"))
        print(f"| {row['labeler']} | {cells} | {row['s_per_image']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"classifier": m, "train_s": train_s, "device": dev, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
