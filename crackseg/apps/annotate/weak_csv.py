"""Rewriting one photo's rows of a weak-label CSV (:mod:`crackseg.data.weak_labels`) and keeping every other row.

Rows are ``stem,x,y,size,label`` (a patch) or ``stem,label`` (the whole image), labels ``1``/``0``; the file
starts with the header ``stem,x,y,size,label`` when annotate creates it. Rows of stems that annotate does
not manage (written by hand or by another tool), blank lines and ``#`` comments are kept in place.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from crackseg.base.errors import DataError
from crackseg.base.io import write_text
from crackseg.data.weak_labels import patch_grid

HEADER = ["stem", "x", "y", "size", "label"]

Row = list[str]


def photo_rows(stem: str, image: str | None, patches: Sequence[tuple[int, int]], patch_size: int,
               height: int, width: int) -> list[Row]:
    """The CSV rows of one photo's labels.

    ``no_crack``: one image row ``stem,0``. ``crack``: ``stem,1`` and, when crack patches are marked, one row per
    patch of the :func:`~crackseg.data.weak_labels.patch_grid` (``1`` for a marked patch, ``0`` for every other:
    what the weak-label gate needs). Skipped or undecided photos have no rows.
    """
    if image == "no_crack":
        return [[stem, "0"]]
    if image != "crack":
        return []
    rows = [[stem, "1"]]
    if patches:
        marked = set(patches)
        rows += [[stem, str(x), str(y), str(patch_size), "1" if (x, y) in marked else "0"]
                 for x, y in patch_grid(height, width, patch_size)]
    return rows


def read_rows(path: Path) -> list[Row]:
    """The rows of ``path`` as the csv module reads them (a missing file: only the header)."""
    if not path.is_file():
        return [list(HEADER)]
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [list(r) for r in csv.reader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the weak-label CSV ({exc}); move it away and restart") from None
    return rows if any(any(c.strip() for c in r) for r in rows) else [list(HEADER)]


def splice(rows: Sequence[Row], new: Mapping[str, Sequence[Row]]) -> list[Row]:
    """``rows`` with the rows of each stem of ``new`` replaced by ``new[stem]`` (where its first row was, or at the
    end for a stem that had none)."""
    out: list[Row] = []
    placed: set[str] = set()
    for i, row in enumerate(rows):
        stem = row[0].strip() if row else ""
        if i == 0 and _is_header(row):
            out.append(list(row))
            continue
        if stem in new:
            if stem not in placed:
                out.extend(list(r) for r in new[stem])
                placed.add(stem)
            continue
        out.append(list(row))
    for stem, replacement in new.items():
        if stem not in placed:
            out.extend(list(r) for r in replacement)
    return out


def _is_header(row: Sequence[str]) -> bool:
    """The header row :func:`~crackseg.data.weak_labels.read_csv` skips (first line, first cell stem/image/name)."""
    return bool(row) and row[0].strip().lower() in ("stem", "image", "name")


def _text(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _plain(stem: str) -> bool:
    """A stem the csv module writes as it is (no quotes), which a line-level search can find."""
    return bool(stem) and stem == stem.strip() and not any(c in stem for c in ',"\r\n') and not stem.startswith("#")


def replace_rows(path: Path, new: Mapping[str, Sequence[Row]]) -> None:
    """Replace the rows of the stems of ``new`` in the CSV file ``path``, atomically.

    One plain stem (every save of the page) is replaced in the file's text by one regular-expression pass, so a
    save costs about a read and a write of the file even when it holds thousands of photos' patch rows; anything
    else goes through the csv module (:func:`splice`). Both give the same file.
    """
    [stem] = new if len(new) == 1 else [""]
    if not _plain(stem) or not path.is_file():
        write_text(path, _text(splice(read_rows(path), new)))
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the weak-label CSV ({exc}); move it away and restart") from None
    if '"' in text or not text.strip():  # quoted cells: the csv module knows where rows end; empty: a header
        write_text(path, _text(splice(read_rows(path), new)))
        return
    head = ""
    first_line = text.split("\n", 1)[0]
    if _is_header(first_line.split(",")):
        head, text = text[: len(first_line) + 1], text[len(first_line) + 1 :]
        if not head.endswith("\n"):
            head += "\n"
    rows_of = re.compile(rf"^[ \t]*{re.escape(stem)}[ \t]*,[^\n]*(?:\n|\Z)", re.M)
    first = rows_of.search(text)
    rest = rows_of.sub("", text)
    if first is not None:
        where = first.start()
    else:
        if rest and not rest.endswith("\n"):
            rest += "\n"
        where = len(rest)
    write_text(path, head + rest[:where] + _text(new[stem]) + rest[where:])
