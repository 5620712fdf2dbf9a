"""crackseg_ridge.filters: agreement with scikit-image's ridge filters and area opening, and the map's behaviour."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from crackseg_ridge import RidgeLabeler, RidgeParams, filters

METHODS = ("sato", "frangi", "meijering")
SIGMAS = (1.0, 2.0, 3.0)


@pytest.fixture(scope="module")
def skimage_filters():
    return pytest.importorskip("skimage.filters")


def dark_line_image(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Grey float32: a bright, slightly noisy, shaded surface with a dark 2-px oblique line."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.7 + 0.1 * xx / w + 0.02 * rng.standard_normal((h, w)).astype(np.float32)
    on_line = np.abs(yy - (0.4 * xx + 12)) <= 1.0
    img[on_line] -= 0.4
    return img.astype(np.float32), on_line


def agree(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """(max |diff| / range of ref, 99.9th percentile of |diff| / range, correlation)."""
    span = float(ref.max() - ref.min())
    assert span > 0
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64)) / span
    corr = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    return float(diff.max()), float(np.quantile(diff, 0.999)), corr


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("black_ridges", [True, False])
@pytest.mark.parametrize("image", ["line", "noise"])
def test_filters_agree_with_skimage(skimage_filters, method, black_ridges, image):
    if image == "line":
        img, _ = dark_line_image()
    else:
        img = np.random.default_rng(1).random((57, 71)).astype(np.float32)
    ref = getattr(skimage_filters, method)(img, sigmas=SIGMAS, black_ridges=black_ridges, mode="reflect")
    ours = getattr(filters, method)(img, SIGMAS, black_ridges=black_ridges)
    assert ours.shape == img.shape and ours.dtype == np.float32
    worst, p999, corr = agree(ours, ref)
    assert corr > 0.9999
    assert p999 <= 1e-3
    if method != "meijering":  # meijering's |v1| vs |v2| choice can flip at exact ties; the others are smooth
        assert worst <= 1e-3


def test_other_sigmas_and_frangi_parameters_agree(skimage_filters):
    img, _ = dark_line_image(50, 61, seed=3)
    for sigmas in [(0.7,), (1.5, 3.0), (2.0, 4.0, 6.0)]:
        for method in METHODS:
            ref = getattr(skimage_filters, method)(img, sigmas=sigmas, mode="reflect")
            _, p999, corr = agree(getattr(filters, method)(img, sigmas), ref)
            assert corr > 0.9999 and p999 <= 1e-3, (method, sigmas)
    ref = skimage_filters.frangi(img, sigmas=SIGMAS, beta=1.0, gamma=0.05, mode="reflect")
    worst, _, corr = agree(filters.frangi(img, SIGMAS, beta=1.0, gamma=0.05), ref)
    assert worst <= 1e-3 and corr > 0.9999
    ref = skimage_filters.meijering(img, sigmas=SIGMAS, alpha=-0.2, mode="reflect")
    _, p999, corr = agree(filters.meijering(img, SIGMAS, alpha=-0.2), ref)
    assert p999 <= 1e-3 and corr > 0.9999


def test_hessian_eigenvalues_match_skimage():
    feature = pytest.importorskip("skimage.feature")
    img, _ = dark_line_image()
    for sigma in (1.0, 2.5):
        h = feature.hessian_matrix(img, sigma, mode="reflect", use_gaussian_derivatives=True)
        ref1, ref2 = feature.hessian_matrix_eigvals(h)
        l1, l2 = filters.hessian_eigenvalues(img, sigma, normalise=False)
        assert np.all(l1 >= l2)
        for ours, ref in ((l1, ref1), (l2, ref2)):
            assert np.abs(ours - ref).max() <= 1e-3 * (ref.max() - ref.min())
        n1, n2 = filters.hessian_eigenvalues(img, sigma)  # scale-normalised: times sigma**2
        np.testing.assert_allclose(n1, sigma**2 * l1, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(n2, sigma**2 * l2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_dark_line_responds_on_the_line_only(method):
    img, on_line = dark_line_image()
    rgb = np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[:, :, None], 3, axis=2)
    soft = filters.ridge_response(rgb, method=method, sigmas=SIGMAS)
    assert soft.shape == img.shape and soft.dtype == np.float32
    assert 0.0 <= soft.min() and soft.max() <= 1.0
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    far = np.abs(yy - (0.4 * xx + 12)) > 8
    assert np.median(soft[on_line]) > 0.5
    assert np.median(soft[far]) < 0.1
    assert soft[on_line].mean() > 5 * soft[far].mean()
    # bright ridges: the dark line is no longer what responds
    bright = filters.ridge_response(rgb, method=method, sigmas=SIGMAS, black_ridges=False)
    assert np.median(bright[on_line]) < 0.1
    # ... and the same filter finds the line once the image is inverted
    inverted = filters.ridge_response(255 - rgb, method=method, sigmas=SIGMAS, black_ridges=False)
    assert np.median(inverted[on_line]) > 0.5


def test_ridge_response_grey_and_rgb_agree():
    img, _ = dark_line_image()
    u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    from_grey = filters.ridge_response(u8)
    from_rgb = filters.ridge_response(np.repeat(u8[:, :, None], 3, axis=2))
    np.testing.assert_allclose(from_grey, from_rgb, atol=1e-4)
    assert filters.to_gray(u8).max() <= 1.0
    np.testing.assert_allclose(filters.to_gray(u8), u8 / 255.0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_constant_image_gives_zeros_without_warnings(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for image in (np.full((40, 50, 3), 128, np.uint8), np.zeros((40, 50), np.float32)):
            soft = filters.ridge_response(image, method=method)
            assert soft.dtype == np.float32 and not np.isnan(soft).any()
            assert not soft.any()
        # a percentile that falls on zero response also gives zeros
        img, _ = dark_line_image()
        assert not filters.ridge_response(img, method=method, normalise_percentile=0).any()
        assert not filters.area_opening(np.zeros((20, 30), np.float32), 30).any()
        for how in ("percentile", "otsu", "hysteresis"):
            assert not filters.binarise(np.zeros((20, 30), np.float32), how).any()


def test_area_opening_equals_skimage_on_the_quantised_map():
    morphology = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(2)
    img, _ = dark_line_image(70, 90, seed=4)
    maps = [filters.ridge_response(img), filters.normalise(rng.random((45, 60)).astype(np.float32) ** 3, 100)]
    for soft in maps:
        for levels in (16, 64, 256):
            q = filters.quantise(soft, levels)
            assert q.max() <= levels - 1
            for min_area in (2, 10, 30):
                ref = morphology.area_opening(q, area_threshold=min_area, connectivity=2)
                ours = filters.area_opening(soft, min_area, levels)
                assert ours.dtype == np.float32
                np.testing.assert_array_equal(filters.quantise(ours, levels), ref)
                np.testing.assert_allclose(ours, ref / (levels - 1), atol=1e-6)
    # min_area <= 1 only quantises
    np.testing.assert_allclose(filters.area_opening(maps[0], 0, 64), filters.quantise(maps[0], 64) / 63, atol=1e-6)


def test_area_opening_removes_a_small_blob_and_keeps_a_long_line():
    soft = np.zeros((40, 60), np.float32)
    soft[5:8, 5:8] = 1.0  # 9 pixels
    soft[20, 5:55] = 0.8  # 50 pixels
    soft[30:32, 40:42] = 0.5  # 4 pixels
    soft[21, 30] = 1.0  # a peak on the line: 1 pixel at level 1.0, on a component of 51 at 0.8
    out = filters.area_opening(soft, min_area=30, levels=64)
    assert not out[5:8, 5:8].any() and not out[30:32, 40:42].any()
    assert np.all(np.abs(out[20, 5:55] - 0.8) <= 1 / 63)
    assert abs(out[21, 30] - out[20, 30]) <= 1e-6  # the peak is cut down to the line's level
    kept = filters.area_opening(soft, min_area=5, levels=64)
    assert kept[5:8, 5:8].min() == pytest.approx(1.0) and not kept[30:32, 40:42].any()
    # 8-connectivity: a diagonal chain is one component
    diag = np.zeros((30, 30), np.float32)
    diag[np.arange(25), np.arange(25)] = 1.0
    assert filters.area_opening(diag, min_area=20).max() == pytest.approx(1.0)
    assert not filters.area_opening(diag, min_area=26).any()


def test_binarise_methods():
    img, on_line = dark_line_image()
    soft = filters.ridge_response(img)
    for how, kwargs in [
        ("percentile", {"percentile": 90}),
        ("otsu", {}),
        ("hysteresis", {"low": 0.2, "high": 0.5}),
    ]:
        mask = filters.binarise(soft, how, **kwargs)
        assert mask.dtype == np.bool_ and mask.shape == soft.shape
        assert mask.any() and not mask.all()
        assert mask[on_line].mean() > 0.5  # the line is mostly found
    pct = filters.binarise(soft, "percentile", percentile=90)
    assert 0.05 <= pct.mean() <= 0.1 + 1e-9
    weak = soft > 0.2
    hyst = filters.binarise(soft, "hysteresis", low=0.2, high=0.5)
    assert not (hyst & ~weak).any()  # only weak pixels ...
    assert hyst[soft > 0.5].all()  # ... and every strong one
    assert filters.binarise(soft, "hysteresis", low=0.2, high=1.01).sum() == 0
    with pytest.raises(ValueError):
        filters.binarise(soft, "nope")
    with pytest.raises(ValueError):
        filters.ridge_response(img, method="nope")


def test_recommended_settings_run_and_find_the_line():
    img, on_line = dark_line_image(96, 120)
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    far = np.abs(yy - (0.4 * xx + 12)) > 20
    for gate in ("labels", "none"):
        soft = RidgeLabeler(RidgeParams(gate=gate)).soft_map(img)  # the labeler's defaults
        assert soft.shape == img.shape and soft.dtype == np.float32
        assert np.median(soft[on_line]) > 0.5 and np.median(soft[far]) < 0.1
