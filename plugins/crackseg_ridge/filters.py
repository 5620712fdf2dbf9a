"""Training-free multi-scale ridge (crack) filters: Sato, Frangi, Meijering, area opening, binarisation.

Pure algorithms on numpy arrays: numpy, scipy and cv2 only (scikit-image is never imported here; it is the
reference the tests compare against). Everything is float32.

Hessian
-------
:func:`hessian_eigenvalues` computes the Hessian exactly the way scikit-image 0.26's
``hessian_matrix(image, sigma, mode='reflect', use_gaussian_derivatives=True)`` does (the route its
``sato``/``frangi``/``meijering`` take): two *successive* first-order Gaussian-derivative filters of
standard deviation ``sigma / sqrt(2)``, each a separable filter with 'reflect' borders (``d c b a | a b c d``,
cv2's ``BORDER_REFLECT``)::

    g_r = D_r S_c I,   g_c = S_r D_c I
    H_rr = D_r S_c g_r,   H_rc = S_r D_c g_r,   H_cc = S_r D_c g_c

(``D``: Gaussian first-derivative kernel, ``S``: Gaussian smoothing kernel, subscript: the axis). Applying
the two first-derivative passes one after the other, each re-reflected at the border, rather than one
second-derivative kernel, is what makes the border pixels agree with scikit-image too. The speed comes from
cv2.sepFilter2D on float32 (5 separable filters per scale) and from shorter kernels: they are truncated at
5 standard deviations (scikit-image: 8, or 100 when sigma <= 1, i.e. 143-tap kernels at sigma = 1); the
Gaussian weight beyond 5 standard deviations is below 4e-6 of the peak, far below the agreement the tests ask.

The eigenvalues are returned sorted **by value**, ``l1 >= l2`` (scikit-image's ``hessian_matrix_eigvals``
order; :func:`frangi` re-sorts by magnitude as scikit-image's does). A dark line on a brighter background has
``l1 >> 0`` across it.

Filters (all agree with ``skimage.filters.sato/frangi/meijering(image, sigmas, ..., mode='reflect')`` on
float images to float32 rounding and the kernel truncation; ``tests/test_ridge_filters.py`` checks it):

* :func:`sato`: ``max_sigma sigma**2 * max(l1, 0)`` (2-D: the geometric mean of all eigenvalues but the
  lowest is just ``l1``).
* :func:`frangi`: Frangi's vesselness on the *unnormalised* Hessian (scikit-image does not multiply by
  ``sigma**2`` here), ``gamma`` (when None) = half the largest Hessian norm at the **first** sigma, reused for
  the others, exactly as scikit-image does. ``alpha`` has no effect on 2-D images (kept for the signature).
* :func:`meijering`: Meijering's neuriteness, each scale normalised to a maximum of 1 before the max over
  scales.

``black_ridges=True`` looks for dark ridges (cracks on a brighter surface); False for bright ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "METHODS",
    "to_gray",
    "hessian_eigenvalues",
    "sato",
    "frangi",
    "meijering",
    "ridge_response",
    "normalise",
    "flatten_background",
    "area_opening",
    "binarise",
]

#: Kernel truncation, in standard deviations of the sigma/sqrt(2) first-derivative filters.
_TRUNCATE = 5.0
#: A grey image whose range is at most this is flat: ridge_response returns zeros for it.
_FLAT = 1e-6
_BORDER = cv2.BORDER_REFLECT  # == scipy.ndimage mode='reflect' == scikit-image's ridge filters' default


# -- grey image ------------------------------------------------------------------------
def to_gray(image: np.ndarray) -> np.ndarray:
    """A contiguous float32 grey image in [0, 1] from RGB / RGBA / grey, uint8 / uint16 / float.

    Integer images are divided by their type's maximum (uint8: 255); floats are taken as they are.
    Colour uses the ITU-R BT.601 luminance weights (0.299 R + 0.587 G + 0.114 B, cv2's and PIL's "L"),
    computed in float32 (no rounding to uint8 first). Channel order is RGB (crackseg reads images as RGB).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected a grey [H, W] or RGB(A) [H, W, 3|4] image, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        scale = np.float32(1.0 / np.iinfo(arr.dtype).max)
        arr = arr.astype(np.float32) * scale
    else:
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.size == 0:
        return np.zeros(arr.shape[:2], np.float32)
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(arr)


