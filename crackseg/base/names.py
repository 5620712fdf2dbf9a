"""Names from a user's file that become file or folder names: one rule, checked in one place."""

from __future__ import annotations

import re

from crackseg.base.console import quote
from crackseg.base.errors import ConfigError

#: what a name that becomes a file or folder name may hold
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def safe_name(value: object, what: str) -> str:
    """``value`` if it can be one file or folder name inside an output folder, else one :class:`ConfigError`.

    Letters, digits, ``.``, ``_`` and ``-`` only, not starting with a dot: no path separator, no
    absolute path, no ``..``, no hidden file, so ``out / name`` stays inside ``out``. ``what`` names
    the key in the message, e.g. ``grid.yaml: tables[0].id``.
    """
    if isinstance(value, str) and SAFE_NAME.fullmatch(value):
        return value
    raise ConfigError(f"{what}: {quote(value)} is not a plain name (letters, digits, '.', '_', '-', not starting "
                      f"with a dot): it becomes a file or folder name")
