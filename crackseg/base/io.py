"""Reading images and masks, writing files atomically. No torch here.

Every reader turns a user's file into a well-defined array or raises a
:class:`~crackseg.base.errors.DataError` naming the file:

* images → ``uint8`` RGB ``[H, W, 3]`` (grey, RGBA, palette and 16-bit inputs
  are converted);
* masks → ``bool`` ``[H, W]``: a mask whose values are only 0 and 1 is a 0/1 mask (crack
  where 1); any other mask is crack where the grey value is > 127 (16-bit masks are scaled
  to 8 bits first; RGB masks are converted to grey). See :func:`read_mask`.

Every reader (and :func:`image_shape`) gives the image as it is displayed: an EXIF orientation
(a phone's portrait photo stored sideways, values 2–8, mirrored ones included) is applied, as
PIL's ``ImageOps.exif_transpose`` applies it; a broken EXIF block is ignored. OpenCV decodes the
pixels; PIL reads only headers (the size and the orientation, without decoding). One image may
have at most :data:`MAX_IMAGE_PIXELS` pixels.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from crackseg.base.errors import DataError
from crackseg.base.storage import storage_errors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _max_pixels() -> int:
    try:
        value = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", ""))
    except ValueError:
        value = 0
    return value if value > 0 else 1 << 30


#: The most pixels one image may have: OpenCV's own decode limit, 2**30 = 1,073,741,824 (32768 x 32768),
#: or what the environment variable ``OPENCV_IO_MAX_IMAGE_PIXELS`` sets it to (OpenCV reads it too). A
#: larger image is one :class:`DataError` line naming the file, its size and the limit.
MAX_IMAGE_PIXELS = _max_pixels()
# PIL only reads headers here (OpenCV decodes): its decompression-bomb check gets the same limit, so that a
# 108 MP orthomosaic tile gives no raw PIL warning (PIL's own default warns above 89 MP, refuses above 179 MP)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _cv2():
    import cv2  # local import keeps `crackseg evaluate` start-up light

    global _cv2_quiet
    if not _cv2_quiet:  # a file OpenCV cannot decode is crackseg's one error line, not also its "[ WARN:0@...]"
        _cv2_quiet = True
        with contextlib.suppress(AttributeError):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


_cv2_quiet = False


class _Header(NamedTuple):
    #: (W, H) as stored
    size: tuple[int, int]
    #: EXIF orientation, 1-8 (1: as stored)
    orientation: int
    #: OpenCV's decoder applies the orientation itself (its TIFF decoder does in OpenCV 5)
    decoded_turned: bool

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) as displayed."""
        w, h = self.size
        return (w, h) if self.orientation >= 5 else (h, w)  # 5-8 turn the image a quarter


def _header(path: Path) -> _Header | None:
    """Size and EXIF orientation from the file's header, without decoding its pixels.

    None when PIL cannot read the header (OpenCV may still decode the file); the orientation is 1 (as
    stored) when there is none, or it is broken or not one of 1–8. EXIF is read as PIL's ``Image.getexif``
    reads it (an EXIF block, a PNG's text profile, XMP's ``tiff:Orientation``, a TIFF's own tag); a PNG's
    eXIf chunk after its pixels is not (PIL would decode the image to find it). An image over
    :data:`MAX_IMAGE_PIXELS` is a :class:`DataError`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings on odd headers; OpenCV's decode has the last word
            with Image.open(path) as im:
                size = (int(im.size[0]), int(im.size[1]))
                tiff = im.format == "TIFF"
                if tiff:  # PIL's size of a TIFF is sometimes already turned: the tags say what is stored
                    tags = getattr(im, "tag_v2", {})
                    size = (int(tags.get(256, size[0])), int(tags.get(257, size[1])))
                try:
                    value = Image.Image.getexif(im).get(0x0112)  # the base class's: PNG's own decodes the pixels
                except Exception:  # noqa: BLE001 - broken EXIF: as stored
                    value = None
    except Image.DecompressionBombError as exc:  # over twice PIL's limit
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_big(path, int(m.group(1)) if m else None) from None
    except Exception:  # noqa: BLE001 - not PIL's format, or no image at all: OpenCV decides
        return None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise _too_big(path, size[0] * size[1], size)
    orientation = value if isinstance(value, int) and 1 <= value <= 8 else 1
    return _Header(size, orientation, tiff and orientation != 1 and _opencv_turns_tiff())


@functools.cache
def _opencv_turns_tiff() -> bool:
    """Whether OpenCV's TIFF decoder applies the orientation tag itself (OpenCV 5 does, unlike its other
    decoders under ``IMREAD_UNCHANGED``): found once, by decoding a 2x1 TIFF stored mirrored."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(buf, "TIFF", tiffinfo={0x0112: 2})
    arr = _cv2().imdecode(np.frombuffer(buf.getvalue(), np.uint8), _cv2().IMREAD_UNCHANGED)
    return arr is not None and int(arr.reshape(-1)[0]) == 255


