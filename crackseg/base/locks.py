"""Inter-process locks: one process at a time in a run folder, a label folder, a study, a shared stage.

Built on :mod:`filelock` (``flock`` on POSIX, ``msvcrt`` on Windows; the lock goes when its process
dies, even by kill -9), so the core imports on every operating system. The lock of a target
``X`` is the hidden file ``.X.lock`` beside it (:func:`lock_path`); while a process holds it,
``.X.lock.owner`` says who (PID, host, command, start time), so a refused process can name it.

* :func:`hold` — for a command's whole life on its output (``run --out``, ``label --out``,
  ``tune --study``): a second process is refused in one line naming the first (or waits, ``wait=True``).
* :func:`file_lock` / :func:`folder_locks` — around shared stages (pseudo-labels and classifiers
  shared by ``compare`` cells, SLURM array jobs): the second process waits, then finds the results cached.

Locks are re-entrant within a process: a ``compare`` cell holds its cell folder's lock and the
run it starts takes the same lock again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from crackseg.base.console import warn
from crackseg.base.errors import CracksegError

#: the locks this process holds: canonical lock path → (lock, depth)
_HELD: dict[str, tuple[FileLock, int]] = {}


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``target`` (a folder or a file): ``.<name>.lock`` beside it."""
    t = Path(target)
    return t.parent / f".{t.name}.lock"


def owner_path(lock: str | os.PathLike[str]) -> Path:
    """Where the holder of ``lock`` describes itself while it holds it."""
    p = Path(lock)
    return p.with_name(p.name + ".owner")


def describe_owner(lock: str | os.PathLike[str]) -> str:
    """Who holds ``lock``, as the holder recorded it (``PID 123 on host, `crackseg run ...`, since 12:03``)."""
    try:
        info = json.loads(owner_path(lock).read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        command = " ".join(str(a) for a in info.get("command", []))
        if len(command) > 80:
            command = command[:79] + "…"
        return f"PID {int(info['pid'])} on {info.get('host', '?')}, `{command}`, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is"


def _record_owner(lock: Path) -> None:
    from crackseg.base.io import write_json  # io imports numpy/PIL: only when a lock is taken

    info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(),
                            "command": ["crackseg", *sys.argv[1:]], "since": time.time()}
    with contextlib.suppress(OSError, CracksegError):  # the description is a courtesy; the lock is what counts
        write_json(owner_path(lock), info)


def _key(lock: Path) -> str:
    return os.path.normcase(os.path.abspath(lock))


def _acquire(lock: Path, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Take ``lock`` (or count one more hold when this process has it); whether this call took it.

    ``timeout_s`` < 0 waits for ever, 0 tries once; a lock still busy raises :class:`filelock.Timeout`.
    """
    key = _key(lock)
    if key in _HELD:
        held, depth = _HELD[key]
        _HELD[key] = (held, depth + 1)
        return False
    lock.parent.mkdir(parents=True, exist_ok=True)
    fl = FileLock(str(lock))
    fl.acquire(timeout=timeout_s, poll_interval=poll_s)
    _HELD[key] = (fl, 1)
    _record_owner(lock)
    return True


def _release(lock: Path) -> None:
    key = _key(lock)
    fl, depth = _HELD[key]
    if depth > 1:
        _HELD[key] = (fl, depth - 1)
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        owner_path(lock).unlink()
    fl.release()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout_s: float = 24 * 3600, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the lock file ``path`` for the ``with`` block, waiting up to ``timeout_s`` for another process."""
    p = Path(path)
    try:
        _acquire(p, timeout_s, poll_s)
    except Timeout:
        raise CracksegError(f"{p}: still locked by {describe_owner(p)} after {timeout_s:.0f}s") from None
    try:
        yield
    finally:
        _release(p)


@contextlib.contextmanager
def folder_locks(folders: Iterable[str | os.PathLike[str]], enabled: bool = True) -> Iterator[None]:
    """Hold the locks of ``folders`` (sorted, so two processes never wait on each other) for the block.

    What killed writers left half-written in a folder is removed once its lock is taken.
    ``enabled=False`` holds none (rank > 0 of a torchrun job: its rank 0 holds them).
    """
    with contextlib.ExitStack() as stack:
        if enabled:
            for folder in sorted(Path(f) for f in folders):
                stack.enter_context(file_lock(lock_path(folder)))
                _sweep(folder)
        yield


def _sweep(folder: str | os.PathLike[str]) -> None:
    """Remove what killed writers left half-written in ``folder``, whose lock this process has just taken."""
    from crackseg.base.io import remove_stale_temporaries  # io imports numpy/PIL: only when a lock is taken

    remove_stale_temporaries(folder)


@contextlib.contextmanager
def hold(target: str | os.PathLike[str], what: str, *, wait: bool = False, other: str = "choose another --out",
         enabled: bool = True) -> Iterator[bool]:
    """Hold ``target``'s lock for a command's life; yields whether this call took it.

    Another process holding it: a :class:`CracksegError` naming that process, what it is doing
    (``what``, e.g. "a run") and the way out (``other``); with ``wait`` a warning line instead, then
    this process waits its turn. Once taken, what killed writers left half-written in ``target`` (a
    folder) is removed. ``enabled=False`` holds nothing (rank > 0 of a torchrun job).
    """
    if not enabled:
        yield False
        return
    lock = lock_path(target)
    try:
        took = _acquire(lock, 0)
    except Timeout:
        if not wait:
            raise CracksegError(
                f"{target}: {what} is in progress there, by {describe_owner(lock)}; let it finish "
                f"(--wait queues behind it) or {other}") from None
        warn(f"{target}: {what} is in progress there, by {describe_owner(lock)}; waiting for it to finish")
        took = _acquire(lock, -1)
    try:
        if took:
            _sweep(target)
        yield took
    finally:
        _release(lock)


def is_held(target: str | os.PathLike[str]) -> bool:
    """Whether this process holds ``target``'s lock (for checks before writing)."""
    return _key(lock_path(target)) in _HELD
