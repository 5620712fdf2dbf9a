"""Which photos ``crackseg predict`` reads, and in which folder under ``--out`` each one's outputs go.

A folder is read flat unless ``recursive``: then its sub-folders too, and each photo's outputs go to the
same relative sub-folder under ``--out`` (``photos/a/x.jpg`` → ``OUT/a/x.png``, ``OUT/a/prob/x.png``,
``OUT/a/overlay/x.png``), so same-named photos in different sub-folders do not collide. Hidden files and
folders (a leading dot) are skipped, and so are the ``--out`` folder and earlier predict outputs (a folder
holding ``predict.json``) inside an input folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from crackseg.base.errors import CracksegError
from crackseg.base.io import IMAGE_SUFFIXES, images_by_stem, what_was_read

#: the folders predict writes beside its masks: an input sub-folder of such a name would mix with them
RESERVED = ("prob", "overlay", "measurements")
#: the file that marks a folder as predict's output (never read as photos)
MARKER = "predict.json"


@dataclass(frozen=True)
class Photo:
    """A photo to predict and the folder, relative to ``--out``, its outputs go to (``.`` for ``--out`` itself)."""

    path: Path
    folder: PurePath = PurePath()


def collect_photos(inputs: Sequence[str | os.PathLike[str]], *, recursive: bool = False,
                   out: str | os.PathLike[str] | None = None) -> tuple[list[Photo], list[str]]:
    """The photos of ``inputs`` (image files and folders), in name order, and the lines to tell the user
    about what was left out (sub-folders with images when not ``recursive``, unreadable sub-folders).

    One :class:`CracksegError` for a missing input, a file that is not an image, no images at all, an input
    that is ``out`` itself, or two photos whose outputs would overwrite each other.
    """
    skip = Path(out).resolve() if out is not None else None
    photos: list[Photo] = []
    notes: list[str] = []
    folders: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if skip is not None and p.resolve() == skip:
                raise CracksegError(f"{p}: is both an input and --out; write the masks to another folder")
            folders.append(p)
            if recursive:
                photos.extend(_walk(p, skip, notes))
            else:
                photos.extend(Photo(q) for q in images_by_stem(p).values())
                ignored = _subfolders_with_images(p, skip)
                if ignored:
                    shown = ", ".join(ignored[:3]) + (", ..." if len(ignored) > 3 else "")
                    notes.append(f"{p}: {len(ignored)} sub-folder{'s' if len(ignored) != 1 else ''} with images "
                                 f"ignored ({shown}); pass --recursive to predict them too")
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise CracksegError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            photos.append(Photo(p))
        else:
            raise CracksegError(f"{p}: no such file or folder")
    if not photos:
        where = ", ".join(str(f) for f in folders) or "the inputs"
        raise CracksegError(f"{where}: no images to predict {what_was_read(folders)}")
    _refuse_collisions(photos)
    return photos, notes


def _walk(root: Path, skip: Path | None, notes: list[str]) -> list[Photo]:
    """The photos of ``root`` and its sub-folders, depth first in name order (a folder's own photos first)."""
    photos: list[Photo] = []
    seen: set[Path] = set()
    stack: list[tuple[Path, PurePath]] = [(root, PurePath())]
    while stack:
        folder, rel = stack.pop()
        real = folder.resolve()
        if real in seen or real == skip:  # a link back up the tree; the --out folder inside the input
            continue
        seen.add(real)
        if rel.parts and (folder / MARKER).is_file():
            notes.append(f"{folder}: an earlier crackseg predict output ({MARKER}); skipped")
            continue
        try:
            found = images_by_stem(folder)
            subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        except PermissionError:
            if folder == root:
                raise
            notes.append(f"{folder}: cannot be listed (permission denied); its photos are skipped")
            continue
        if found and any(part.lower() in RESERVED for part in rel.parts):
            raise CracksegError(f"{folder}: a sub-folder named like predict's own output folders "
                                f"({', '.join(RESERVED)}) would mix with them under --out; rename it")
        photos.extend(Photo(p, rel) for p in found.values())
        stack.extend((d, rel / d.name) for d in reversed(subs))
    return photos


def _subfolders_with_images(folder: Path, skip: Path | None) -> list[str]:
    """Names of the (non-hidden) sub-folders of ``folder`` with an image somewhere inside."""
    names: list[str] = []
    try:
        subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return names
    for d in subs:
        if (skip is not None and d.resolve() == skip) or (d / MARKER).is_file():
            continue
        if _holds_an_image(d):
            names.append(d.name if d.name.isprintable() else repr(d.name)[1:-1])
    return names


def _holds_an_image(folder: Path) -> bool:
    for _here, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            return True
    return False


def _refuse_collisions(photos: Sequence[Photo]) -> None:
    """Two photos with one name whose outputs would go to one folder (``a.png`` and ``a.jpg`` given apart,
    or two input folders holding ``a.jpg``): one error naming both."""
    first: dict[tuple[PurePath, str], Path] = {}
    for ph in photos:
        key = (ph.folder, ph.path.stem)
        if key in first:
            raise CracksegError(f"several input images share the name {ph.path.stem!r} ({first[key]}, {ph.path}); "
                                f"outputs would overwrite each other")
        first[key] = ph.path
