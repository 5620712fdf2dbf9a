"""How ``crackseg run`` starts: the run in this process, or ``--nproc N`` local processes under torchrun.

With ``--nproc N`` this process checks the run folder, then starts torchrun with its own
command line less ``--nproc`` (:func:`crackseg.base.distributed.launch_local`); each worker runs
``crackseg run`` as one rank of the distributed run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crackseg.base.distributed import launch_local
from crackseg.config.run_config import RunConfig
from crackseg.config.run_folder import claimed_run_dir


def argv_without_nproc(argv: Sequence[str] | None = None) -> list[str]:
    """The ``crackseg`` arguments ``argv`` (default: this process's) minus ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in sys.argv[1:] if argv is None else argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def run_or_launch(cfg: RunConfig, *, nproc: int = 1, resume: bool = False, quiet: bool = False,
                  wait: bool = False) -> None:
    """Run ``cfg`` here (``nproc`` 1), or check its run folder and launch ``nproc`` local processes.

    ``wait``: when another process runs in ``cfg.out``, wait for it instead of refusing.
    """
    if nproc > 1:
        with claimed_run_dir(cfg, resume, wait=wait):  # checked here; the workers' rank 0 holds it for the run
            pass
        launch_local(nproc, argv_without_nproc(), out=cfg.out)
    else:
        from crackseg.apps.runner import run

        run(cfg, resume=resume, quiet=quiet, wait=wait)
