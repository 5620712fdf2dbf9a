"""A split of the dataset that a config's ``data:`` section describes, optionally limited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crackseg.config.run_config import DATA_KEYS
from crackseg.data.factory import create_dataset
from crackseg.data.samples import Sample


def load_samples(section: Mapping[str, Any], split: str, limit: int = 0) -> list[Sample]:
    """The samples of ``split`` of the dataset that a ``data:`` section describes (the first ``limit`` if > 0).

    ``section`` holds ``name`` and the dataset's parameters; the section's own keys
    (``train_split``, ``limit_test``, ... see :class:`crackseg.config.run_config.DataSplits`) are ignored.
    """
    params = {k: v for k, v in section.items() if k not in DATA_KEYS}
    samples = create_dataset(str(section["name"]), **params).samples(split)
    return samples[:limit] if limit else samples


def train_samples(section: Mapping[str, Any]) -> list[Sample]:
    """The training samples of a resolved ``data:`` section (``train_split``, ``limit_train``)."""
    return load_samples(section, section.get("train_split", "train"), int(section.get("limit_train") or 0))


def test_samples(section: Mapping[str, Any]) -> list[Sample]:
    """The test samples of a resolved ``data:`` section (``test_split``, ``limit_test``)."""
    return load_samples(section, section.get("test_split", "test"), int(section.get("limit_test") or 0))
