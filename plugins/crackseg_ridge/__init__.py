"""crackseg's training-free labeler ``ridge``: cracks as dark (or bright) ridges of the image's grey levels.

Nothing is trained and no pretrained network is needed: a multi-scale Hessian ridge measure (Sato,
Frangi or Meijering; :mod:`crackseg_ridge.filters`, separable Gaussian derivatives that agree with
scikit-image's filters) gives a crack map, normalised per image by a high percentile of its response;
a grey-level area opening removes speckle at every level of the map (so no threshold decides what is
speckle); where the image has weak labels (``data.weak_labels``, class folders), the map is zero in
its no-crack patches (``gate: labels``); the binary label is a percentile, Otsu or hysteresis cut.
Every parameter declares a ``crackseg tune`` range.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import crackseg
from crackseg import ConfigError, LabelContext, PseudoLabel, Sample


def tuned(default: Any, tune: Any, log: bool = False) -> Any:
    """A field with its default and the range (or choices) ``crackseg tune`` searches."""
    return field(default=default, metadata={"tune": tune, "log": log})


@dataclass
class RidgeParams:
    """Parameters of the ``ridge`` labeler.

    The defaults were chosen on training splits only (DeepCrack-train and CFD's training split, pseudo-label
    ODS; benchmarks/ridge_defaults.py for the map, benchmarks/ridge_binarise.py for the cut).
    """

    #: the ridge measure: sato (tubeness), frangi (vesselness), meijering (neuriteness)
    method: Literal["sato", "frangi", "meijering"] = tuned("sato", True)
    #: the narrowest and widest crack response, in pixels: the filter scales are σ = width / 2, ``scales``
    #: values evenly from one to the other (the defaults: σ = 3, 6, 9, 12)
    min_width: float = tuned(6.0, (2.0, 12.0))
    max_width: float = tuned(24.0, (8.0, 40.0))
    scales: int = tuned(4, (1, 6))
    #: cracks darker than their surface (photos of concrete and asphalt); bright = lighter (X-ray, inverted)
    ridges: Literal["dark", "bright"] = "dark"
    #: the map is divided by this percentile of the image's response (100 = its maximum)
    normalise_percentile: float = tuned(100.0, (98.0, 100.0))
    #: Gaussian smoothing (std, pixels) of the grey image first; 0 = none
    presmooth: float = tuned(0.0, (0.0, 2.0))
    #: background flattening: the grey image divided by its Gaussian blur of this std (pixels); 0 = none
    flatten: float = tuned(15.0, (0.0, 60.0))
    #: grey-level area opening: at every level, connected parts smaller than this (pixels) are removed; 0 = none
    min_area: int = tuned(60, (0, 300))
    #: grey levels of the opened map
    levels: int = tuned(32, [16, 32, 64, 128])
    #: zero the map in the image's no-crack patches when it has weak labels (labels), or never (none)
    gate: Literal["labels", "none"] = tuned("labels", True)
    #: binary label: above a percentile of the map, Otsu's threshold, or hysteresis (pixels above ``low``
    #: connected to one above ``high``); the default cut has the best binary F on the training splits
    #: (benchmarks/ridge_binarise.py)
    binarise: Literal["percentile", "otsu", "hysteresis"] = tuned("hysteresis", True)
    percentile: float = tuned(97.0, (80.0, 99.9))
    low: float = tuned(0.3, (0.02, 0.6))
    high: float = tuned(0.4, (0.1, 0.95))

    def sigmas(self) -> list[float]:
        """The filter scales: ``scales`` values of width / 2, evenly from ``min_width`` to ``max_width``."""
        lo, hi = self.min_width / 2.0, self.max_width / 2.0
        if self.scales == 1 or hi <= lo:
            return [round(lo, 4)]
        step = (hi - lo) / (self.scales - 1)
        return [round(lo + i * step, 4) for i in range(self.scales)]


def check_params(p: RidgeParams) -> None:
    """One ConfigError line for a value no image could use."""
    if not 0 < p.min_width <= p.max_width:
        raise ConfigError(f"labeler.min_width / max_width: need 0 < min_width <= max_width, got {p.min_width} / "
                          f"{p.max_width}")
    if p.scales < 1:
        raise ConfigError(f"labeler.scales must be >= 1, got {p.scales}")
    if not 0 < p.normalise_percentile <= 100 or not 0 <= p.percentile < 100:
        raise ConfigError("labeler.normalise_percentile must lie in (0, 100] and labeler.percentile in [0, 100)")
    if p.min_area < 0 or not 2 <= p.levels <= 256:
        raise ConfigError(f"labeler.min_area must be >= 0 and labeler.levels in 2..256, got {p.min_area} / {p.levels}")
    if not 0 <= p.low <= p.high <= 1:
        raise ConfigError(f"labeler.low / high: need 0 <= low <= high <= 1, got {p.low} / {p.high}")
    if p.presmooth < 0 or p.flatten < 0:
        raise ConfigError("labeler.presmooth and labeler.flatten must be >= 0")


class RidgeLabeler:
    """Training-free pseudo-labels from a multi-scale ridge filter (see the module docstring)."""

    name = "ridge"

    def __init__(self, params: RidgeParams) -> None:
        check_params(params)
        self.params = params

    def prepare(self, train: Sequence[Sample], context: LabelContext) -> None:
        """Nothing to train."""

    def soft_map(self, image: Any) -> Any:
        """The opened, normalised ridge map of an RGB image, float32 [H, W] in [0, 1] (no gate)."""
        from .filters import area_opening, ridge_response

        p = self.params
        soft = ridge_response(image, p.method, p.sigmas(), black_ridges=p.ridges == "dark",
                              normalise_percentile=p.normalise_percentile, presmooth=p.presmooth, flatten=p.flatten)
        if p.min_area > 1:
            soft = area_opening(soft, p.min_area, p.levels)
        return soft

    def to_label(self, soft: Any, region: Any = None) -> PseudoLabel:
        """The pseudo-label of a soft map, zero outside ``region`` (bool [H, W]) when given."""
        import numpy as np

        from .filters import binarise

        p = self.params
        if region is not None:
            soft = soft * region
        binary = binarise(soft, p.binarise, percentile=p.percentile, low=p.low, high=p.high)
        if region is not None:
            binary &= region
        return PseudoLabel(soft=np.clip(soft, 0.0, 1.0).astype(np.float32), binary=binary)

    def region(self, sample: Sample, shape: tuple[int, ...]) -> Any:
        """Where crack may be by the sample's weak labels (``gate: labels``), or None."""
        if self.params.gate != "labels":
            return None
        weak = sample.weak_labels()
        return weak.gate(shape[0], shape[1]) if weak is not None else None

    def label(self, samples: Sequence[Sample], context: LabelContext) -> list[PseudoLabel]:
        """The labels of ``samples``, in order; images are labelled in threads (OpenCV releases the GIL)."""
        if len(samples) < 2:
            return [self.label_one(s) for s in samples]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(samples), os.cpu_count() or 1, 4)) as pool:
            return list(pool.map(self.label_one, samples))

    def label_one(self, sample: Sample) -> PseudoLabel:
        image = sample.load_image()
        return self.to_label(self.soft_map(image), self.region(sample, image.shape))

    def fingerprint(self) -> str:
        blob = json.dumps({"labeler": "ridge", "params": asdict(self.params), "v": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@crackseg.hookimpl
def register_labelers(register: Any) -> None:
    register("ridge", _build_ridge, params=RidgeParams,
             description="training-free: multi-scale Hessian ridge filter, area opening, gated by weak labels")


def _build_ridge(**params: Any) -> RidgeLabeler:
    return RidgeLabeler(RidgeParams(**params))
