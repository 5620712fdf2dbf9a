"""Reading images and masks, writing files atomically. No torch here.

Every reader turns a user's file into a well-defined array or raises a
:class:`~crackseg.base.errors.DataError` naming the file:

* images → ``uint8`` RGB ``[H, W, 3]`` (grey, RGBA, palette and 16-bit inputs
  are converted);
* masks → ``bool`` ``[H, W]``, crack where the grey value is > 127 (16-bit masks
  are scaled to 8 bits first; RGB masks are converted to grey).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from crackseg.base.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _cv2():
    import cv2  # local import keeps `crackseg evaluate` start-up light

    return cv2


def _read_raw(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    cv2 = _cv2()
    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise DataError(f"{path}: cannot read image (corrupt or unsupported format)")
    return arr


def _to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if float(np.nanmax(arr)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise DataError(f"{path}: unsupported pixel type {arr.dtype}")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``uint8`` RGB ``[H, W, 3]``."""
    p = Path(path)
    arr = _to_uint8(_read_raw(p), p)
    cv2 = _cv2()
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{p}: unsupported image shape {arr.shape}")


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``uint8`` grey ``[H, W]`` (colour is converted)."""
    p = Path(path)
    arr = _to_uint8(_read_raw(p), p)
    cv2 = _cv2()
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2GRAY)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    elif arr.ndim == 3:
        arr = arr[:, :, 0]
    return arr


def read_mask(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a crack mask as ``bool [H, W]`` (crack where value > 127).

    ``shape`` (H, W) is the image's size; a mask of another size is an error
    naming the file and both sizes.
    """
    p = Path(path)
    grey = read_gray(p)
    if shape is not None and tuple(grey.shape[:2]) != tuple(shape):
        raise DataError(
            f"{p}: mask is {grey.shape[1]}x{grey.shape[0]} but its image is "
            f"{shape[1]}x{shape[0]} (W x H); masks must match their images"
        )
    return grey > 127


def images_by_stem(folder: str | os.PathLike[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
                   what: str = "image") -> dict[str, Path]:
    """Image files of ``folder`` (not recursive) keyed by stem, in name order.

    Hidden files (a leading dot) are skipped; a missing folder or two files with one
    stem (``a.png``, ``a.jpg``) is a :class:`DataError` naming them.
    """
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: folder not found")
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in suffixes or not p.is_file():
            continue
        if p.stem in out:
            raise DataError(f"{d}: two {what} files share the stem {p.stem!r} ({out[p.stem].name}, {p.name}); "
                            f"keep one")
        out[p.stem] = p
    return out


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image, from its header when possible (a full decode, which names the file on error, otherwise)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w)
    except Exception:  # noqa: BLE001 - fall back to a full decode
        h, w = read_image(path).shape[:2]
        return (h, w)


# -- atomic writes --------------------------------------------------------------
def _file_mode() -> int:
    """What ``open()`` would give a new file: 0o666 less the umask (mkstemp's own files are 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write(path: str | os.PathLike[str], writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see half a file.

    The file gets the permissions a plain ``open()`` would give it (the umask's), so results
    are as readable by a team as any other file the user writes.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, w)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a ``uint8`` grey ``[H,W]`` or RGB ``[H,W,3]`` array as PNG, atomically."""
    cv2 = _cv2()
    arr = array
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    return write_bytes(path, buf.tobytes())
