"""imaging.py: every supported format decodes to an upright RGB uint8 array; bad input gives a clear error."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceledger import imaging, jpeg_fast
from faceledger.errors import FaceledgerError, ImageError, ImageTooLarge
from faceledger.imaging import decode, load_image, read_bytes


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Image.Image:
    """A small real RGB photo (244x204) to re-encode in every format."""
    with Image.open(data_dir / "open-faces" / "macron_2014.jpg") as image:
        return image.convert("RGB")


def _assert_rgb(rgb: np.ndarray, height: int, width: int) -> None:
    assert rgb.dtype == np.uint8
    assert rgb.shape == (height, width, 3)
    assert rgb.flags["C_CONTIGUOUS"]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "pil_format", "expected_format", "tolerance"),
    [
        (".jpg", "JPEG", "JPEG", 3.0),
        (".png", "PNG", "PNG", 0.0),
        (".webp", "WEBP", "WEBP", 4.0),
        (".bmp", "BMP", "BMP", 0.0),
        (".tif", "TIFF", "TIFF", 0.0),
        (".gif", "GIF", "GIF", 12.0),  # 256-colour palette
    ],
)
def test_formats_decode_to_rgb(tmp_path, photo, suffix, pil_format, expected_format, tolerance):
    path = tmp_path / f"photo{suffix}"
    photo.save(path, format=pil_format)
    loaded = load_image(path)
    _assert_rgb(loaded.rgb, photo.height, photo.width)
    assert loaded.format == expected_format
    assert (loaded.width, loaded.height) == photo.size
    assert loaded.name == str(path)
    assert _mean_abs_diff(loaded.rgb, np.asarray(photo)) <= tolerance


def test_pgm_greyscale(tmp_path, photo):
    path = tmp_path / "photo.pgm"
    grey = photo.convert("L")
    grey.save(path)
    loaded = load_image(path)
    _assert_rgb(loaded.rgb, photo.height, photo.width)
    assert loaded.format == "PPM"  # Pillow's name for the PBM/PGM/PPM family
    expected = np.asarray(grey)
    for channel in range(3):
        np.testing.assert_array_equal(loaded.rgb[:, :, channel], expected)


def test_animated_gif_gives_first_frame(tmp_path):
    red = Image.new("RGB", (40, 30), (255, 0, 0))
    blue = Image.new("RGB", (40, 30), (0, 0, 255))
    path = tmp_path / "animated.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    rgb = load_image(path).rgb
    _assert_rgb(rgb, 30, 40)
    assert tuple(rgb[15, 20]) == (255, 0, 0)
    assert (rgb == np.array([255, 0, 0], dtype=np.uint8)).all()


def test_multipage_tiff_gives_first_page(tmp_path):
    green = Image.new("RGB", (20, 10), (0, 200, 0))
    white = Image.new("RGB", (20, 10), (255, 255, 255))
    path = tmp_path / "pages.tif"
    green.save(path, save_all=True, append_images=[white])
    rgb = load_image(path).rgb
    assert (rgb == np.array([0, 200, 0], dtype=np.uint8)).all()


def test_bytes_source_and_sha256(tmp_path, data_dir):
    path = data_dir / "open-faces" / "macron_2014.jpg"
    data = path.read_bytes()
    from_path = load_image(path)
    from_bytes = load_image(data)
    assert from_path.sha256 == hashlib.sha256(data).hexdigest()
    assert from_bytes.sha256 == from_path.sha256
    assert from_bytes.name == "<upload>"
    assert load_image(data, name="probe.jpg").name == "probe.jpg"
    np.testing.assert_array_equal(from_bytes.rgb, from_path.rgb)


def test_a_large_upload_is_hashed_beside_its_decode(monkeypatch):
    monkeypatch.setattr(imaging, "THREADED_HASH_BYTES", 100_000)  # a 3 MB photo's path, on a smaller file
    noise = np.random.default_rng(7).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    assert len(data) >= imaging.THREADED_HASH_BYTES  # the threaded path
    threads = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (threads.append(self.name), real_start(self))[1])
    loaded = load_image(data, decode_side=300)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert threads == ["faceledger-sha256"]
    with pytest.raises(ImageError, match="corrupt or truncated"):  # a failed decode still joins the hash
        load_image(data[:200] + bytes(len(data) - 200))
    assert threads == ["faceledger-sha256"] * 2
    small = io.BytesIO()
    Image.fromarray(noise[:100, :100]).save(small, format="JPEG")
    assert load_image(small.getvalue()).sha256 == hashlib.sha256(small.getvalue()).hexdigest()
    assert threads == ["faceledger-sha256"] * 2  # hashed at once, no thread

    def no_thread(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", no_thread)  # a process out of threads still hashes
    assert load_image(data, decode_side=300).sha256 == hashlib.sha256(data).hexdigest()


# --- orientation and colour modes ---------------------------------------------------------------------


@pytest.fixture
def pillow_only(monkeypatch):
    """Decode as if simplejpeg were not installed: Pillow for every format."""
    def decode_with_pillow(data: bytes, **options):
        with monkeypatch.context() as patch:
            patch.setattr(jpeg_fast, "simplejpeg", None)
            return imaging.decode_scaled(data, **options)
    return decode_with_pillow


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_simplejpeg_path_gives_pillows_pixels_for_every_orientation_and_scale(orientation, pillow_only):
    assert jpeg_fast.simplejpeg is not None  # a dependency: the fast path is the one that runs
    noise = np.random.default_rng(orientation).integers(0, 256, (301, 403, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)  # subsampled chroma: upsampling matters
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    options = {"name": "x", "max_pixels": 10**8, "max_side": None, "max_aspect": None}
    for min_side in (None, 300, 150, 76, 40):
        fast = imaging.decode_scaled(buffer.getvalue(), min_side=min_side, **options)
        slow = pillow_only(buffer.getvalue(), min_side=min_side, **options)
        assert fast[1:] == slow[1:]  # format, upright size, scale
        assert fast[0].flags.c_contiguous
        np.testing.assert_array_equal(fast[0], slow[0])


def test_jpegs_simplejpeg_refuses_are_decoded_by_pillow_as_before(photo, pillow_only, monkeypatch):
    calls = []
    real = jpeg_fast.simplejpeg.decode_jpeg
    monkeypatch.setattr(jpeg_fast.simplejpeg, "decode_jpeg", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    options = {"name": "x", "max_pixels": 10**8, "max_side": None, "max_aspect": None, "min_side": None}
    grey, cmyk, truncated = (io.BytesIO() for _ in range(3))
    photo.convert("L").save(grey, format="JPEG")
    photo.convert("CMYK").save(cmyk, format="JPEG")
    photo.save(truncated, format="JPEG")
    for data in (grey.getvalue(), cmyk.getvalue()):  # not plain colour: Pillow only
        np.testing.assert_array_equal(imaging.decode_scaled(data, **options)[0], pillow_only(data, **options)[0])
    assert calls == []
    cut = truncated.getvalue()[: len(truncated.getvalue()) // 2]  # strict simplejpeg refuses; Pillow decides
    with pytest.raises(ImageError) as fast:
        imaging.decode_scaled(cut, **options)
    with pytest.raises(ImageError) as slow:
        pillow_only(cut, **options)
    assert calls == [1] and str(fast.value) == str(slow.value)


def test_exif_orientation_is_applied(tmp_path, photo):
    plain = tmp_path / "plain.jpg"
    rotated = tmp_path / "rotated.jpg"
    photo.save(plain, quality=95)
    exif = Image.Exif()
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise for display
    exif[0x0112] = 6
    photo.save(rotated, quality=95, exif=exif)

    upright = load_image(rotated).rgb
    assert upright.shape == (photo.width, photo.height, 3)  # width and height swapped
    reference = np.rot90(load_image(plain).rgb, k=-1)  # k=-1: clockwise
    assert _mean_abs_diff(upright, reference) < 1.0
    # and it is not merely transposed or rotated the other way
    assert _mean_abs_diff(upright, np.rot90(load_image(plain).rgb, k=1)) > 10.0


def test_greyscale_l_becomes_three_equal_channels(photo):
    buffer = io.BytesIO()
    photo.convert("L").save(buffer, format="PNG")
    rgb, fmt = decode(buffer.getvalue())
    assert fmt == "PNG"
    _assert_rgb(rgb, photo.height, photo.width)
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 1])
    np.testing.assert_array_equal(rgb[:, :, 1], rgb[:, :, 2])


def test_rgba_transparent_pixels_become_mid_grey():
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[:, :5] = (255, 0, 0, 255)  # opaque red on the left
    pixels[:, 5:] = (0, 255, 0, 0)  # fully transparent green on the right
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGBA").save(buffer, format="PNG")
    rgb, _ = decode(buffer.getvalue())
    _assert_rgb(rgb, 10, 10)
    assert (rgb[:, :5] == (255, 0, 0)).all()
    assert (rgb[:, 5:] == (128, 128, 128)).all()


def test_palette_image(photo):
    buffer = io.BytesIO()
    photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(buffer, format="PNG")
    rgb, _ = decode(buffer.getvalue())
    _assert_rgb(rgb, photo.height, photo.width)
    assert _mean_abs_diff(rgb, np.asarray(photo)) < 15.0


def test_palette_image_with_transparency():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 255, 255, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))  # left half: palette entry 1 (blue)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)  # entry 0 (white) is transparent
    rgb, _ = decode(buffer.getvalue())
    assert (rgb[:, :4] == (0, 0, 255)).all()
    assert (rgb[:, 4:] == (128, 128, 128)).all()


def test_16_bit_png():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    with Image.open(io.BytesIO(buffer.getvalue())) as check:
        assert check.mode.startswith("I")  # really a 16-bit image
    rgb, _ = decode(buffer.getvalue())
    _assert_rgb(rgb, 16, 64)
    row = rgb[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) >= 0).all()  # the ramp survives, no wrap-around
    np.testing.assert_allclose(row, ramp[0] / 257.0, atol=1.5)


def test_float_tiff_in_unit_range_is_not_black():
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (8, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp, mode="F").save(buffer, format="TIFF")
    rgb, _ = decode(buffer.getvalue())
    _assert_rgb(rgb, 8, 64)
    assert rgb[0, -1, 0] == 255 and rgb[0, 0, 0] == 0


def test_cmyk_jpeg(photo):
    buffer = io.BytesIO()
    photo.convert("CMYK").save(buffer, format="JPEG", quality=95)
    rgb, _ = decode(buffer.getvalue())
    _assert_rgb(rgb, photo.height, photo.width)
    assert _mean_abs_diff(rgb, np.asarray(photo)) < 6.0


# --- errors ---------------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(path)
    assert not isinstance(info.value, ImageTooLarge)
    assert "notes.jpg" in str(info.value)


def test_truncated_jpeg(data_dir):
    data = (data_dir / "open-faces" / "macron_2014.jpg").read_bytes()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2], name="half.jpg")


def test_unsupported_format(photo):
    buffer = io.BytesIO()
    photo.save(buffer, format="ICO")
    with pytest.raises(ImageError, match="not supported"):
        decode(buffer.getvalue())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; its pixel data is garbage, so decoding it would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"garbage")
        + chunk(b"IEND", b"")
    )


def test_huge_image_refused_from_header():
    data = _png_header_only(20000, 20000)
    assert len(data) < 100
    with pytest.raises(ImageTooLarge, match="pixel"):
        load_image(data, name="huge.png")


def test_pixel_limit_from_settings_is_checked_before_decoding():
    data = _png_header_only(3000, 2000)
    with pytest.raises(ImageTooLarge, match="3000x2000"):
        decode(data, max_pixels=1_000_000)
    # under the limit the (garbage) pixel data is decoded and found corrupt: the header check did not decode
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(data, max_pixels=10_000_000)


def test_file_over_max_bytes(tmp_path, data_dir):
    path = data_dir / "open-faces" / "macron_2014.jpg"
    with pytest.raises(ImageTooLarge, match="bytes"):
        load_image(path, max_bytes=1000)
    with pytest.raises(ImageTooLarge, match="bytes"):
        load_image(path.read_bytes(), max_bytes=1000)
    with pytest.raises(ImageTooLarge):
        read_bytes(path, max_bytes=1000)


def test_folder_path(tmp_path):
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nobody.jpg")


def test_errors_are_faceledger_errors():
    assert issubclass(ImageTooLarge, ImageError)
    assert issubclass(ImageError, FaceledgerError)


# --- reduced-scale pixels -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg(photo) -> bytes:
    """The photo upscaled to 2048x1712 (a size DCT scaling divides exactly by 8) as a quality-92 JPEG."""
    buffer = io.BytesIO()
    photo.resize((2048, 1712), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_a_jpeg_is_decoded_at_the_coarsest_dct_scale_that_serves_decode_side(big_jpeg):
    image = load_image(big_jpeg, decode_side=400)
    assert (image.width, image.height) == (2048, 1712)
    assert image.base_scale == 0.25 and image.base.shape == (428, 512, 3)  # 1/8 would be 256 < 400
    assert "rgb" not in image.__dict__


def test_reduced_is_a_whole_factor_box_reduction_of_the_kept_decode(big_jpeg):
    image = load_image(big_jpeg, decode_side=400)
    copy = image.reduced(300)
    assert copy.scale == 0.125 and copy.rgb.shape == (214, 256, 3)  # factor 2: 256 <= 300
    blocks = image.base[:428, :512].reshape(214, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.abs(copy.rgb - blocks).max() <= 1.0
    assert image.reduced(300) is copy  # made once
    assert image.reduced(5000).rgb is image.base  # no reduction asked: the decode itself


def test_binned_region_matches_from_a_reduced_decode_and_the_full_one(big_jpeg):
    """The pixels a face is refined and aligned from: the same whether the JPEG was decoded at 1/4 or
    fully, on the same image-wide grid."""
    small, full = load_image(big_jpeg, decode_side=400), load_image(big_jpeg, decode_side=5000)
    assert full.base_scale == 1.0
    box = (700.0, 530.0, 1450.0, 1390.0)
    for scale in (0.25, 0.125):
        a = small.binned_region(box, scale=scale, grid=32)
        b = full.binned_region(box, scale=scale, grid=32)
        assert (a.x0, a.y0, a.scale, a.rgb.shape) == (b.x0, b.y0, b.scale, b.rgb.shape)
        assert a.x0 * scale % 32 == 0 and a.y0 * scale % 32 == 0  # on the grid, covering the box
        assert a.x0 <= box[0] and a.y0 <= box[1]
        assert a.x0 + a.rgb.shape[1] / scale >= box[2] and a.y0 + a.rgb.shape[0] / scale >= box[3]
        assert _mean_abs_diff(a.rgb, b.rgb) < 1.5  # DCT scaling vs block means of the full decode
    assert "_finer" not in small.__dict__  # 1/4 and coarser come from the kept decode


def test_binned_region_decodes_finer_only_when_asked_and_clips_to_the_image(big_jpeg):
    image = load_image(big_jpeg, decode_side=400)
    region = image.binned_region((-100.0, -100.0, 300.0, 200.0), scale=0.5)
    assert region.scale == 0.5 and (region.x0, region.y0) == (0.0, 0.0)
    assert region.rgb.shape == (100, 150, 3)
    assert image.__dict__["_finer"][1] == 0.5  # one finer decode, kept
    edge = image.binned_region((2000.0, 1700.0, 2600.0, 2400.0), scale=0.25, grid=32)
    assert edge.rgb.shape[0] >= 1 and edge.x0 + edge.rgb.shape[1] / 0.25 <= 2048