def _too_big(path: Path, pixels: int | None, size: tuple[int, int] | None = None) -> DataError:
    def mp(n: int) -> str:
        return f"{n / 1e6:.0f}" if n >= 10**7 else f"{n / 1e6:.3g}"

    what = f"{size[0]}x{size[1]}, " if size else ""
    what += f"{mp(pixels)} MP" if pixels else "too large"
    return DataError(f"{path}: image is {what}, over the limit of {mp(MAX_IMAGE_PIXELS)} MP for one image "
                     f"(split it into tiles, or raise the limit with the environment variable "
                     f"OPENCV_IO_MAX_IMAGE_PIXELS)")


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``arr`` (as stored) as displayed under EXIF ``orientation`` (1: as is; 2–8 as ``ImageOps.exif_transpose``)."""
    if orientation == 1:
        return arr
    cv2 = _cv2()
    if orientation == 2:
        return cv2.flip(arr, 1)
    if orientation == 3:
        return cv2.rotate(arr, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(arr, 0)
    if orientation == 5:
        return cv2.transpose(arr)
    if orientation == 6:
        return cv2.rotate(arr, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(arr), cv2.ROTATE_180)
    return cv2.rotate(arr, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _read_raw(path: Path) -> np.ndarray:
    """The decoded file as OpenCV gives it (BGR, any depth), turned as displayed (its EXIF orientation)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    header = _header(path)
    cv2 = _cv2()
    name = str(path)
    arr = None
    try:
        # imdecode, not imread: imread returns a grey-filled image for a truncated JPEG where imdecode refuses it
        # (the cost: the file's compressed bytes in memory while it is decoded)
        data = np.fromfile(name, dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        del data
    except cv2.error as exc:  # OpenCV 5 raises where 4 returned None (its size limit: a header PIL cannot read)
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise _too_big(path, None) from None
        arr = None
    if arr is None:
        raise DataError(f"{path}: cannot read image (corrupt or unsupported format)")
    if header is None or header.decoded_turned:
        return arr
    return _orient(arr, header.orientation)


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
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=arr)  # in place: a 108 MP photo is 324 MB
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{p}: unsupported image shape {arr.shape}")


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``uint8`` grey ``[H, W]`` (colour is converted)."""
    p = Path(path)
    return _grey(_to_uint8(_read_raw(p), p))


def _grey(arr: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2GRAY)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    elif arr.ndim == 3:
        arr = arr[:, :, 0]
    return arr


def is_zero_one(arr: np.ndarray) -> bool:
    """True for an integer array whose values are only 0 and 1: a 0/1 mask (crack where 1)."""
    a = np.asarray(arr)
    return bool(a.dtype != np.bool_ and np.issubdtype(a.dtype, np.integer) and a.size
                and int(a.min()) >= 0 and int(a.max()) <= 1)


def mask_from_values(arr: np.ndarray) -> np.ndarray:
    """The one mask rule, for a stored ``uint8`` grey mask: crack where 1 when its values are only
    0 and 1 (a 0/1 mask), else crack where value > 127 (a 0/255 mask, or a grey one)."""
    a = np.asarray(arr)
    return a == 1 if is_zero_one(a) else a > 127


def read_mask(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a crack mask as ``bool [H, W]``.

    The one rule every command applies (``evaluate``, ``measure``, the datasets, ``tune``): a
    mask whose stored values are only 0 and 1 (8 or 16 bits) is a 0/1 mask, crack where 1; any
    other mask is crack where its grey value is > 127 (0/255 masks; 16-bit masks are scaled to
    8 bits first, colour masks converted to grey). An all-zero mask has no crack either way.

    ``shape`` (H, W) is the image's size; a mask of another size is an error
    naming the file and both sizes.
    """
    p = Path(path)
    raw = _read_raw(p)
    zero_one = is_zero_one(raw)
    grey = _grey(raw.astype(np.uint8) * 255 if zero_one else _to_uint8(raw, p))
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


