"""Labelers by name."""

from __future__ import annotations

from typing import Any

from crackseg.labels.contract import Labeler
from crackseg.plugins.factory import create


def create_labeler(name: str, **params: Any) -> Labeler:
    """A pseudo-labeler by name."""
    return create("labelers", name, **params)
