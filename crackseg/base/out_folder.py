"""The one rule for a command's ``--out`` folder (``predict``, ``measure``): new, empty, or its own earlier output.

A command writes a marker file into its output folder (``predict.json``, ``measurements.json``); a rerun
into a folder holding that marker replaces or updates the earlier output. A folder that holds anything
else (photos, someone's notes, another command's output) is refused with one line, before anything is
read or written, so ``--out photos/`` by mistake never mixes masks into the photos.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from crackseg.base.errors import CracksegError


def check_out_folder(out: str | os.PathLike[str], *, command: str, marker: str,
                     looks_like_own: Callable[[Path], bool] | None = None) -> Path:
    """``out`` as a Path when ``crackseg COMMAND --out out`` may write there; else one :class:`CracksegError`.

    Fine: an absent folder, an empty one (hidden files such as ``.DS_Store`` do not count), one holding
    ``marker`` (the command's earlier output), or one ``looks_like_own`` recognises (an earlier output
    written before the command wrote markers). Anything else is refused, naming one of the files found.
    """
    p = Path(out)
    if not p.exists():
        return p
    if not p.is_dir():
        raise CracksegError(f"--out {p}: is a file, not a folder; choose a new or empty folder")
    found = sorted(e.name for e in p.iterdir() if not (e.name.startswith(".") and e.is_file()))
    if not found or (p / marker).is_file() or (looks_like_own is not None and looks_like_own(p)):
        return p
    first = found[0] if found[0].isprintable() else repr(found[0])[1:-1]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    raise CracksegError(f"--out {p}: holds other files ({first}{more}), not an earlier crackseg {command} output "
                        f"(no {marker}); choose a new or empty folder")
