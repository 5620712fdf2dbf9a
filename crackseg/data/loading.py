"""The dataset a config's ``data:`` section describes, and its splits (optionally limited)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crackseg.base.errors import DataError
from crackseg.base.schema import build
from crackseg.config.run_config import DATA_KEYS
from crackseg.data.samples import CrackDataset, Sample
from crackseg.data.weak_labels import WeakLabels, WeakLabelsConfig, check_fits, from_mask, read_csv
from crackseg.plugins.blame import blamed
from crackseg.plugins.factory import create_from_section


def dataset_from_section(section: Mapping[str, Any]) -> CrackDataset:
    """The dataset of a ``data:`` section (``name`` and the dataset's parameters; its split keys are ignored)."""
    return create_from_section("datasets", section, own=DATA_KEYS)


def split_of(dataset: CrackDataset, split: str, limit: int = 0, name: str = "",
             weak_labels: Mapping[str, Any] | WeakLabelsConfig | None = None) -> list[Sample]:
    """The samples of ``split`` (the first ``limit`` when > 0), with the weak labels a ``data.weak_labels``
    section asks for; ``name``: the dataset's registered name, for blame."""
    with blamed("datasets", name or getattr(dataset, "name", "?"), "listing its splits"):
        samples = list(dataset.samples(split))
    samples = samples[:limit] if limit > 0 else samples
    if weak_labels is None:
        return samples
    config = weak_labels if isinstance(weak_labels, WeakLabelsConfig) else build(
        WeakLabelsConfig, dict(weak_labels), "data.weak_labels")
    known = None
    if config.source == "csv":  # a CSV lists the whole data set's images, not one split's
        with blamed("datasets", name or getattr(dataset, "name", "?"), "listing its splits"):
            known = {s.stem for split_name in dataset.splits() for s in dataset.samples(split_name)}
    return with_weak_labels(samples, config, known)


def load_samples(section: Mapping[str, Any], split: str, limit: int = 0) -> list[Sample]:
    """The samples of ``split`` of the dataset that a ``data:`` section describes (the first ``limit`` if > 0).

    ``section`` holds ``name`` and the dataset's parameters; the section's own keys
    (``train_split``, ``limit_test``, ... see :class:`crackseg.config.run_config.DataSplits`) are ignored.
    """
    return split_of(dataset_from_section(section), split, limit, str(section["name"]), section.get("weak_labels"))


def train_samples(section: Mapping[str, Any]) -> list[Sample]:
    """The training samples of a resolved ``data:`` section (``train_split``, ``limit_train``)."""
    return load_samples(section, section.get("train_split", "train"), int(section.get("limit_train") or 0))


def test_samples(section: Mapping[str, Any]) -> list[Sample]:
    """The test samples of a resolved ``data:`` section (``test_split``, ``limit_test``)."""
    return load_samples(section, section.get("test_split", "test"), int(section.get("limit_test") or 0))


# -- weak labels ------------------------------------------------------------------------------------------
def with_weak_labels(samples: Sequence[Sample], config: WeakLabelsConfig,
                     known_stems: set[str] | None = None) -> list[Sample]:
    """``samples`` carrying the weak labels ``config`` (``data.weak_labels``) asks for.

    ``csv``: every stem of the file must be an image of the data set (``known_stems``; by default the stems of
    ``samples``), checked here, before any work: a stem with no image is one line naming the file and line; a
    patch outside its image is found when that sample's labels are first read.
    """
    if config.source == "auto":
        return list(samples)
    if config.source == "none":
        return [dataclasses.replace(s, load_weak_labels=None) for s in samples]
    if config.source == "masks":
        return [dataclasses.replace(s, load_weak_labels=_from_mask(s, config)) for s in samples]
    if not config.path:
        raise DataError("data.weak_labels.source is csv but data.weak_labels.path names no file")
    table = read_csv(config.path)
    stems = known_stems if known_stems is not None else {s.stem for s in samples}
    unknown = [stem for stem in table if stem not in stems]
    if unknown:
        first = min(table[unknown[0]][1].values(), default=0)
        more = f" ({len(unknown)} such stems)" if len(unknown) > 1 else ""
        raise DataError(f"{config.path}: line {first}: image {unknown[0]!r} is not in the data set{more} "
                        f"(stems are file names without their extension)")
    return [dataclasses.replace(s, load_weak_labels=_from_csv(s, table[s.stem][0], table[s.stem][1]))
            if s.stem in table else dataclasses.replace(s, load_weak_labels=None) for s in samples]


def _from_mask(sample: Sample, config: WeakLabelsConfig) -> Callable[[], WeakLabels]:
    # computed once per sample: the label cache key and the labeler both ask (a mask read each time otherwise)
    @functools.cache
    def load() -> WeakLabels:
        return from_mask(sample.mask(), config.patch_size, config.min_crack_pixels)

    return load


def _from_csv(sample: Sample, labels: WeakLabels, lines: dict[str, int]) -> Callable[[], WeakLabels]:
    # checked once per sample against its image's size (an image decoded each time otherwise)
    @functools.cache
    def load() -> WeakLabels:
        if not labels.patches:
            return labels
        h, w = sample.load_image().shape[:2]
        return check_fits(labels, lines, h, w, sample.stem)

    return load
