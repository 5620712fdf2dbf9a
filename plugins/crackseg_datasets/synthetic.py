"""The ``synthetic`` dataset: procedural road/concrete photos with exact crack masks.

Each image is a pure function of ``(seed, split, index, size, style,
crack_free_fraction)`` and is generated lazily, on the first ``load_image`` or
``load_mask`` of its sample; image and mask come from one generation (a small
LRU cache holds the pair), so they always agree.

How an image is made (numpy + OpenCV, a few milliseconds at 128x128):

1. **Surface.** Asphalt: dark grey with multi-scale (fBm) mottling, bright and
   dark aggregate speckle and fine grain. Concrete: lighter, cloudy mottling,
   fine grain and small dark pores.
2. **Stains** (about half the images): dark irregular blobs and drips, oil-like.
   They are *not* cracks — a model must learn shape, not darkness.
3. **Cracks** (all but ``crack_free_fraction`` of the images): 1–3 random-walk
   polylines with persistent direction, small kinks and jagged vertices, 0–3
   thinner branches each, widths of 1–4 px varying along the crack and tapering
   at the ends. They are drawn at 4x resolution and averaged down: the coverage
   darkens the surface by a random, often small, factor (low contrast), and the
   mask is exactly the pixels at least half covered.
4. **Light.** An illumination gradient and vignette, soft cast shadows (a
   wavy-edged half-plane, sometimes a pole's band), a colour tint, a slight
   blur, sensor noise and usually a JPEG round trip.

Each image also carries weak labels, as a user's photos would: crack / no crack for every 32-px
patch, derived from its exact mask (``sample.weak_labels()``; the ``gate: labels`` of the labelers
reads them).
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import crackseg
from crackseg import ConfigError, ListDataset, Sample

STYLES: tuple[str, ...] = ("pavement", "concrete")
#: the demo images' weak labels: crack / no crack per patch of this many pixels (a quarter of a 128-px image)
WEAK_PATCH = 32
_SUPERSAMPLE = 4
_GOLDEN = 0.6180339887498949


# -- dataset -------------------------------------------------------------------------


class SyntheticDataset(ListDataset):
    """Splits ``train``, ``test`` and ``all`` of generated samples (see the module docstring)."""

    def __init__(
        self,
        n_train: int = 48,
        n_test: int = 16,
        size: int = 128,
        height: int | None = None,
        width: int | None = None,
        seed: int = 0,
        style: str = "mixed",
        crack_free_fraction: float = 0.15,
    ) -> None:
        h, w = _check_params(n_train, n_test, size, height, width, style, crack_free_fraction)
        self.height, self.width, self.seed, self.style = h, w, seed, style
        self.crack_free_fraction = crack_free_fraction
        self.name = f"synthetic(seed={seed}, style={style}, {w}x{h})"
        #: read by the pipeline: metrics.json notes and tables say the numbers are on generated images
        self.note = "synthetic data"
        splits = {
            "train": [self._sample("train", i) for i in range(n_train)],
            "test": [self._sample("test", i) for i in range(n_test)],
        }
        splits["all"] = splits["train"] + splits["test"]
        super().__init__(self.name, splits)

    def _sample(self, split: str, index: int) -> Sample:
        key = (self.seed, split, index, self.height, self.width, self.style, self.crack_free_fraction)
        stem = f"{split}_{index:04d}"
        return Sample(
            stem=stem,
            load_image=_SynthLoader(key, 0),
            load_mask=_SynthLoader(key, 1),
            source=f"{self.name}:{stem}",
            load_weak_labels=_SynthWeakLabels(key),
        )


def _check_params(
    n_train: int, n_test: int, size: int, height: int | None, width: int | None, style: str, fraction: float
) -> tuple[int, int]:
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ConfigError(f"synthetic: n_train ({n_train}) and n_test ({n_test}) must be >= 0, not both 0")
    h = size if height is None else height
    w = size if width is None else width
    for key, v in (("size", size), ("height", h), ("width", w)):
        if not 16 <= v <= 8192:
            raise ConfigError(f"config key {key!r}: {v} pixels is out of range (16 to 8192)")
    if style not in (*STYLES, "mixed"):
        raise ConfigError(f"config key 'style': {style!r} is not one of 'pavement', 'concrete', 'mixed'")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"config key 'crack_free_fraction': {fraction!r} must be between 0 and 1")
    return h, w


class _SynthLoader:
    """Picklable ``load_image`` (part 0) / ``load_mask`` (part 1) of one synthetic sample."""

    def __init__(self, key: tuple, part: int) -> None:
        self.key, self.part = key, part

    def __call__(self) -> np.ndarray:
        return _CACHE.get(self.key)[self.part].copy()


class _SynthWeakLabels:
    """Picklable ``load_weak_labels``: patch labels of :data:`WEAK_PATCH` pixels from the exact mask (what a
    user of such photos would have marked: crack / no crack per patch)."""

    def __init__(self, key: tuple) -> None:
        self.key = key

    def __call__(self) -> crackseg.WeakLabels:
        mask = _CACHE.get(self.key)[1]
        return crackseg.weak_labels_from_mask(mask, WEAK_PATCH, source=f"synthetic, {WEAK_PATCH}-px patches")


class _PairCache:
    """A small LRU cache of generated (image, mask) pairs, bounded in bytes, thread-safe."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        pair = generate(*key)
        size = pair[0].nbytes + pair[1].nbytes
        with self._lock:
            if key not in self._items:
                self._items[key] = pair
                self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (img, mask) = self._items.popitem(last=False)
                self._bytes -= img.nbytes + mask.nbytes
        return pair

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_CACHE = _PairCache()


