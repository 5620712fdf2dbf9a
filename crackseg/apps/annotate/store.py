"""Where an annotate page's work is saved, at every change, so that nothing is lost and nothing is clobbered.

Files under ``OUT``:

* ``annotations/<stem>.json``: the photo's :class:`~.state.PhotoState` (labels, patch size, revision);
* ``weak_labels.csv``: the weak-label CSV (:mod:`crackseg.data.weak_labels`), the photo's rows replaced at
  each change of its labels, every other row kept;
* ``masks/<stem>.png``: the traced mask (0/255), and ``images/<photo>``: the photo beside it (a hard link, or
  a copy where links are not possible), so that ``OUT`` reads as a ``folder`` data set of the annotated photos
  (``crackseg tune --data OUT``, ``crackseg evaluate PRED --data OUT``); a mask erased to nothing is removed
  with its photo.

Every change is a read-modify-write under ``OUT/.annotate.lock`` (:func:`crackseg.base.locks.file_lock`,
and a thread lock for this server's own threads), each file written atomically. The change carries
the revision the page last saw: another page or server that saved in between has advanced it, and the
change is refused with :class:`Conflict` (the page reloads the photo) instead of overwriting that work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.apps.annotate.photos import PhotoSet
from crackseg.apps.annotate.state import PhotoState
from crackseg.apps.annotate.weak_csv import replace_rows
from crackseg.base.errors import DataError
from crackseg.base.io import read_mask, write_bytes, write_json, write_png
from crackseg.base.locks import file_lock
from crackseg.base.storage import storage_errors

#: changes a page can undo per photo, and photos whose undo history is kept
UNDO_DEPTH = 50
UNDO_PHOTOS = 20

#: one thread lock per labels folder: the file lock orders processes, not the threads of one process
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(folder: Path) -> threading.Lock:
    key = os.path.normcase(os.path.abspath(folder))
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


class Conflict(Exception):
    """The page's revision is not the saved one: another page or server changed the photo since."""

    def __init__(self, state: PhotoState) -> None:
        super().__init__(f"{state.name} was changed in another page (now revision {state.rev}); reload it")
        self.state = state


@dataclass
class _Undo:
    """How to go back on one change: the state before it, and the mask file's bytes before it (when it changed)."""

    produced_rev: int
    before: PhotoState
    mask_changed: bool = False
    mask: bytes | None = None


