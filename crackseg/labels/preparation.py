"""Getting a labeler ready: where its trained artefacts and labels live, its context, ``prepare`` on every rank.

Used by ``crackseg run``, ``crackseg label`` and ``crackseg tune`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crackseg.base import distributed as dist_utils
from crackseg.base.hashing import content_key
from crackseg.base.locks import folder_locks
from crackseg.config.run_config import RunConfig
from crackseg.data.samples import Sample
from crackseg.labels.contract import LabelContext, Labeler
from crackseg.plugins.blame import blamed


def stage_dirs(cfg: RunConfig, run_dir: Path, artefacts: dict[str, Any]) -> tuple[dict[str, Path], Path]:
    """(artefact name → folder, pseudo-label folder) for this config.

    Inside the run folder by default (``labeler/<artefact>``, ``labels``); under
    ``cfg.shared_dir`` keyed by every input that changes them, so runs (or ``compare``
    cells) with the same training data, seed and artefact settings reuse one trained
    artefact, and those with the same labeler settings too reuse one set of labels.
    """
    if not cfg.shared_dir:
        return {name: run_dir / "labeler" / name for name in artefacts}, run_dir / "labels"
    base = Path(cfg.shared_dir)
    data = {k: v for k, v in cfg.data.items() if k not in ("test_split", "limit_test")}
    dirs = {name: base / "artefacts" / f"{name}-{content_key(name, settings, data, cfg.seed)}"
            for name, settings in sorted(artefacts.items())}
    label_key = content_key(cfg.labeler, data, cfg.seed, sorted(d.name for d in dirs.values()))
    return dirs, base / "labels" / f"{cfg.labeler['name']}-{label_key}"


def prepare_labeler(labeler: Labeler, train: Sequence[Sample], ctx: LabelContext, env: dist_utils.DistEnv,
                    name: str) -> None:
    """``labeler.prepare`` on every rank (``name``: the labeler's registered name, for errors).

    A labeler with ``distributed_prepare = True`` (it distributes its own training) is
    prepared by all ranks together; any other is prepared by rank 0 first (training and
    writing what it needs), then by the others (which load it).
    """
    def prepare() -> None:
        with blamed("labelers", name, "prepare()"):
            labeler.prepare(train, ctx)

    if getattr(labeler, "distributed_prepare", False) or not env.enabled:
        prepare()
        return
    if env.is_main:
        prepare()
    dist_utils.barrier(env)
    if not env.is_main:
        prepare()


def prepare(labeler: Labeler, train: Sequence[Sample], *, name: str, device: str, work_dir: Path,
            artefact_dirs: dict[str, Path], seed: int = 0, quiet: bool = False, env: dist_utils.DistEnv | None = None,
            lock: bool = False) -> LabelContext:
    """The labeler's :class:`LabelContext`, after :func:`prepare_labeler` on every rank.

    ``lock``: hold the lock files beside the artefact folders while preparing (rank 0; shared folders that
    another run, ``compare`` cell or ``tune`` may be training into).
    """
    env = env or dist_utils.DistEnv()
    ctx = LabelContext(device=device, work_dir=work_dir, seed=seed, quiet=quiet, artefact_dirs=dict(artefact_dirs))
    with folder_locks(ctx.artefact_dirs.values(), enabled=lock and env.is_main):
        prepare_labeler(labeler, train, ctx, env, name)
    return ctx