def what_was_read(folders: str | os.PathLike[str] | list[Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """Why a folder gave no images, for an error line: ``(read: .jpg .png ...; found 3 other files, e.g. a.gif)``
    (or ``...; the folder is empty``)."""
    dirs = [Path(f) for f in folders] if isinstance(folders, list) else [Path(folders)]
    others: list[str] = []
    for d in dirs:
        try:
            others += sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError:
            continue
    read = f"read: {' '.join(suffixes)}"
    if not others:
        return f"({read}; {'the folder is' if len(dirs) == 1 else 'the folders are'} empty)"
    first = others[0] if others[0].isprintable() else repr(others[0])[1:-1]
    return f"({read}; found {len(others)} other file{'s' if len(others) != 1 else ''}, e.g. {first})"


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image as displayed (its EXIF orientation applied, as the readers apply it), from its header
    when possible (a full decode, which names the file on error, otherwise)."""
    header = _header(Path(path))
    if header is None:
        h, w = read_image(path).shape[:2]
        return (h, w)
    return header.shape


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
    are as readable by a team as any other file the user writes. A write the file system refuses
    (a full disk, a used-up quota, a read-only folder, no permission; ``torch.save``'s own errors for
    them included) is one :class:`~crackseg.base.errors.StorageError` naming ``path``
    (:mod:`crackseg.base.storage`); a file already at ``path`` is kept as it was.
    """
    dest = Path(path)

    def checked(tmp: str) -> None:
        with storage_errors(dest, probe=True):  # while the temporary file still holds what was written
            writer(tmp)

    with storage_errors(dest):
        return _replace_atomically(dest, checked)


def _replace_atomically(path: str | os.PathLike[str], writer: Callable[[str], None]) -> Path:
    """``writer(tmp)``, then rename ``tmp`` onto ``path`` (the temporary file is removed on failure)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)  # not os.fchmod: Windows has no fchmod before Python 3.13
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


#: the temporary files :func:`atomic_write` makes: ``.<name>.<8 random characters>.tmp<suffix>``
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")


def remove_stale_temporaries(folder: str | os.PathLike[str], depth: int = 3) -> list[Path]:
    """Delete what writers killed mid-write left of :func:`atomic_write`'s temporary files in ``folder``.

    Only for a folder whose lock this process holds (no live writer can be writing there), down to
    ``depth`` levels of sub-folders. Returns the files removed.
    """
    root = Path(folder)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for here, dirs, files in os.walk(root):
        level = len(Path(here).relative_to(root).parts)
        if level >= depth:
            dirs[:] = []
        for name in files:
            if _TEMPORARY.match(name):
                p = Path(here) / name
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed


def write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, w)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8, atomically. A file name that is not UTF-8 (``bad\\xff.png``: Python holds it
    with a surrogate escape, ``os.fsdecode``) is written as the bytes the file system has."""
    return write_bytes(path, text.encode("utf-8", "surrogateescape"))


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


def write_png(path: str | os.PathLike[str], array: np.ndarray, *, consume: bool = False) -> Path:
    """Write a ``uint8`` grey ``[H,W]`` or RGB ``[H,W,3]`` array as PNG, atomically.

    ``consume``: the caller no longer needs ``array``, so a colour one is turned to OpenCV's BGR in place
    instead of in a copy (3 bytes a pixel less at the peak; ``array`` is left BGR). The PNG is streamed
    into the file as it is encoded (no copy of it in memory) where OpenCV can open the temporary file by
    its name; otherwise it is encoded in memory and written.
    """
    cv2 = _cv2()
    arr = array
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8) * np.uint8(255)
    if arr.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {arr.dtype}")
    if arr.ndim == 3:
        in_place = consume and arr.flags.c_contiguous and arr.flags.writeable and arr.shape[2] == 3
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR, dst=arr) if in_place else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)

    def writer(tmp: str) -> None:
        if not _streamed_png(cv2, tmp, arr):
            ok, buf = cv2.imencode(".png", arr)
            if not ok:
                raise DataError(f"{path}: PNG encoding failed")
            with open(tmp, "wb") as fh:
                fh.write(memoryview(buf).cast("B"))  # no copy of the encoded file
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())

    return atomic_write(path, writer)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _streamed_png(cv2: Any, tmp: str, arr: np.ndarray) -> bool:
    """``cv2.imwrite`` into ``tmp``, checked: True when the file is a whole PNG. False (the caller encodes in memory)
    for a name OpenCV may not open as given (not ASCII: Windows opens narrow names in its code page), another
    suffix, or a write that failed or came out short (a full disk: the caller's own write then says so)."""
    if not (tmp.isascii() and tmp.lower().endswith(".png")):
        return False
    try:
        if not cv2.imwrite(tmp, arr):
            return False
        with open(tmp, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < len(_PNG_END):
                return False
            fh.seek(-len(_PNG_END), os.SEEK_END)
            return fh.read() == _PNG_END
    except Exception:  # noqa: BLE001 - any trouble: the in-memory way, whose errors are the ones to report
        return False
