"""Pseudo-labels on disk: run a labeler over samples, write its labels and cache them.

Output layout in ``out_dir``: ``<stem>.png`` (binary, 0/255), ``soft/<stem>.png``
(the soft map as uint8), ``overlays/<stem>.png`` (the first few images: pseudo-label
in red, ground-truth crack it misses in blue), ``.keys/<stem>.key``. A label is recomputed only when
its key — the labeler's fingerprint (parameters, trained weights) and the image's
identity (path, size, modification time) — changed, so a rerun is instant.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import Sample
from .distributed import DistEnv, barrier, shard
from .io import write_png, write_text
from .labeler import LabelContext
from .overlays import overlay


def sample_identity(sample: Sample) -> str:
    """A string that changes when the sample's image changes."""
    src = sample.source or sample.stem
    try:
        st = os.stat(src)
        return f"{src}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return src


def label_key(fingerprint: str, sample: Sample) -> str:
    return hashlib.sha256(f"{fingerprint}\n{sample_identity(sample)}".encode()).hexdigest()


def label_paths(out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return out_dir / f"{stem}.png", out_dir / "soft" / f"{stem}.png", out_dir / ".keys" / f"{stem}.key"


def write_pseudo_labels(
    labeler, samples: Sequence[Sample], out_dir: Path, context: LabelContext,
    env: DistEnv | None = None, batch: int = 8, overlays: int = 4,
) -> dict[str, Path]:
    """Write pseudo-labels for ``samples``; return stem → binary label path (all ranks)."""
    from tqdm.auto import tqdm

    env = env or DistEnv()
    out_dir = Path(out_dir)
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
    empty = 0
    for start in range(0, len(mine), batch):
        chunk = mine[start : start + batch]
        labels = labeler.label([s for s, _ in chunk], context)
        for (s, key), lab in zip(chunk, labels):
            empty += not lab.binary.any()
            binary, soft, keyf = label_paths(out_dir, s.stem)
            write_png(binary, lab.binary.astype(np.uint8) * 255)
            write_png(soft, np.clip(lab.soft * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if s.stem in show:
                gt = s.mask() if s.has_mask else None
                write_png(out_dir / "overlays" / f"{s.stem}.png", overlay(s.load_image(), lab.binary, gt))
            write_text(keyf, key + "\n")  # last: the key marks a complete label
        bar.update(len(chunk))
    bar.close()
    if mine and empty == len(mine):
        # every label empty: training on them teaches "no crack anywhere"
        print(f"crackseg: warning: all {len(mine)} pseudo-labels written to {out_dir} are empty; "
              f"check the labeler and its settings (crackseg list labelers)",
              file=sys.stderr)
    barrier(env)
    return {s.stem: label_paths(out_dir, s.stem)[0] for s in samples}