def _as_float_image(gray: np.ndarray) -> np.ndarray:
    img = np.asarray(gray)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {img.shape} (use to_gray first)")
    return np.ascontiguousarray(img, dtype=np.float32)


def _sigmas(sigmas: float | Iterable[float]) -> list[float]:
    out = [float(sigmas)] if np.isscalar(sigmas) else [float(s) for s in sigmas]  # type: ignore[arg-type]
    if not out or any(not (s > 0 and math.isfinite(s)) for s in out):
        raise ValueError(f"sigmas must be positive and finite, got {sigmas!r}")
    return out


# -- Hessian ---------------------------------------------------------------------------
@lru_cache(maxsize=128)
def _kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(smoothing, first derivative) kernels of std sigma/sqrt(2) as cv2 correlation weights.

    The same weights as scipy.ndimage.gaussian_filter1d (normalised sampled Gaussian; derivative
    ``-x / s**2 * phi``), reversed because scipy convolves and cv2 correlates.
    """
    s = sigma / math.sqrt(2.0)
    radius = max(1, int(_TRUNCATE * s + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / (s * s))
    phi /= phi.sum()
    d1 = -x / (s * s) * phi
    smooth = np.ascontiguousarray(phi[::-1], dtype=np.float32)
    deriv = np.ascontiguousarray(d1[::-1], dtype=np.float32)
    smooth.setflags(write=False)
    deriv.setflags(write=False)
    return smooth, deriv


def _sep(img: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Separable correlation: ``kx`` along the columns axis (x, axis 1), ``ky`` along the rows (axis 0)."""
    return cv2.sepFilter2D(img, cv2.CV_32F, kx, ky, borderType=_BORDER)


