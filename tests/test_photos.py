"""Photos as they are displayed (EXIF orientation) and big photos in bounded memory (issue 28, items 3 and 4)."""

from __future__ import annotations

import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

import crackseg
from conftest import channel_mean_onnx, run_main
from crackseg.base.errors import DataError
from crackseg.base.io import MAX_IMAGE_PIXELS, image_shape, read_gray, read_image, read_mask, write_png
from crackseg.base.maps import crack_mask
from crackseg.base.overlays import overlay
from crackseg.prediction import one_image
from crackseg.prediction.windows import WindowPredictor, postprocess

#: what each EXIF orientation does to the stored pixels to display them (the EXIF / TIFF specification)
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _stored(h: int = 24, w: int = 40) -> np.ndarray:
    """An RGB picture of 8x8 blocks in distinct colours (JPEG keeps it nearly exactly): every turn and mirror shows."""
    ys, xs = np.mgrid[0:h, 0:w] // 8
    return np.stack([ys * 60 % 256, xs * 45 % 256, (ys * 5 + xs * 3) * 17 % 256], axis=-1).astype(np.uint8)


def _save(path: Path, arr: np.ndarray, orientation: int, **kw) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif, **kw)
    return path


# -- EXIF orientation -------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_every_orientation_reads_as_displayed(tmp_path, orientation, suffix):
    stored = _stored()
    options = {".webp": {"lossless": True}, ".jpg": {"quality": 95, "subsampling": 0}}.get(suffix, {})
    path = _save(tmp_path / f"photo{suffix}", stored, orientation, **options)
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    want = DISPLAYED[orientation](stored)
    assert got.shape == shown.shape == want.shape
    if suffix == ".jpg":  # lossy: OpenCV's and PIL's decoders may differ by a level or two; a wrong turn by ~50
        assert np.abs(got.astype(int) - shown).max() <= 3 and np.abs(got.astype(int) - want).mean() <= 8
    else:
        assert np.array_equal(got, shown) and np.array_equal(got, want)
    assert image_shape(path) == want.shape[:2]
    assert read_gray(path).shape == want.shape[:2]
    if orientation in (5, 6, 7, 8):
        assert got.shape[:2] == (40, 24)  # stored 40 wide, displayed 24 wide


@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_tiff_orientation_tag_applied_once(tmp_path, orientation):
    """OpenCV's TIFF decoder turns by the tag itself (unlike its JPEG/PNG decoders): the photo must not turn twice."""
    stored = _stored()
    path = tmp_path / "scan.tif"
    Image.fromarray(stored).save(path, tiffinfo={0x0112: orientation}, compression="tiff_lzw")
    want = DISPLAYED[orientation](stored)
    assert np.array_equal(read_image(path), want)
    assert image_shape(path) == want.shape[:2]


