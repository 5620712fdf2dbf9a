"""Content keys: short, stable hashes of JSON-able inputs that name cached stages and grid cells."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_key(*parts: Any, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts`` as canonical JSON."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
