"""Text prompt sets of the CrackCLIP plugin: WinCLIP-style states × templates (pure Python, no torch).

A prompt set describes the two classes a CLIP-style backbone compares image
patches with: ``normal`` (no crack) and ``crack``. It is the compositional
prompt ensemble of WinCLIP / APRIL-GAN / CrackCLIP: every *state* (a phrase
with one ``{}`` for the object word, e.g. ``"{} with crack"``) is put into every
*template* (a sentence with one ``{}``, e.g. ``"a photo of a {}."``)::

    sentence = template.format(state.format(object))

Users write their own prompt set as a YAML file (``--prompts my.yaml``, read by the
``prompt-file`` entry of this plugin)::

    # my_prompts.yaml
    object: concrete wall          # optional (default: pavement)
    templates:                     # optional (default: the 35 WinCLIP templates)
      - "a photo of a {}."
    normal:                        # required, states with one {}
      - "flawless {}"
    crack:                         # required
      - "{} with crack"

Use ``templates: ["{}"]`` to give complete sentences as states.
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crackseg import ConfigError, load_yaml

DEFAULT_OBJECT = "pavement"

#: The 35 templates of WinCLIP's compositional prompt ensemble, in the order of
#: APRIL-GAN's and CrackCLIP's ``prompt_ensemble.py``.
WINCLIP_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

CLASSES: tuple[str, str] = ("normal", "crack")


@dataclass(frozen=True)
class PromptSet:
    """States × templates for the classes ``normal`` and ``crack``.

    ``sentences()`` returns ``{"normal": [...], "crack": [...]}``, ordered
    state-major (all templates of the first state, then the second state, ...),
    as the authors' code does.
    """

    name: str
    normal: tuple[str, ...]
    crack: tuple[str, ...]
    templates: tuple[str, ...] = WINCLIP_TEMPLATES
    object: str = DEFAULT_OBJECT
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.source or f"prompt set {self.name!r}"
        if not isinstance(self.object, str) or not self.object.strip():
            raise ConfigError(f"{where}: 'object' must be a non-empty string (e.g. pavement)")
        for key, items in (("normal", self.normal), ("crack", self.crack), ("templates", self.templates)):
            check_phrases(items, key, where)

    def sentences(self) -> dict[str, list[str]]:
        """The complete sentences of each class."""
        return {
            "normal": self._expand(self.normal),
            "crack": self._expand(self.crack),
        }

    def _expand(self, states: tuple[str, ...]) -> list[str]:
        return [t.format(s.format(self.object)) for s in states for t in self.templates]

    def counts(self) -> dict[str, int]:
        """Number of sentences per class."""
        n = len(self.templates)
        return {"normal": len(self.normal) * n, "crack": len(self.crack) * n}


def check_phrases(items: Any, key: str, where: str) -> tuple[str, ...]:
    """Each item is a string with exactly one empty ``{}`` field; return them as a tuple."""
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise ConfigError(f"{where}: {key!r} must be a list of strings, got {type(items).__name__}")
    if not items:
        raise ConfigError(f"{where}: {key!r} is empty; give at least one entry")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"{where}: {key}[{i}] must be a string, got {item!r}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(item) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}[{i}] {item!r} is not a valid pattern ({exc}); "
                              "write literal braces as {{ and }}") from None
        if fields != [""]:
            raise ConfigError(
                f"{where}: {key}[{i}] {item!r} must contain exactly one '{{}}' "
                f"(where the {'state phrase' if key == 'templates' else 'object word'} goes)"
            )
    return tuple(items)


_FILE_KEYS = ("object", "templates", "normal", "crack", "name", "description")


def load_prompt_file(path: str, object: str | None = None) -> PromptSet:  # noqa: A002
    """Read and validate a user prompt set from YAML (see the module docstring).

    ``object`` overrides the file's object word. Every problem raises a
    one-line :class:`ConfigError` naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"prompt file {path} not found; give the path to a YAML file with 'normal' and 'crack' lists")
    data = load_yaml(p, what="prompt file", expected="a mapping with keys 'normal' and 'crack'")
    unknown = [str(k) for k in data if k not in _FILE_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], _FILE_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"prompt file {path}: unknown key {unknown[0]!r}{hint} (valid keys: {', '.join(_FILE_KEYS)})"
        )
    for key in ("normal", "crack"):
        if key not in data:
            raise ConfigError(f"prompt file {path}: missing key {key!r} (a list of states such as '{{}} with crack')")
    where = f"prompt file {path}"
    obj = object if object is not None else data.get("object", DEFAULT_OBJECT)
    if not isinstance(obj, str):
        raise ConfigError(f"{where}: 'object' must be a string, got {obj!r}")
    templates = data.get("templates", WINCLIP_TEMPLATES)
    return PromptSet(
        name=str(data.get("name") or p.stem),
        normal=check_phrases(data["normal"], "normal", where),
        crack=check_phrases(data["crack"], "crack", where),
        templates=check_phrases(templates, "templates", where),
        object=obj,
        source=where,
    )