def test_orientation_keeps_16_bit_rgba_and_palette_handling(tmp_path):
    stored = _stored()
    grey16 = stored[..., 0].astype(np.uint16) * 257 + 3
    _save(tmp_path / "deep.png", grey16, 6)
    want = np.repeat(DISPLAYED[6]((grey16.astype(np.uint32) * 255 // 65535).astype(np.uint8))[..., None], 3, axis=2)
    assert np.array_equal(read_image(tmp_path / "deep.png"), want)

    rgba = np.dstack([stored, np.full(stored.shape[:2], 200, np.uint8)])
    _save(tmp_path / "alpha.png", rgba, 8)
    assert np.array_equal(read_image(tmp_path / "alpha.png"), DISPLAYED[8](stored))

    pal = Image.fromarray(stored).quantize(colors=16)
    exif = Image.Exif()
    exif[0x0112] = 3
    pal.save(tmp_path / "pal.png", exif=exif)
    want = DISPLAYED[3](np.asarray(pal.convert("RGB")))
    assert np.array_equal(read_image(tmp_path / "pal.png"), want)


def test_masks_turn_with_their_orientation(tmp_path):
    mask = np.zeros((24, 40), np.uint8)
    mask[2, 5:30] = 255
    _save(tmp_path / "m.png", mask, 6)
    got = read_mask(tmp_path / "m.png", (40, 24))
    assert np.array_equal(got, DISPLAYED[6](mask > 127))
    with pytest.raises(DataError, match="mask is 24x40 but its image is 40x24"):
        read_mask(tmp_path / "m.png", (24, 40))  # the size as stored is no longer the mask's size


@pytest.mark.parametrize("exif", [b"Exif\x00\x00garbage that is not a TIFF header",
                                  b"Exif\x00\x00MM\x00*\xff\xff\xff\xff"])  # an IFD offset past the end
def test_broken_exif_is_ignored(tmp_path, exif):
    stored = _stored()
    path = tmp_path / "broken.jpg"
    Image.fromarray(stored).save(path, exif=exif)
    assert read_image(path).shape == stored.shape and image_shape(path) == stored.shape[:2]


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_an_orientation_outside_1_to_8_is_as_stored(tmp_path, value):
    path = _save(tmp_path / "odd.png", _stored(), value)
    assert np.array_equal(read_image(path), _stored())


def test_orientation_is_read_from_the_header_without_decoding(tmp_path, monkeypatch):
    """PNG's own ``getexif`` decodes the whole image to look for an eXIf chunk: the header is enough here."""
    path = _save(tmp_path / "tall.png", _stored(), 6)

    def no_decoding(self):
        raise AssertionError("pixels decoded to read a header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_shape(path) == (40, 24)


# -- very large images --------------------------------------------------------------------------------
def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header says ``w`` x ``h`` (pixels missing): enough for a header reader, no memory needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_a_108_mp_header_gives_no_pil_warning(tmp_path):
    path = _png_header_only(tmp_path / "ortho.png", 12000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_shape(path) == (9000, 12000)
    assert Image.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS == 1 << 30  # PIL's check set to crackseg's (OpenCV's) limit


@pytest.mark.parametrize("size", [(40000, 30000), (70000, 70000)])  # over the limit; over twice PIL's limit
def test_an_image_over_the_limit_is_one_line_naming_it(tmp_path, size):
    path = _png_header_only(tmp_path / "huge.png", *size)
    with pytest.raises(DataError) as exc:
        read_image(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: image is ") and "over the limit of 1074 MP" in msg and "\n" not in msg
    assert "OPENCV_IO_MAX_IMAGE_PIXELS" in msg


def test_the_limit_follows_opencvs_environment_variable(tmp_path):
    """OPENCV_IO_MAX_IMAGE_PIXELS sets OpenCV's decode limit and crackseg's alike, read at start-up."""
    import os
    import subprocess
    import sys

    assert cv2.imwrite(str(tmp_path / "a.png"), np.zeros((100, 100, 3), np.uint8))
    assert cv2.imwrite(str(tmp_path / "a.hdr"), np.zeros((100, 100, 3), np.float32))  # a format PIL cannot open
    code = ("import sys\nfrom crackseg.base.io import read_image\nfor f in sys.argv[1:]:\n"
            "    try:\n        read_image(f)\n    except Exception as e:\n        print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.png"), str(tmp_path / "a.hdr")],
                       env={**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "5000"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the PNG is refused from its header (PIL's), the HDR file by OpenCV's decoder: one line either way
    how = "for one image (split it into tiles, or raise the limit with the environment variable " \
          "OPENCV_IO_MAX_IMAGE_PIXELS)"
    assert r.stdout.splitlines() == [
        f"DataError {tmp_path / 'a.png'}: image is 100x100, 0.01 MP, over the limit of 0.005 MP {how}",
        f"DataError {tmp_path / 'a.hdr'}: image is too large, over the limit of 0.005 MP {how}"]


# -- bounded memory, same values -------------------------------------------------------------------------
class Fake(WindowPredictor):
    """A deterministic numpy "model" whose output depends on each window's content and position."""

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        b = batch.astype(np.float32)
        return (np.sin(b[..., 0] / 23.0) * 0.45 + b[..., 1] / 600.0 + 0.2).astype(np.float32)


def _reference_tiled(p: WindowPredictor, image: np.ndarray) -> np.ndarray:
    """The blend as one full-size accumulator computes it (the code before the band)."""
    s = p.size
    h, w = image.shape[:2]
    img = cv2.copyMakeBorder(image, 0, max(0, s - h), 0, max(0, s - w), cv2.BORDER_REFLECT_101)
    ys, xs = p._tile_starts(img.shape[:2])
    weight = np.maximum(np.outer(*(2 * [np.hanning(s + 2)[1:-1].astype(np.float32)])), 1e-3)
    acc = np.zeros(img.shape[:2], np.float32)
    norm = np.zeros(img.shape[:2], np.float32)
    coords = [(y, x) for y in ys for x in xs]
    for i in range(0, len(coords), p.batch_size):
        chunk = coords[i : i + p.batch_size]
        for (y, x), q in zip(chunk, p.forward_batch(np.stack([img[y : y + s, x : x + s] for y, x in chunk]))):
            acc[y : y + s, x : x + s] += q * weight
            norm[y : y + s, x : x + s] += weight
    return (acc / np.maximum(norm, 1e-8))[:h, :w]


def _reference_postprocess(prob: np.ndarray, erosion: int, minmax: bool) -> np.ndarray:
    p = prob.astype(np.float32)
    if minmax:
        lo, hi = float(p.min()), float(p.max())
        p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
    u8 = np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.erode(u8, np.ones((3, 3), np.uint8), iterations=erosion) if erosion else u8


@pytest.mark.parametrize("shape,size,batch,overlap", [((200, 300), 64, 4, 0.25), ((40, 30), 64, 3, 0.25),
                                                      ((150, 97), 48, 5, 0.5), ((101, 257), 32, 2, 0.0)])
def test_band_blending_is_bit_for_bit_the_full_size_blend(shape, size, batch, overlap):
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    p = Fake(size, batch, "tile", overlap)
    want = _reference_tiled(p, img)
    got = p.predict_many([img])[0]
    assert got.dtype == np.float32 and np.array_equal(got, want)
    for erosion, minmax in ((0, False), (1, False), (0, True), (3, True)):
        ref = _reference_postprocess(want, erosion, minmax)
        assert np.array_equal(postprocess(got, erosion, minmax), ref)
        assert np.array_equal(p.predict_uint8(img, erosion, minmax), ref), (erosion, minmax)


def test_resized_prediction_to_uint8_is_unchanged():
    img = np.random.default_rng(2).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    p = Fake(64, mode="resize")
    small = p.forward_batch(cv2.resize(img, (64, 64), interpolation=cv2.INTER_CUBIC)[None])[0]
    prob = np.clip(cv2.resize(small, (500, 300), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    assert np.array_equal(p.predict_many([img])[0], prob)
    for erosion, minmax in ((0, False), (2, True)):
        assert np.array_equal(p.predict_uint8(img, erosion, minmax), _reference_postprocess(prob, erosion, minmax))


def _peak_per_pixel(fn, pixels: int) -> float:
    """Peak bytes a pixel that ``fn()`` allocates (numpy's and OpenCV's arrays are traced) beyond what was held."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - base) / pixels
    finally:
        tracemalloc.stop()


def test_a_tiled_photo_goes_to_uint8_without_full_size_floats():
    h, w = 4096, 1536
    img = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    p = Fake(64, 4, "tile")
    assert _peak_per_pixel(lambda: p.predict_uint8(img), h * w) < 2.0  # the uint8 map (1) and a band
    assert _peak_per_pixel(lambda: p.predict_many([img]), h * w) < 6.0  # the float32 map (4) and a band
    prob = p.predict_many([img])[0]
    assert _peak_per_pixel(lambda: postprocess(prob, 1, True), h * w) < 2.0  # the uint8 map and row blocks


def test_overlay_in_place_draws_on_the_photo_without_a_copy():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (2400, 300, 3), dtype=np.uint8)
    mask, gt = rng.random((2400, 300)) > 0.5, rng.random((2400, 300)) > 0.5
    want = img.copy()
    want[mask] = (0.35 * want[mask] + 0.65 * np.array([255, 0, 0], np.float32)).astype(np.uint8)
    miss = gt & ~mask
    want[miss] = (0.35 * want[miss] + 0.65 * np.array([0, 120, 255], np.float32)).astype(np.uint8)
    copy = overlay(img, mask, gt)
    assert np.array_equal(copy, want) and not np.shares_memory(copy, img)
    mine = img.copy()
    assert _peak_per_pixel(lambda: overlay(mine, mask, gt, in_place=True), mask.size) < 0.5
    assert np.array_equal(mine, want)


def test_write_png_streams_the_same_file_as_encoding_in_memory(tmp_path, monkeypatch):
    img = np.random.default_rng(5).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    want = buf.tobytes()
    write_png(tmp_path / "a.png", img)
    write_png(tmp_path / "b.png", img.copy(), consume=True)
    write_png(tmp_path / "ünï.png", img)  # a name OpenCV may not open as given: encoded in memory
    assert ok and all((tmp_path / n).read_bytes() == want for n in ("a.png", "b.png", "ünï.png"))
    assert np.array_equal(read_image(tmp_path / "a.png"), img)
    mask = np.eye(30, 40, dtype=bool)
    write_png(tmp_path / "m.png", mask)
    assert (tmp_path / "m.png").read_bytes() == cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()

    with monkeypatch.context() as m:  # streamed: no encoded copy of the file in memory
        m.setattr(cv2, "imencode", lambda *a: pytest.fail("encoded in memory"))
        write_png(tmp_path / "d.png", img)
    assert (tmp_path / "d.png").read_bytes() == want

    def short(name, arr):  # a disk that fills as the file is written: OpenCV may not notice the lost end
        Path(name).write_bytes(want[:100])
        return True

    monkeypatch.setattr(cv2, "imwrite", short)
    write_png(tmp_path / "c.png", img)
    assert (tmp_path / "c.png").read_bytes() == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "d.png", "m.png", "ünï.png"]


def test_predict_one_logs_a_large_photo(tmp_path, monkeypatch):
    photo = tmp_path / "ortho.png"
    write_png(photo, np.random.default_rng(6).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    monkeypatch.setattr(one_image, "LARGE_PIXELS", 100_000)
    lines: list[str] = []
    for mode, line in (("tile", "ortho.png: 0.12 MP (400x300), predicting in 12 windows of 128x128"),
                       ("resize", "ortho.png: 0.12 MP (400x300), resized to 128x128 for the model (--mode tile keeps "
                                  "its detail)")):
        lines.clear()
        one_image.predict_one(Fake(128, mode=mode), photo, tmp_path / mode, {}, 0.5, log=lines.append)
        assert lines == [line]
    monkeypatch.setattr(one_image, "LARGE_PIXELS", 120_001)
    lines.clear()
    one_image.predict_one(Fake(128, mode="tile"), photo, tmp_path / "small", {}, 0.5, log=lines.append)
    assert lines == []


# -- end to end ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A bare checkpoint of a tiny backbone with random weights (what the maps look like does not matter here)."""
    torch = pytest.importorskip("torch")
    from crackseg.training.checkpoints import CHECKPOINT_FORMAT, model_state

    torch.manual_seed(0)
    params = {"base_channels": 4, "depth": 2}
    model = crackseg.create_backbone("oed", **params)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "kind": "segmentation", "model": model_state(model), "done": True,
                "backbone": {"name": "oed", "params": params}, "image_size": 32, "predict": {"threshold": 0.5}},
               path)
    return path


@pytest.mark.parametrize("mode", ["tile", "resize"])
def test_predict_writes_mask_and_overlay_as_the_photo_is_displayed(tiny_model, tmp_path, mode):
    stored = np.random.default_rng(7).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    phone = tmp_path / "phone"
    phone.mkdir()
    _save(phone / "portrait.png", stored, 6)  # stored 80 wide, displayed 48 wide
    Image.fromarray(np.ascontiguousarray(DISPLAYED[6](stored))).save(phone / "upright.png")  # no EXIF
    out = tmp_path / "pred"
    for threshold in (0.5, None):  # then at the map's median: random weights, some crack and some not
        if threshold is None:
            threshold = float(np.median(read_gray(out / "prob" / "portrait.png"))) / 255 - 0.005
        r = run_main("predict", str(tiny_model), str(phone), "--out", str(out), "--mode", mode,
                     "--threshold", f"{threshold:.6f}", "--device", "cpu", "-q")
        assert r.returncode == 0, r.stderr
    mask, prob = read_gray(out / "portrait.png"), read_gray(out / "prob" / "portrait.png")
    over = read_image(out / "overlay" / "portrait.png")
    assert mask.shape == prob.shape == over.shape[:2] == (80, 48)
    # the same pixels, once turned by their EXIF tag and once stored upright, give the same maps
    assert np.array_equal(prob, read_gray(out / "prob" / "upright.png"))
    assert np.array_equal(mask, read_gray(out / "upright.png"))
    assert np.array_equal(mask > 0, crack_mask(prob, float(f"{threshold:.6f}")))
    shown = DISPLAYED[6](stored)
    assert np.array_equal(over[mask == 0], shown[mask == 0])  # the overlay is drawn on the displayed photo
    assert mask.size * 0.2 < int((mask > 0).sum()) < mask.size * 0.8
    assert not np.array_equal(over[mask > 0], shown[mask > 0])


def test_a_mask_drawn_on_the_displayed_photo_is_accepted_by_a_folder_dataset(tmp_path):
    stored = _stored(48, 80)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _save(tmp_path / "images" / "phone.jpg", stored, 8)
    mask = np.zeros((80, 48), np.uint8)  # drawn on the photo as displayed: 48 wide, 80 high
    mask[10:70, 20] = 255
    write_png(tmp_path / "masks" / "phone.png", mask)
    sample = crackseg.create_dataset("folder", root=str(tmp_path)).samples("all")[0]
    assert sample.load_image().shape == (80, 48, 3)
    assert np.array_equal(sample.mask(), mask > 127)


@pytest.mark.parametrize("mode", ["resize", "tile"])
def test_the_script_api_gives_what_predict_writes(tmp_path, mode):
    """``inference_model`` (the script API) goes through the same lean path as ``crackseg predict``: its map is
    ``postprocess(predict_many(...))`` exactly, and its mask is that map cut at the model's threshold."""
    pytest.importorskip("onnxruntime")
    from crackseg.prediction.models import inference_model, init_model

    meta = {"image_size": 32, "predict": {"threshold": 0.4, "mode": mode, "erosion_iterations": 1}}
    model = init_model(channel_mean_onnx(tmp_path / "m.onnx", meta), "cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    got = inference_model(model, rgb)
    u8 = postprocess(model.predictor.predict_many([rgb])[0], 1, False)
    assert np.array_equal(got.prob, u8.astype(np.float32) / 255.0)
    assert np.array_equal(got.mask, crack_mask(u8, 0.4)) and got.mask.any() and not got.mask.all()
