"""The photos an annotate page shows: ``PHOTOS_DIR`` listed once at start; a request names a photo by its
stem, which is looked up in that listing (never joined into a path)."""

from __future__ import annotations

import threading
from pathlib import Path

from crackseg.base.errors import DataError
from crackseg.base.io import image_shape, images_by_stem, read_image, what_was_read

#: photo formats a browser shows as they are (anything else is sent as PNG)
BROWSER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                 ".bmp": "image/bmp"}


class PhotoSet:
    """The photos of one folder by stem, in name order, with their sizes (read once, from the header)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: photo folder not found")
        self.paths = images_by_stem(self.folder, what="photo")
        if not self.paths:
            raise DataError(f"{self.folder}: no photos found {what_was_read(self.folder)}")
        self._shapes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    @property
    def stems(self) -> list[str]:
        return list(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, stem: object) -> bool:
        return isinstance(stem, str) and stem in self.paths

    def path(self, stem: str) -> Path:
        """The file of ``stem`` (a KeyError for a stem that is not in the listing)."""
        return self.paths[stem]

    def shape(self, stem: str) -> tuple[int, int]:
        """``(H, W)`` of the photo ``stem``."""
        with self._lock:
            if stem not in self._shapes:
                self._shapes[stem] = image_shape(self.paths[stem])
            return self._shapes[stem]

    def browser_image(self, stem: str) -> tuple[bytes, str]:
        """The photo as a browser shows it: its own bytes (JPEG, PNG, WebP, BMP) or a PNG of it; and its type."""
        path = self.paths[stem]
        kind = BROWSER_TYPES.get(path.suffix.lower())
        if kind is not None and not _rotated(path):
            return path.read_bytes(), kind
        import cv2

        ok, buf = cv2.imencode(".png", read_image(path)[:, :, ::-1])
        if not ok:
            raise DataError(f"{path}: cannot convert the photo to PNG for the page")
        return buf.tobytes(), "image/png"


def _rotated(path: Path) -> bool:
    """Whether the photo's EXIF asks viewers to rotate or mirror it. Such a photo is sent as a PNG of the pixels
    :func:`~crackseg.base.io.read_image` gives (no EXIF left for the browser to apply again), so the page shows
    exactly the grid the masks and the weak labels are measured on."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1) != 1
    except Exception:  # noqa: BLE001 - unreadable metadata: the bytes as they are
        return False
