"""Pseudo-labels on disk: run a labeler over samples, write its labels and cache them.

Output layout in ``out_dir``: ``<stem>.png`` (binary, 0/255), ``soft/<stem>.png``
(the soft map as uint8), ``overlays/<stem>.png`` (the first few images: pseudo-label
in red, ground-truth crack it misses in blue), ``.keys/<stem>.key``. A label is recomputed only when
its key — the labeler's fingerprint (parameters, trained weights) and the image's
identity (path, size, modification time) — changed, so a rerun is instant.
Labels that are all empty or mostly crack are flagged (:func:`crackseg.base.sanity.label_warning`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from crackseg.base import console
from crackseg.base.distributed import DistEnv, barrier, shard
from crackseg.base.io import write_png, write_text
from crackseg.base.overlays import overlay
from crackseg.base.sanity import label_coverage, label_warning
from crackseg.data.samples import Sample
from crackseg.labels.contract import LabelContext, Labeler, LabelFiles
from crackseg.plugins.blame import blamed, plugin_error


def sample_identity(sample: Sample) -> str:
    """A string that changes when the sample's image changes."""
    src = sample.source or sample.stem
    try:
        st = os.stat(src)
        return f"{src}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return src


def label_key(fingerprint: str, sample: Sample) -> str:
    """The cache key of one sample's pseudo-label: the labeler's fingerprint, the image and its weak labels (a
    labeler may read them: changed weak labels are new labels)."""
    key = f"{fingerprint}\n{sample_identity(sample)}"
    weak = sample.weak_labels()
    if weak is not None:
        patches = ";".join(f"{p.x},{p.y},{p.size},{int(p.crack)}" for p in weak.patches)
        key += f"\nweak:{weak.image}|{patches}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def label_paths(out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return out_dir / f"{stem}.png", out_dir / "soft" / f"{stem}.png", out_dir / ".keys" / f"{stem}.key"


def write_pseudo_labels(
    labeler: Labeler, samples: Sequence[Sample], out_dir: Path, context: LabelContext,
    env: DistEnv | None = None, batch: int = 8, overlays: int = 4, name: str = "", warn: bool = True,
) -> dict[str, LabelFiles]:
    """Write pseudo-labels for ``samples``; return stem → its label files (all ranks).

    ``name`` is the labeler's registered name: a failure or a label that breaks the
    contract (count, size, dtype, range) is then one error naming its plugin, raised
    before that label is written. With ``warn``, rank 0 prints one warning line when the
    labels of all ``samples`` (cached ones included) are all empty or mostly crack
    (:func:`crackseg.base.sanity.label_warning`); the runner passes False and checks them itself.
    """
    env = env or DistEnv()
    out_dir = Path(out_dir)
    with blamed("labelers", name, "fingerprint()"):
        fp = labeler.fingerprint()
    todo = []
    for s in samples:
        binary, soft, keyf = label_paths(out_dir, s.stem)
        key = label_key(fp, s)
        if not (binary.is_file() and soft.is_file() and keyf.is_file() and keyf.read_text().strip() == key):
            todo.append((s, key))
    mine = shard(todo, env)
    show = {s.stem for s in list(samples)[:overlays]}
    bar = tqdm(total=len(mine), desc="pseudo-labels", disable=context.quiet or not mine, leave=False)
    for start in range(0, len(mine), batch):
        chunk = mine[start : start + batch]
        with blamed("labelers", name, "label()"):
            labels = labeler.label([s for s, _ in chunk], context)
        _check_labels(name, [s for s, _ in chunk], labels)
        for (s, key), lab in zip(chunk, labels):
            binary, soft, keyf = label_paths(out_dir, s.stem)
            write_png(binary, lab.binary.astype(np.uint8) * 255)
            write_png(soft, np.clip(lab.soft * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if s.stem in show:
                gt = s.mask() if s.has_mask else None
                write_png(out_dir / "overlays" / f"{s.stem}.png", overlay(s.load_image(), lab.binary, gt))
            write_text(keyf, key + "\n")  # last: the key marks a complete label
        bar.update(len(chunk))
    bar.close()
    barrier(env)
    files = {s.stem: LabelFiles(*label_paths(out_dir, s.stem)[:2]) for s in samples}
    if warn and env.is_main:
        console.warn(label_warning(label_coverage(f.binary for f in files.values()), out_dir))
    return files


def _check_labels(name: str, samples: Sequence[Sample], labels: Any) -> None:
    """Each label: a PseudoLabel with a float map in [0, 1] and a bool mask, both at the image's size."""
    problem = label_problem(samples, labels)
    if problem:
        raise plugin_error("labelers", name, problem)


def label_problem(samples: Sequence[Sample], labels: Any) -> str:
    """What is wrong with a labeler's answer for ``samples`` (empty when nothing is)."""
    if not isinstance(labels, (list, tuple)) or len(labels) != len(samples):
        got = f"{len(labels)} labels" if isinstance(labels, (list, tuple)) else type(labels).__name__
        return f"label() returned {got} for {len(samples)} images"
    for s, lab in zip(samples, labels):
        soft, binary = getattr(lab, "soft", None), getattr(lab, "binary", None)
        if not isinstance(soft, np.ndarray) or not isinstance(binary, np.ndarray):
            return f"label() returned {type(lab).__name__} for {s.stem!r}, not a PseudoLabel of numpy arrays"
        h, w = image_shape_of(s)
        for what, arr in (("soft map", soft), ("binary mask", binary)):
            if arr.shape != (h, w):
                return (f"the {what} of {s.stem!r} is {'x'.join(map(str, arr.shape[::-1]))} but the image is "
                        f"{w}x{h} (W x H); labels must have their image's size")
        if binary.dtype != np.bool_:
            return f"the binary mask of {s.stem!r} is {binary.dtype}, not bool"
        if not np.issubdtype(soft.dtype, np.floating):
            return f"the soft map of {s.stem!r} is {soft.dtype}, not float"
        if not np.isfinite(soft).all() or soft.min() < 0.0 or soft.max() > 1.0:
            return (f"the soft map of {s.stem!r} is not in [0, 1] "
                    f"(min {np.nanmin(soft):.3g}, max {np.nanmax(soft):.3g}, finite: {bool(np.isfinite(soft).all())})")
    return ""


def image_shape_of(sample: Sample) -> tuple[int, int]:
    """(H, W) of a sample's image."""
    h, w = sample.load_image().shape[:2]
    return h, w