def generate(
    seed: int,
    split: str,
    index: int,
    height: int = 128,
    width: int = 128,
    style: str = "mixed",
    crack_free_fraction: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic sample: ``uint8 [H,W,3]`` RGB image and ``bool [H,W]`` crack mask.

    Crack-free images are spread evenly over the indices (a golden-ratio
    sequence), so any run of indices holds about ``crack_free_fraction`` of them.
    """
    split_code = zlib.crc32(split.encode("utf-8"))
    base = np.random.SeedSequence([seed % (1 << 63), split_code])
    offset = base.generate_state(1)[0] / 2.0**32
    crack_free = (index * _GOLDEN + offset) % 1.0 < crack_free_fraction
    rng = np.random.default_rng(np.random.SeedSequence([seed % (1 << 63), split_code, index]))
    if style == "mixed":
        style = STYLES[int(rng.integers(len(STYLES)))]
    return render(rng, height, width, style, with_cracks=not crack_free)


# -- rendering -----------------------------------------------------------------------


def render(
    rng: np.random.Generator, height: int, width: int, style: str, with_cracks: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Render one image and its exact mask with random generator ``rng``."""
    h, w = height, width
    grey = _asphalt(rng, h, w) if style == "pavement" else _concrete(rng, h, w)
    if rng.random() < 0.55:
        _add_stains(rng, grey)
    mask = np.zeros((h, w), dtype=bool)
    if with_cracks:
        coverage = _crack_coverage(rng, h, w)
        mask = coverage >= 0.5
        _darken_cracks(rng, grey, coverage, style)
    grey *= _lighting(rng, h, w)
    rgb = _colourise(rng, grey, style)
    return _camera(rng, rgb), mask


def _noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth noise with about ``cells`` features across the longer side, unit-ish variance."""
    import cv2

    scale = cells / max(h, w)
    gh, gw = max(2, int(round(h * scale)) + 2), max(2, int(round(w * scale)) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _fbm(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Fractal (multi-octave) noise, normalised to zero mean and unit std."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        out += amp * _noise(rng, h, w, cells * 2**o)
        amp *= gain
    out -= out.mean()
    return out / (out.std() + 1e-6)


def _grain(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """White noise blurred by ``sigma`` px, unit std."""
    import cv2

    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / (n.std() + 1e-6)


def _asphalt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    g = np.full((h, w), rng.uniform(85, 140), np.float32)
    g += rng.uniform(3, 8) * _fbm(rng, h, w, rng.uniform(2, 4), 4, 0.55)
    g += rng.uniform(7, 15) * _grain(rng, h, w, rng.uniform(0.8, 1.4))  # packed aggregate
    stones = _grain(rng, h, w, rng.uniform(0.9, 1.5))
    g += np.clip(stones - rng.uniform(1.0, 1.5), 0, None) * rng.uniform(25, 45)  # light stones
    voids = _grain(rng, h, w, rng.uniform(0.6, 1.0))
    g -= np.clip(voids - 1.6, 0, None) * rng.uniform(25, 45)  # dark voids between stones
    g += rng.uniform(3, 6) * _grain(rng, h, w, 0.5)
    return g


def _concrete(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    g = np.full((h, w), rng.uniform(135, 195), np.float32)
    g += rng.uniform(6, 14) * _fbm(rng, h, w, rng.uniform(1.5, 3), 5, 0.6)
    g += rng.uniform(2, 4) * _grain(rng, h, w, 0.6)
    pores = _grain(rng, h, w, rng.uniform(0.6, 1.1))
    g -= np.clip(pores - rng.uniform(2.0, 2.6), 0, None) * rng.uniform(50, 90)
    return g


def _add_stains(rng: np.random.Generator, grey: np.ndarray) -> None:
    """Darken irregular blobs and a few drips in place (these are not cracks)."""
    import cv2

    h, w = grey.shape
    side = max(h, w)
    shade = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        blob = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(side * rng.uniform(0.05, 0.22)) + 1, int(side * rng.uniform(0.04, 0.16)) + 1)
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), max(axes) * 0.4)
        ragged = blob + 0.35 * _fbm(rng, h, w, rng.uniform(5, 10), 3, 0.6) * 0.5
        blob = np.clip((ragged - 0.4) * rng.uniform(2.0, 5.0), 0, 1)
        blob = cv2.GaussianBlur(blob, (0, 0), rng.uniform(0.8, 2.5))
        inner = np.clip(0.75 + 0.25 * _noise(rng, h, w, rng.uniform(8, 16)), 0.3, 1.0)
        shade = np.maximum(shade, blob * inner * rng.uniform(0.12, 0.4))
    for _ in range(int(rng.integers(0, 6))):
        drop = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(drop, centre, int(rng.integers(1, 4)), 1.0, -1)
        shade = np.maximum(shade, cv2.GaussianBlur(drop, (0, 0), 0.8) * rng.uniform(0.2, 0.5))
    grey *= 1.0 - shade


# -- cracks ----------------------------------------------------------------------------


def _crack_coverage(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Fraction of each pixel covered by crack (``float32 [H,W]`` in [0,1]); never empty."""
    import cv2

    s = _SUPERSAMPLE
    min_pixels = max(6, int(0.002 * h * w))
    for attempt in range(8):
        canvas = np.zeros((h * s, w * s), np.uint8)
        n_main = int(rng.choice([1, 1, 1, 2, 2, 3]))
        for _ in range(n_main):
            _main_crack(rng, canvas, h, w, centred=attempt >= 4)
        coverage = cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
        if int((coverage >= 0.5).sum()) >= min_pixels:
            return coverage
    return coverage  # pragma: no cover - 8 failures in a row do not happen in practice


def _main_crack(rng: np.random.Generator, canvas: np.ndarray, h: int, w: int, centred: bool) -> None:
    side = max(h, w)
    if centred:
        x0, y0 = w / 2 + rng.normal(0, w / 10), h / 2 + rng.normal(0, h / 10)
    else:
        x0, y0 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    if rng.random() < 0.6:  # longitudinal / transverse cracks dominate on roads
        theta = float(rng.choice([0.0, math.pi / 2])) + rng.normal(0, 0.3)
    else:
        theta = rng.uniform(0, math.pi)
    length = rng.uniform(0.5, 1.4) * side
    step = max(1.0, side / 48)
    wiggle = rng.uniform(0.06, 0.25)
    fwd = _walk(rng, x0, y0, theta, length / 2, step, wiggle)
    back = _walk(rng, x0, y0, theta + math.pi, length / 2, step, wiggle)
    pts = np.concatenate([back[::-1], fwd[1:]])
    width = rng.uniform(1.0, 3.4)
    widths = _width_profile(rng, len(pts), width, taper_start=True)
    _draw(canvas, pts, widths)
    _branches(rng, canvas, pts, widths, length, step, wiggle, depth=0)


def _walk(
    rng: np.random.Generator, x: float, y: float, theta: float, length: float, step: float, wiggle: float
) -> np.ndarray:
    """A persistent random walk: heading drifts, returns towards ``theta``, kinks now and then."""
    n = max(2, int(length / step))
    pts = np.empty((n + 1, 2), np.float64)
    pts[0] = (x, y)
    heading = theta
    for i in range(1, n + 1):
        heading += rng.normal(0, wiggle) - 0.08 * (heading - theta)
        if rng.random() < 0.04:
            heading += rng.choice([-1, 1]) * rng.uniform(0.3, 0.8)
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        pts[i] = (x, y)
    pts[1:] += rng.normal(0, 0.3, size=(n, 2))  # jagged edges of the fracture
    return pts


def _width_profile(rng: np.random.Generator, n: int, width: float, taper_start: bool) -> np.ndarray:
    """Widths along a path: slow variation around ``width``, tapering at the end(s)."""
    knots = max(2, n // 5)
    vary = np.interp(np.arange(n), np.linspace(0, n - 1, knots), rng.uniform(0.6, 1.35, knots))
    t = np.arange(n, dtype=np.float64)
    taper_n = max(2.0, n * 0.15)
    taper = np.minimum(1.0, (n - 1 - t) / taper_n + 0.25)
    if taper_start:
        taper = np.minimum(taper, t / taper_n + 0.25)
    return np.clip(width * vary * taper, 0.4, 4.0)


def _draw(canvas: np.ndarray, pts: np.ndarray, widths: np.ndarray) -> None:
    import cv2

    s = _SUPERSAMPLE
    p = np.round(pts * s).astype(np.int64)
    lim = 1 << 20
    p = np.clip(p, -lim, lim)
    for i in range(len(p) - 1):
        t = max(1, int(round(s * 0.5 * (widths[i] + widths[i + 1]))))
        cv2.line(canvas, (int(p[i, 0]), int(p[i, 1])), (int(p[i + 1, 0]), int(p[i + 1, 1])), 255, t, cv2.LINE_8)


def _branches(
    rng: np.random.Generator,
    canvas: np.ndarray,
    pts: np.ndarray,
    widths: np.ndarray,
    length: float,
    step: float,
    wiggle: float,
    depth: int,
) -> None:
    n_branch = int(rng.poisson(1.3 if depth == 0 else 0.5))
    for _ in range(min(n_branch, 3)):
        if len(pts) < 8:
            return
        k = int(rng.integers(len(pts) // 8, len(pts) - len(pts) // 8))
        d = pts[min(k + 1, len(pts) - 1)] - pts[max(k - 1, 0)]
        heading = math.atan2(d[1], d[0]) + rng.choice([-1, 1]) * rng.uniform(0.35, 1.2)
        b_len = rng.uniform(0.15, 0.5) * length
        bpts = _walk(rng, pts[k, 0], pts[k, 1], heading, b_len, step, wiggle * 1.2)
        bw = _width_profile(rng, len(bpts), max(0.7, widths[k] * rng.uniform(0.5, 0.85)), taper_start=False)
        _draw(canvas, bpts, bw)
        if depth < 1:
            _branches(rng, canvas, bpts, bw, b_len, step, wiggle, depth + 1)


@dataclass
class DrawnCrack:
    """One crack drawn the way the generator draws them, with its true geometry.

    ``mask`` is ``H×W`` bool; ``points`` the polyline (x, y) in pixels; ``width`` its constant width (px).
    """

    mask: np.ndarray
    points: np.ndarray
    width: float

    @property
    def length(self) -> float:
        """The polyline's length in pixels."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


def draw_crack(seed: int, width: float, size: int = 256, length: float | None = None,
               theta: float | None = None) -> DrawnCrack:
    """Ground truth for measurements: one random-walk crack of constant ``width`` in a ``size²`` mask.

    The walk, the 4× supersampled drawing and the half-coverage mask are the generator's own
    (steps of ``size/48`` px, jagged vertices); only the width does not vary, so that the true
    length and width are known exactly. It stays inside the image.
    """
    import cv2

    rng = np.random.default_rng(seed)
    s = _SUPERSAMPLE
    for _ in range(100):
        heading = rng.uniform(0, math.pi) if theta is None else theta
        n_len = rng.uniform(0.35, 0.7) * size if length is None else length
        x0, y0 = rng.uniform(0.2, 0.8, 2) * size
        pts = _walk(rng, x0, y0, heading, n_len, max(1.0, size / 48), rng.uniform(0.05, 0.15))
        if pts.min() >= 4 + width and pts.max() <= size - 5 - width:
            break
    else:  # pragma: no cover - a 100-fold miss does not happen for lengths below the image size
        raise ValueError(f"could not fit a crack of length {n_len:.0f} in {size} px")
    canvas = np.zeros((size * s, size * s), np.uint8)
    _draw(canvas, pts, np.full(len(pts), float(width)))
    coverage = cv2.resize(canvas.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    return DrawnCrack(mask=coverage >= 0.5, points=pts, width=float(width))


def _darken_cracks(rng: np.random.Generator, grey: np.ndarray, coverage: np.ndarray, style: str) -> None:
    """Darken the surface where it is cracked: a dark core, a faint halo, varying depth."""
    import cv2

    h, w = grey.shape
    lo, hi = (0.35, 0.75) if style == "pavement" else (0.3, 0.75)
    depth = rng.uniform(lo, hi) * np.clip(1.0 + 0.3 * _noise(rng, h, w, 4), 0.5, 1.4)
    depth *= np.clip(1.0 + 0.2 * _grain(rng, h, w, 0.7), 0.6, 1.3)
    halo = cv2.GaussianBlur(coverage, (0, 0), 0.7)
    shade = np.maximum(coverage, 0.6 * halo)
    grey *= 1.0 - np.clip(depth * shade, 0, 0.92)


# -- light and camera ----------------------------------------------------------------


def _lighting(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multiplicative light: gradient, vignette and soft cast shadows."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    side = float(max(h, w))
    xn, yn = (xs - w / 2) / side, (ys - h / 2) / side
    phi = rng.uniform(0, 2 * math.pi)
    gain = 1.0 + rng.uniform(0, 0.35) * (xn * math.cos(phi) + yn * math.sin(phi))
    gain -= rng.uniform(0, 0.35) * (xn**2 + yn**2)
    if rng.random() < 0.35:  # a wavy-edged shadow over part of the image
        a = rng.uniform(0, 2 * math.pi)
        d = (xn - rng.uniform(-0.3, 0.3)) * math.cos(a) + (yn - rng.uniform(-0.3, 0.3)) * math.sin(a)
        d = d * side + 0.04 * side * _noise(rng, h, w, 3)
        soft = rng.uniform(1.0, 6.0)
        gain *= 1.0 - rng.uniform(0.2, 0.5) * _sigmoid(d / soft)
    if rng.random() < 0.15:  # the band of a pole's shadow
        a = rng.uniform(0, 2 * math.pi)
        d = ((xn - rng.uniform(-0.3, 0.3)) * math.cos(a) + (yn - rng.uniform(-0.3, 0.3)) * math.sin(a)) * side
        half = rng.uniform(0.03, 0.08) * side
        strength, soft = rng.uniform(0.2, 0.45), rng.uniform(1.0, 3.0)
        gain *= 1.0 - strength * _sigmoid((half - np.abs(d)) / soft)
    return np.clip(gain, 0.2, 1.6).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip(-x, -40.0, 40.0)))


def _colourise(rng: np.random.Generator, grey: np.ndarray, style: str) -> np.ndarray:
    h, w = grey.shape
    tint = np.array([1.0, 1.0, 1.02] if style == "pavement" else [1.03, 1.0, 0.95], np.float32)
    tint = tint + rng.normal(0, 0.025, 3).astype(np.float32)
    rgb = grey[:, :, None] * tint[None, None, :]
    warm = rng.uniform(0, 4) * _noise(rng, h, w, 2)
    rgb[:, :, 0] += warm
    rgb[:, :, 2] -= warm
    return rgb


def _camera(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Optics and sensor: slight blur, noise, 8-bit quantisation, usually a JPEG round trip."""
    import cv2

    rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.35, 0.8))
    rgb += rng.normal(0, rng.uniform(1.0, 3.5), rgb.shape).astype(np.float32)
    img = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(img)


# -- preview ---------------------------------------------------------------------------


def save_contact_sheet(samples: list[Sample], path: str | Path, columns: int = 4) -> Path:
    """Write a PNG grid: each sample's image above it with the mask outlined in red."""
    import cv2

    from crackseg import write_png

    tiles = []
    for s in samples:
        img = s.load_image()
        over = img.copy()
        if s.has_mask:
            m = s.mask()
            over[m] = (0.4 * over[m] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        tiles.append(np.concatenate([img, over], axis=0))
    if not tiles:
        raise ConfigError("contact sheet: no samples")
    th, tw = tiles[0].shape[:2]
    tiles = [cv2.resize(t, (tw, th), interpolation=cv2.INTER_NEAREST) for t in tiles]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (th + 4), columns * (tw + 4), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (th + 4) : r * (th + 4) + th, c * (tw + 4) : c * (tw + 4) + tw] = t
    return write_png(path, sheet)
