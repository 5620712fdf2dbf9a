"""Helpers shared by the file-based dataset readers: paths, split files, split rule."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from crackseg import IMAGE_SUFFIXES, ConfigError, DataError

#: preferred mask extensions, in order (a lossless format first)
MASK_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


def require_root(root: str, dataset: str) -> Path:
    """The dataset folder ``root``; empty → ConfigError, missing → DataError."""
    if not root:
        raise ConfigError(
            f"dataset {dataset!r} needs a folder: set 'root' (e.g. --data PATH or data.root in the config)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    return path


def check_fraction(value: float, key: str = "test_fraction") -> float:
    """``value`` must lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key {key!r}: {value!r} must be between 0 and 1")
    return value


def descend(root: Path, markers: Iterable[str], wrappers: Iterable[str]) -> Path:
    """``root`` itself if it holds one of ``markers``, else the first ``root/<wrapper>`` that does.

    Lets users point at the folder they unzipped (``.../DeepCrack`` or its parent).
    """
    markers = list(markers)
    if any((root / m).exists() for m in markers):
        return root
    for w in wrappers:
        cand = root / w
        if cand.is_dir() and any((cand / m).exists() for m in markers):
            return cand
    return root


def find_mask(folder: Path, stem: str, suffix: str = "") -> Path | None:
    """The mask file ``<stem><suffix>.<ext>`` in ``folder`` (PNG preferred), or None."""
    for ext in MASK_SUFFIXES:
        for e in (ext, ext.upper()):
            cand = folder / f"{stem}{suffix}{e}"
            if cand.is_file():
                return cand
    return None


def stem_of_entry(entry: str) -> str:
    """A split-file entry (an image name or path, spaces allowed) → stem: directory and image extension dropped."""
    name = entry.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for ext in IMAGE_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _is_image_name(token: str) -> bool:
    return token.lower().endswith(tuple(IMAGE_SUFFIXES) + MASK_SUFFIXES)


def split_entry(line: str, exists: Callable[[str], bool]) -> tuple[str, str]:
    """A list-file line → ``(image, mask)`` (``mask`` empty when the line names none). Names may hold spaces.

    The whole (stripped) line when ``exists`` says it names an image; else its longest start, cut
    at a space, that does, followed by an image file name, the mask (the ``image mask`` form); else, for a line
    of image names only (``x.jpg x.png``), the first two; else the whole line (reported as missing).
    """
    line = line.strip()
    if exists(line):
        return line, ""
    for gap in reversed(list(re.finditer(r"\s+", line))):
        if exists(line[: gap.start()]) and _is_image_name(line[gap.end():]):
            return line[: gap.start()], line[gap.end():]
    tokens = line.split()
    if len(tokens) > 1 and all(_is_image_name(t) for t in tokens):
        return tokens[0], tokens[1]
    return line, ""


def read_split_file(path: Path, known: Collection[str] | None = None) -> list[str]:
    """Stems listed in a split file: one per line; blank lines and ``#`` comments skipped; duplicates once.

    A line is one image name (a stem, a file name or a path; spaces allowed), optionally followed by
    its mask (``image mask``): with ``known`` stems, the line is read as whichever form names one.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split file ({exc.__class__.__name__})") from None

    def exists(entry: str) -> bool:
        return known is not None and stem_of_entry(entry) in known

    seen: dict[str, None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        seen.setdefault(stem_of_entry(split_entry(line, exists)[0]), None)
    return list(seen)


def missing_stems_message(split_file: Path, missing: list[str], folder: Path) -> str:
    """One line naming the stems of ``split_file`` that have no image in ``folder``."""
    shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return f"{split_file}: {len(missing)} listed stem(s) have no image in {folder}: {shown}"


def hash_split(stems: list[str], test_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/test split of ``stems``.

    The rule: stems are ranked by the SHA-1 of their UTF-8 name; the first
    ``round(test_fraction * n)`` of them (at least one when ``n >= 2`` and the
    fraction is positive, at most ``n - 1`` when it is below 1) form ``test``, the
    rest ``train``. It depends only on the names, not on their order or the
    platform, and adding images moves few existing ones. Both lists keep the
    input order.
    """
    n = len(stems)
    k = round(test_fraction * n)
    if n >= 2 and test_fraction > 0:
        k = max(k, 1)
    if n >= 2 and test_fraction < 1:
        k = min(k, n - 1)
    ranked = sorted(stems, key=lambda s: (hashlib.sha1(s.encode("utf-8", "surrogateescape")).hexdigest(), s))
    test = set(ranked[:k])
    return [s for s in stems if s not in test], [s for s in stems if s in test]