class LabelStore:
    """The annotations of a :class:`PhotoSet` in the labels folder ``out`` (see the module docstring)."""

    def __init__(self, out: str | Path, photos: PhotoSet, patch_size: int, lock_timeout_s: float = 60.0) -> None:
        self.out = Path(out)
        self.photos = photos
        self.patch_size = int(patch_size)
        self.lock_timeout_s = lock_timeout_s
        self.csv_path = self.out / "weak_labels.csv"
        self.masks = self.out / "masks"
        self.annotations = self.out / "annotations"
        self.images = self.out / "images"
        self._thread_lock = _thread_lock(self.out)
        self._undo: OrderedDict[str, list[_Undo]] = OrderedDict()
        self._status: dict[str, tuple[int, int, bool]] = {}

    # -- paths ---------------------------------------------------------------------------------------------
    def state_path(self, stem: str) -> Path:
        return self.annotations / f"{stem}.json"

    def mask_path(self, stem: str) -> Path:
        return self.masks / f"{stem}.png"

    def _photo_copy(self, stem: str) -> Path | None:
        """Where the photo goes beside its mask (None when the photos are ``OUT/images`` themselves)."""
        src = self.photos.path(stem)
        dst = self.images / src.name
        with contextlib.suppress(OSError):
            if self.images.resolve() == src.parent.resolve():
                return None
        return dst

    # -- opening -------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the folders; bring the CSV and the photos beside the masks in line with the saved states
        (what a server killed between two writes of one change left behind)."""
        with storage_errors(self.out):
            for d in (self.out, self.masks, self.annotations):
                d.mkdir(parents=True, exist_ok=True)
        with self._locked():
            rows = {}
            for stem in self.photos.stems:
                if self.state_path(stem).is_file():
                    rows[stem] = self._read(stem).rows()
                if self.mask_path(stem).is_file():
                    self._place_photo(stem)
            if rows or not self.csv_path.exists():
                replace_rows(self.csv_path, rows)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, file_lock(self.out / ".annotate.lock", timeout_s=self.lock_timeout_s, poll_s=0.05):
            yield

    # -- reading -------------------------------------------------------------------------------------------
    def _read(self, stem: str) -> PhotoState:
        path = self.state_path(stem)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            h, w = self.photos.shape(stem)
            return PhotoState(stem=stem, name=self.photos.path(stem).name, width=w, height=h,
                              patch_size=self.patch_size)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the photo's annotate state ({exc}); move it away to start "
                            f"that photo over") from None
        state = PhotoState.from_json(data, str(path))
        if state.stem != stem:
            raise DataError(f"{path}: holds the state of {state.stem!r}, not of {stem!r}; move it away")
        return state

    def state(self, stem: str) -> PhotoState:
        """The saved state of photo ``stem`` (a fresh one when nothing is saved)."""
        return self._read(stem)

    def has_mask(self, stem: str) -> bool:
        return self.mask_path(stem).is_file()

    def mask(self, stem: str) -> np.ndarray | None:
        """The saved mask of ``stem``, ``bool [H, W]``, or None."""
        path = self.mask_path(stem)
        if not path.is_file():
            return None
        return read_mask(path, self.photos.shape(stem))

    def done(self, stem: str) -> bool:
        """Whether ``stem`` is decided (its state file is read again only when it changed)."""
        path = self.state_path(stem)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        key = (st.st_mtime_ns, st.st_size)
        cached = self._status.get(stem)
        if cached is None or cached[:2] != key:
            cached = (*key, self._read(stem).done)
            self._status[stem] = cached
        return cached[2]

    def progress(self) -> tuple[int, int]:
        """(photos decided, photos)."""
        return sum(self.done(s) for s in self.photos.stems), len(self.photos)

    # -- changing ------------------------------------------------------------------------------------------
    def _current(self, stem: str, rev: int) -> PhotoState:
        state = self._read(stem)
        if rev != state.rev:
            raise Conflict(state)
        return state

    def _commit(self, new: PhotoState, old: PhotoState) -> None:
        write_json(self.state_path(new.stem), new.to_json())
        if new.rows() != old.rows():
            replace_rows(self.csv_path, {new.stem: new.rows()})

    def _remember(self, stem: str, undo: _Undo) -> None:
        stack = self._undo.setdefault(stem, [])
        self._undo.move_to_end(stem)
        stack.append(undo)
        del stack[:-UNDO_DEPTH]
        while len(self._undo) > UNDO_PHOTOS:
            self._undo.popitem(last=False)

    def set_labels(self, stem: str, rev: int, image: Any, patches: Any) -> PhotoState:
        """Save the labels a page sent for ``stem`` (it saw revision ``rev``); the new state."""
        with self._locked():
            old = self._current(stem, rev)
            new = dataclasses.replace(old.with_labels(image, patches), rev=old.rev + 1)
            self._commit(new, old)
            self._remember(stem, _Undo(new.rev, old))
            return new

    def edit_mask(self, stem: str, rev: int, edit: Callable[[np.ndarray], np.ndarray]) -> PhotoState:
        """Save ``edit(mask)`` as the mask of ``stem`` (``bool [H, W]``, all False when it has none yet); the new
        state (the same revision when the mask did not change)."""
        with self._locked():
            old = self._current(stem, rev)
            path = self.mask_path(stem)
            before = path.read_bytes() if path.is_file() else None
            current = self.mask(stem)
            before_mask = np.zeros((old.height, old.width), bool) if current is None else current
            mask = edit(before_mask)
            if np.array_equal(mask, before_mask):  # e.g. erasing where there is no mask: nothing to save
                return old
            self._write_mask(stem, mask)
            new = dataclasses.replace(old, rev=old.rev + 1)
            self._commit(new, old)
            self._remember(stem, _Undo(new.rev, old, mask_changed=True, mask=before))
            return new

    def undo(self, stem: str, rev: int) -> tuple[PhotoState, bool]:
        """Go back on the last change this server saved for ``stem``; (the state, whether anything was undone).

        Nothing is undone when another page or server changed the photo after that change.
        """
        with self._locked():
            old = self._current(stem, rev)
            stack = self._undo.get(stem) or []
            if not stack or stack[-1].produced_rev != old.rev:
                self._undo.pop(stem, None)
                return old, False
            step = stack.pop()
            if step.mask_changed:
                self._restore_mask(stem, step.mask)
            new = dataclasses.replace(step.before, rev=old.rev + 1)
            self._commit(new, old)
            if stack:
                stack[-1].produced_rev = new.rev  # the state is again the one that change produced
            return new, True

    # -- masks and the photos beside them -----------------------------------------------------------------
    def _write_mask(self, stem: str, mask: np.ndarray) -> None:
        if mask.any():
            write_png(self.mask_path(stem), mask.astype(np.uint8) * 255)
            self._place_photo(stem)
        else:
            self._remove_mask(stem)

    def _restore_mask(self, stem: str, data: bytes | None) -> None:
        if data is None:
            self._remove_mask(stem)
        else:
            write_bytes(self.mask_path(stem), data)
            self._place_photo(stem)

    def _remove_mask(self, stem: str) -> None:
        with storage_errors(self.mask_path(stem)):
            self.mask_path(stem).unlink(missing_ok=True)
            dst = self._photo_copy(stem)
            if dst is not None:
                dst.unlink(missing_ok=True)

    def _place_photo(self, stem: str) -> None:
        """The photo of ``stem`` in ``OUT/images``: a hard link (no space), else an atomic copy."""
        dst = self._photo_copy(stem)
        if dst is None:
            return
        src = self.photos.path(stem)
        with contextlib.suppress(OSError):
            if dst.is_file() and (os.path.samefile(src, dst) or dst.stat().st_size == src.stat().st_size):
                return
        with storage_errors(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp{dst.suffix}")
        try:
            os.link(src, tmp)
        except OSError:
            write_bytes(dst, src.read_bytes())
            return
        try:
            os.replace(tmp, dst)
        except OSError:
            tmp.unlink(missing_ok=True)
            write_bytes(dst, src.read_bytes())
