"""One photo's annotation state: its labels, its patch grid and its revision number (``annotations/<stem>.json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crackseg.apps.annotate.weak_csv import Row, photo_rows
from crackseg.base.errors import DataError

#: the photo-level labels a page sets (None: not decided yet)
IMAGE_LABELS = ("crack", "no_crack", "skip")


class InvalidEdit(ValueError):
    """A request whose labels or strokes cannot apply to its photo (the page gets 400 and this message)."""


@dataclass(frozen=True)
class PhotoState:
    """What the page shows of one photo besides its mask; ``rev`` counts the saved changes (labels and mask)."""

    stem: str
    name: str
    width: int
    height: int
    patch_size: int
    rev: int = 0
    image: str | None = None
    #: top-left corners of the crack patches, sorted
    patches: tuple[tuple[int, int], ...] = ()

    @property
    def done(self) -> bool:
        """Whether the photo is decided (crack, no crack or skipped)."""
        return self.image is not None

    def rows(self) -> list[Row]:
        """Its rows of the weak-label CSV."""
        return photo_rows(self.stem, self.image, self.patches, self.patch_size, self.height, self.width)

    def to_json(self) -> dict[str, Any]:
        return {"stem": self.stem, "name": self.name, "width": self.width, "height": self.height,
                "patch_size": self.patch_size, "rev": self.rev, "image": self.image,
                "patches": [list(p) for p in self.patches]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> PhotoState:
        """The state a file holds; anything else is one DataError naming the file."""
        try:
            state = cls(stem=str(data["stem"]), name=str(data["name"]), width=int(data["width"]),
                        height=int(data["height"]), patch_size=int(data["patch_size"]), rev=int(data["rev"]),
                        image=data.get("image"),
                        patches=tuple(sorted((int(x), int(y)) for x, y in data.get("patches", []))))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: not an annotate state file ({type(exc).__name__}: {exc}); "
                            f"move it away to start that photo over") from None
        if state.image not in (None, *IMAGE_LABELS) or state.patch_size < 1:
            raise DataError(f"{where}: not an annotate state file (image {state.image!r}, patch size "
                            f"{state.patch_size}); move it away to start that photo over")
        return state

    def with_labels(self, image: Any, patches: Iterable[Any]) -> PhotoState:
        """This state with the labels a page sent, checked; the revision is the caller's to advance.

        A marked patch labels an undecided photo crack; marked patches on a photo labelled no crack or skipped
        are an :class:`InvalidEdit`, as are corners off the photo's grid.
        """
        if image is not None and image not in IMAGE_LABELS:
            raise InvalidEdit(f"image label {image!r}: use one of {', '.join(IMAGE_LABELS)} or null")
        if not isinstance(patches, (list, tuple)):
            raise InvalidEdit("patches: expected a list of [x, y] corners")
        size = self.patch_size
        cells: set[tuple[int, int]] = set()
        for p in patches:
            if (not isinstance(p, (list, tuple)) or len(p) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in p)):
                raise InvalidEdit(f"patch {p!r}: expected [x, y], two integers")
            x, y = p
            if x % size or y % size or not (0 <= x < self.width and 0 <= y < self.height):
                raise InvalidEdit(f"patch [{x}, {y}] is not a corner of the {size}-pixel grid of "
                                  f"{self.name} ({self.width}x{self.height})")
            cells.add((x, y))
        if cells and image is None:
            image = "crack"
        if cells and image != "crack":
            raise InvalidEdit(f"crack patches on a photo labelled {image}: label it crack, or send no patches")
        return dataclasses.replace(self, image=image, patches=tuple(sorted(cells)))
