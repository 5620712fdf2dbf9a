"""Datasets by name."""

from __future__ import annotations

from typing import Any

from crackseg.data.samples import CrackDataset
from crackseg.plugins.factory import create


def create_dataset(name: str, **params: Any) -> CrackDataset:
    """A dataset by name (a folder reader needs its folder, e.g. ``root=...``)."""
    return create("datasets", name, **params)
