"""Writes the file system refuses: a full disk, a used-up quota, a read-only folder, no permission.

:func:`storage_error` recognises them, whatever raised them (an ``OSError``, ``torch.save``'s zip
writer, SQLite), and says them as one :class:`~crackseg.base.errors.StorageError` line naming the
file; :func:`crackseg.base.io.atomic_write` and the CLI's last resort use it, and
:func:`crackseg.plugins.blame.blamed` lets it through (a full disk is no plugin's fault).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from crackseg.base.errors import StorageError

_FREE = "free some space and rerun"
#: what the user is told for each refusal (errno → reason); a full disk's reason ends in "rerun"
_REFUSALS: dict[int, str] = {
    errno.ENOSPC: f"no space left on device; {_FREE}",
    errno.EROFS: "read-only file system; write to another folder",
    errno.EACCES: "permission denied; use another folder or change its permissions",
    errno.EPERM: "operation not permitted; use another folder or change its permissions",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _REFUSALS[errno.EDQUOT] = f"disk quota exceeded; {_FREE}"
#: the refusals of a full disk: rerunning after freeing space goes on (``crackseg run --resume``)
DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
#: SQLite's refusal of a read-only database file (a read-only file system or no write permission)
_READONLY_DB = "read-only database (a read-only file system, or no permission to write it); write to another folder"
#: what writers name their temporary files and folders (``.<name>.<8 characters>.tmp<suffix>``,
#: ``.<name>[.<pid>].partial``) and the locks of what they write (``.<name>.lock[.owner]``)
_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+?)\.(?:[a-z0-9_]{8}\.tmp(?:\.[^.]+)?|(?:\d+\.)?partial|lock(?:\.owner)?)$")


def storage_error(exc: BaseException, path: str | os.PathLike[str] | None = None,
                  probe: bool = False) -> StorageError | None:
    """``exc`` (or the exception it was raised ``from``) as a :class:`StorageError` when it is the file system
    refusing a write; None when it is not.

    Understood: an ``OSError`` ENOSPC / EDQUOT / EROFS / EACCES / EPERM, the ``RuntimeError`` of torch's zip
    writer (``torch.save`` raises ``[enforce fail at inline_container.cc] unexpected pos`` on a full disk, or,
    in a writer given ``probe``, ``basic_ios::clear: iostream error`` for a small file),
    SQLite's ``database or disk is full`` and ``attempt to write a readonly database``. The message names
    the file (or folder) the operating system names (a writer's temporary file as the file it was to
    become), else ``path`` (the file being written). ``probe``: a short write of torch's is told apart
    (full disk or quota) by a small write beside ``path``.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, StorageError):
            return cause
        seen.add(id(cause))
        found = _refusal(cause, path, probe)
        if found is not None:
            code, filename, reason = found
            where = _culprit(path, filename)
            if where is None and code in (errno.EACCES, errno.EPERM):
                return None  # a refusal that names no file is no matter of storage
            return StorageError(f"{where}: {reason}" if where else f"cannot write a file: {reason}", where, code)
        cause = cause.__cause__
    return None


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str] | None = None, probe: bool = False) -> Iterator[None]:
    """Re-raise what :func:`storage_error` recognises in the block as a :class:`StorageError` (others unchanged)."""
    try:
        yield
    except Exception as exc:
        stored = storage_error(exc, path, probe)
        if stored is None or stored is exc:
            raise
        raise stored from exc


def _refusal(exc: BaseException, path: str | os.PathLike[str] | None,
             probe: bool) -> tuple[int, str | None, str] | None:
    """(errno, file, reason) of a refused write, or None."""
    if isinstance(exc, OSError):
        if exc.errno not in _REFUSALS:
            return None
        return exc.errno, os.fsdecode(exc.filename) if exc.filename is not None else None, _REFUSALS[exc.errno]
    text = str(exc)
    # torch's zip writer (torch.save); a small file's short write is its stream's "basic_ios::clear: iostream error"
    if "inline_container.cc" in text or (probe and "iostream error" in text):
        m = re.search(r"open file failed because of errno (\d+)", text)
        code = int(m.group(1)) if m else next((c for c in _REFUSALS if f"strerror: {os.strerror(c)}" in text), None)
        if code is None and any(w in text for w in ("unexpected pos", "file write failed", "iostream error")):
            code = _probe(Path(path).parent) if probe and path is not None else errno.ENOSPC
        return (code, None, _REFUSALS[code]) if code in _REFUSALS else None
    if "database or disk is full" in text:  # SQLite
        return errno.ENOSPC, None, _REFUSALS[errno.ENOSPC]
    if "attempt to write a readonly database" in text:
        return errno.EROFS, None, _READONLY_DB
    return None


def _probe(folder: Path) -> int:
    """What the file system says to a 1 MiB write in ``folder`` now: its refusal, or ENOSPC when it takes it
    (a short write is a full disk, even when the space is back by now)."""
    name = None
    try:
        fd, name = tempfile.mkstemp(prefix=".crackseg-probe.", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            for _ in range(16):
                fh.write(bytes(1 << 16))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in _REFUSALS:
            return exc.errno
    finally:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)
    return errno.ENOSPC


def _culprit(path: str | os.PathLike[str] | None, filename: str | None) -> str | None:
    """What a refusal names: the operating system's ``filename``, else ``path`` (a temporary file or folder as
    what it was to become)."""
    named = filename if filename is not None else os.fspath(path) if path is not None else None
    if not named:
        return None
    parts = []
    for part in Path(named).parts:
        while m := _TEMPORARY_NAME.match(part):  # the temporary file of a lock's file: the folder locked
            part = m.group("name")
        parts.append(part)
    return str(Path(*parts))
