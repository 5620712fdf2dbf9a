"""Inter-process file locks, so two runs never compute the same shared stage at once.

Used around shared pseudo-labels and classifiers (``compare`` cells running in
parallel, SLURM array jobs on a shared file system): the second process waits
for the first and then finds the results cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from crackseg.base.errors import CracksegError


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout_s: float = 24 * 3600, poll_s: float = 0.5) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout_s:
                    raise CracksegError(f"{p}: still locked by another process after {timeout_s:.0f}s") from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``folder``: ``<folder>.lock`` beside it."""
    f = Path(folder)
    return f.parent / f"{f.name}.lock"


@contextlib.contextmanager
def folder_locks(folders: Iterable[str | os.PathLike[str]], enabled: bool = True) -> Iterator[None]:
    """Hold the locks of ``folders`` (sorted, so two processes never wait on each other) for the block.

    ``enabled=False`` holds none (rank > 0 of a torchrun job: its rank 0 holds them).
    """
    with contextlib.ExitStack() as stack:
        if enabled:
            for folder in sorted(Path(f) for f in folders):
                stack.enter_context(file_lock(lock_path(folder)))
        yield