def _hessian(img: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H_rr, H_rc, H_cc) of a contiguous float32 image, unnormalised (scikit-image's hessian_matrix)."""
    g, d = _kernels(sigma)
    g_r = _sep(img, g, d)  # d/drow: derivative along axis 0, smoothing along axis 1
    g_c = _sep(img, d, g)
    return _sep(g_r, g, d), _sep(g_r, d, g), _sep(g_c, d, g)


def _eigvals(h_rr: np.ndarray, h_rc: np.ndarray, h_cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of the symmetric 2x2 field, by value: (l1 >= l2). Overwrites nothing."""
    half_trace = (h_rr + h_cc) * np.float32(0.5)
    half_diff = (h_rr - h_cc) * np.float32(0.5)
    root = cv2.magnitude(h_rc, half_diff)  # sqrt(h_rc**2 + half_diff**2), float32
    return half_trace + root, half_trace - root


def hessian_eigenvalues(gray: np.ndarray, sigma: float, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The two eigenvalues ``(l1, l2)``, ``l1 >= l2`` (sorted by value), of the Hessian of ``gray`` at ``sigma``.

    ``gray``: a 2-D image (cast to float32). The Hessian is scikit-image 0.26's
    ``hessian_matrix(gray, sigma, mode='reflect', use_gaussian_derivatives=True)`` (see the module docstring),
    computed with separable float32 Gaussian-derivative filters. ``normalise=True`` multiplies it by
    ``sigma**2`` (the scale-normalised Hessian, comparable across scales, which :func:`sato` uses);
    ``normalise=False`` returns the plain Hessian's eigenvalues (what :func:`frangi` uses, as scikit-image).
    A dark line on a brighter background gives ``l1 > 0`` (and ``|l1| > |l2|``) on the line.
    """
    sigma = _sigmas(sigma)[0]
    l1, l2 = _eigvals(*_hessian(_as_float_image(gray), sigma))
    if normalise:
        s2 = np.float32(sigma * sigma)
        l1 *= s2
        l2 *= s2
    return l1, l2


def _oriented(gray: np.ndarray, black_ridges: bool) -> np.ndarray:
    """The image minus its mean (the Hessian ignores constants; a constant image becomes exactly 0, so every
    filter gives exactly 0 on it instead of normalised float rounding noise), negated for bright ridges."""
    img = _as_float_image(gray)
    mean = np.float32(img.mean(dtype=np.float64)) if img.size else np.float32(0)
    return img - mean if black_ridges else mean - img


# -- ridge measures ------------------------------------------------------------------------
def sato(gray: np.ndarray, sigmas: float | Iterable[float] = (1.0, 2.0, 3.0), black_ridges: bool = True) -> np.ndarray:
    """Sato's tubeness, max over ``sigmas``: ``sigma**2 * max(l1, 0)`` (= ``skimage.filters.sato``)."""
    img = _oriented(gray, black_ridges)
    out = np.zeros_like(img)
    for sigma in _sigmas(sigmas):
        l1, _ = _eigvals(*_hessian(img, sigma))
        l1 *= np.float32(sigma * sigma)
        np.maximum(out, l1, out=out)  # out >= 0 already: this is also the clip at 0
    return out


def frangi(
    gray: np.ndarray,
    sigmas: float | Iterable[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float | None = None,
) -> np.ndarray:
    """Frangi's vesselness, max over ``sigmas`` (= ``skimage.filters.frangi``).

    Per scale, with ``|a| <= |b|`` the eigenvalues of the plain (not scale-normalised) Hessian:
    ``exp(-(|a| / max(b, 1e-10))**2 / (2 beta**2)) * (1 - exp(-(a**2 + b**2) / (2 gamma**2)))``, which is 0
    where ``b <= 0`` (a ridge of the other polarity). ``gamma=None``: half the largest Hessian norm
    ``sqrt(a**2 + b**2)`` at the first sigma (1 if that is 0), reused for the other scales, as scikit-image
    does. ``alpha`` (plate-likeness) only matters in 3-D and is ignored; it is kept for the signature.
    """
    del alpha  # 2-D: scikit-image's plate factor is 1 - exp(-inf) = 1
    img = _oriented(gray, black_ridges)
    out = np.zeros_like(img)
    inv_2b2 = np.float32(1.0 / (2.0 * beta * beta))
    for sigma in _sigmas(sigmas):
        l1, l2 = _eigvals(*_hessian(img, sigma))
        swap = np.abs(l2) < np.abs(l1)  # scikit-image: stable argsort of |eigvals| (ties keep l1 first)
        small = np.where(swap, l2, l1)
        big = np.where(swap, l1, l2)
        s2 = l1 * l1
        s2 += l2 * l2
        if gamma is None:
            gamma = float(np.sqrt(s2.max())) / 2 if s2.size else 0.0
            if gamma == 0:
                gamma = 1.0
        r_b = np.abs(small)
        r_b /= np.maximum(big, np.float32(1e-10))
        np.minimum(r_b, np.float32(1e15), out=r_b)  # avoids float32 overflow in the square: exp() is 0 anyway
        r_b *= r_b
        r_b *= -inv_2b2
        vals = np.exp(r_b, out=r_b)
        s2 *= np.float32(-1.0 / (2.0 * gamma * gamma))
        structure = np.exp(s2, out=s2)
        np.subtract(np.float32(1.0), structure, out=structure)
        vals *= structure
        np.maximum(out, vals, out=out)
    return out


def meijering(
    gray: np.ndarray,
    sigmas: float | Iterable[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
    alpha: float | None = None,
) -> np.ndarray:
    """Meijering's neuriteness, max over ``sigmas`` (= ``skimage.filters.meijering``).

    Per scale: ``v1 = l1 + alpha l2``, ``v2 = l2 + alpha l1`` (``alpha`` default 1/3), the one of larger
    magnitude (``v1`` on ties), clipped at 0 and divided by its maximum over the image (when positive).
    """
    img = _oriented(gray, black_ridges)
    a = np.float32(1.0 / 3.0 if alpha is None else alpha)
    out = np.zeros_like(img)
    for sigma in _sigmas(sigmas):
        l1, l2 = _eigvals(*_hessian(img, sigma))
        v1 = l1 + a * l2
        v2 = l2 + a * l1
        v = np.where(np.abs(v2) > np.abs(v1), v2, v1)
        np.maximum(v, np.float32(0.0), out=v)
        top = float(v.max()) if v.size else 0.0
        if top > 0:
            v /= np.float32(top)
        np.maximum(out, v, out=out)
    return out


METHODS: dict[str, Callable[..., np.ndarray]] = {"sato": sato, "frangi": frangi, "meijering": meijering}


# -- the labeler's map -------------------------------------------------------------------
def normalise(response: np.ndarray, percentile: float = 99.9) -> np.ndarray:
    """``response / percentile(response)`` clipped to [0, 1], float32; all zeros when that percentile is not > 0.

    ``percentile=100`` divides by the maximum. NaN in ``response`` counts as 0.
    """
    resp = np.nan_to_num(np.asarray(response, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile!r}")
    if resp.size == 0:
        return resp.astype(np.float32)
    ref = float(np.percentile(resp, percentile))
    if not (math.isfinite(ref) and ref > 0):
        return np.zeros(resp.shape, np.float32)
    out = resp * np.float32(1.0 / ref)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def flatten_background(gray: np.ndarray, sigma: float, mode: str = "divide") -> np.ndarray:
    """Background flattening of a [0, 1] grey image with a large Gaussian blur of std ``sigma`` (pixels).

    ``mode='divide'``: ``gray / blur * mean(blur)`` (illumination and contrast normalisation: a crack's
    depth becomes relative to its local surface brightness); ``'subtract'``: ``gray - blur + mean(blur)``.
    ``sigma <= 0`` returns the image unchanged.
    """
    img = _as_float_image(gray)
    if sigma <= 0:
        return img
    bg = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
    mean = np.float32(bg.mean()) if bg.size else np.float32(0)
    if mode == "divide":
        return img / np.maximum(bg, np.float32(1e-3)) * mean
    if mode == "subtract":
        return img - bg + mean
    raise ValueError(f"unknown flatten mode {mode!r}: 'divide' or 'subtract'")


def ridge_response(
    image_rgb_or_gray: np.ndarray,
    method: str = "sato",
    sigmas: float | Iterable[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
    normalise_percentile: float = 99.9,
    presmooth: float = 0.0,
    flatten: float = 0.0,
) -> np.ndarray:
    """Training-free crack map in [0, 1] (float32) of an RGB or grey image.

    Grey conversion (:func:`to_gray`), optional Gaussian pre-smoothing of std ``presmooth`` and background
    flattening (:func:`flatten_background`, ``mode='divide'``, blur std ``flatten``), the ridge filter
    ``method`` (``sato``/``frangi``/``meijering``) at ``sigmas``, then :func:`normalise` by the
    ``normalise_percentile``-th percentile of the response. A constant image (grey range <= 1e-6), or one
    where that percentile of the response is 0, gives all zeros.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ridge method {method!r}; one of {sorted(METHODS)}")
    gray = to_gray(image_rgb_or_gray)
    if gray.size == 0 or float(gray.max()) - float(gray.min()) <= _FLAT:
        return np.zeros(gray.shape, np.float32)
    if presmooth > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), sigmaX=float(presmooth), borderType=cv2.BORDER_REFLECT)
    if flatten > 0:
        gray = flatten_background(gray, flatten, "divide")
    return normalise(METHODS[method](gray, sigmas, black_ridges=black_ridges), normalise_percentile)


# -- area opening ---------------------------------------------------------------------------
def quantise(soft: np.ndarray, levels: int = 64) -> np.ndarray:
    """A [0, 1] map as uint8 levels ``0 .. levels-1``: ``floor(v * (levels - 1) + 0.5)``, clipped."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must lie in 2..256, got {levels!r}")
    v = np.nan_to_num(np.asarray(soft, dtype=np.float32), nan=0.0)
    q = np.floor(v * np.float32(levels - 1) + np.float32(0.5))
    np.clip(q, 0, levels - 1, out=q)
    return q.astype(np.uint8)


def _area_opening_levels(q: np.ndarray, min_area: int) -> np.ndarray:
    """Area opening of a uint8 level map by threshold decomposition (8-connectivity).

    Result at a pixel = the number of levels ``k >= 1`` at which the pixel lies in a connected component of
    ``{q >= k}`` of at least ``min_area`` pixels (the kept sets are nested, so this is the highest such k).
    Each level is one cv2.connectedComponentsWithStats on the bounding box of ``{q >= k}``.
    """
    out = np.zeros(q.shape, np.uint8)
    top = int(q.max()) if q.size else 0
    rows = np.flatnonzero(q.max(axis=1)) if top else np.empty(0, np.intp)
    cols = np.flatnonzero(q.max(axis=0)) if top else np.empty(0, np.intp)
    for k in range(1, top + 1):
        # the support shrinks with k: crop to its bounding box
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sub = q[r0:r1, c0:c1]
        binary = (sub >= k).view(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = areas >= min_area
        keep[0] = False
        if keep[1:].all():
            out[r0:r1, c0:c1] += binary
        else:
            out[r0:r1, c0:c1] += keep.view(np.uint8).take(labels)
        if k < top:
            rows_mask = (sub > k).any(axis=1)
            cols_mask = (sub > k).any(axis=0)
            rows = r0 + np.flatnonzero(rows_mask)
            cols = c0 + np.flatnonzero(cols_mask)
    return out


def area_opening(soft: np.ndarray, min_area: int, levels: int = 64) -> np.ndarray:
    """Grey-level area opening of a [0, 1] map, float32 in [0, 1] on ``levels`` grey levels.

    The map is quantised (:func:`quantise`); then at every level ``k``, the 8-connected components of
    ``{q >= k}`` with fewer than ``min_area`` pixels are removed: the result is
    ``skimage.morphology.area_opening(q, area_threshold=min_area, connectivity=2) / (levels - 1)``
    (tested), computed by threshold decomposition with cv2's connected components. ``min_area <= 1`` only
    quantises.
    """
    q = quantise(soft, levels)
    if min_area > 1 and q.size:
        q = _area_opening_levels(q, int(min_area))
    return q.astype(np.float32) * np.float32(1.0 / (levels - 1))


# -- binarisation ----------------------------------------------------------------------------
def binarise(
    soft: np.ndarray,
    method: str = "percentile",
    percentile: float = 95.0,
    low: float = 0.1,
    high: float = 0.3,
) -> np.ndarray:
    """A bool crack mask from a [0, 1] map.

    * ``percentile``: ``soft > percentile-th percentile of soft`` (so at most ``100 - percentile`` % of the
      pixels; none when that percentile is the maximum).
    * ``otsu``: Otsu's threshold of the map quantised to 256 levels (cv2); ``soft`` above it. A constant map
      gives no crack.
    * ``hysteresis``: pixels ``> low`` in an 8-connected component of ``{soft > low}`` that has a pixel
      ``> high``.
    """
    v = np.nan_to_num(np.asarray(soft, dtype=np.float32), nan=0.0)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {v.shape}")
    if v.size == 0:
        return np.zeros(v.shape, bool)
    if method == "percentile":
        return v > np.float32(np.percentile(v, percentile))
    if method == "otsu":
        q = quantise(v, 256)
        if q.min() == q.max():
            return np.zeros(v.shape, bool)
        t, _ = cv2.threshold(q, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        return q > t
    if method == "hysteresis":
        if low > high:
            raise ValueError(f"hysteresis needs low <= high, got low={low} high={high}")
        weak = (v > np.float32(low)).view(np.uint8)
        strong = v > np.float32(high)
        if not strong.any():
            return np.zeros(v.shape, bool)
        n, labels = cv2.connectedComponents(weak, connectivity=8, ltype=cv2.CV_32S)
        keep = np.zeros(n, bool)
        keep[labels[strong]] = True
        keep[0] = False
        return keep[labels]
    raise ValueError(f"unknown binarise method {method!r}: 'percentile', 'otsu' or 'hysteresis'")
