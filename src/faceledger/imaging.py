"""Decode files or bytes into RGB uint8 arrays: EXIF orientation, many formats, bounded cost.

What any accepted image can cost is bounded before a pixel is decoded (docs/security.md): the header's
pixel count, longest side and aspect ratio are checked against limits, JPEGs are decoded at a reduced
scale (DCT scaling) large enough for detection, and full resolution is decoded only on demand and only
as far as a face region needs it (`LoadedImage.region`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import jpeg_fast
from .errors import FaceledgerError, ImageError, ImageTooLarge

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "MPO")
"""Pillow format names we accept (PPM covers PGM/PBM; MPO is a multi-picture JPEG from cameras)."""

DCT_SCALED_FORMATS = ("JPEG", "MPO")
"""Formats Pillow can decode at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, `Image.draft`)."""

# faceledger checks the pixel count itself, from the header and before decoding (_check_header), against
# the configured limit; Pillow's own global bomb limit (about 89 Mpx) would otherwise override a larger one.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = 60_000_000
DEFAULT_MAX_SIDE = 20_000
"""Longest side accepted (a 360-degree phone panorama is about 16000 px wide)."""
DEFAULT_MAX_ASPECT = 10.0
"""Largest long-side / short-side ratio accepted (a phone panorama is about 4-8)."""
THREADED_HASH_BYTES = 1 << 20
"""Uploads from this size are hashed on a thread beside their decode (both release the GIL)."""
DEFAULT_WORK_SIDE = 1280
"""Longest side of the detection copy (`LoadedImage.preview`); the engine passes Settings.detect_max_side."""

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


@dataclass(frozen=True)
class Region:
    """Pixels of part of an image: `rgb` maps to full-resolution (x, y) as (x - x0, y - y0) * scale."""

    rgb: np.ndarray
    x0: float
    y0: float
    scale: float


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image and the facts about the bytes it came from.

    width/height: full-resolution upright size; every box and landmark uses these coordinates.
    preview: the upright image with its longest side at most the work side (for detection).
    rgb: the full-resolution image, decoded on first use (costly for big JPEGs: prefer region()).
    """

    sha256: str
    format: str
    name: str
    width: int
    height: int
    base: np.ndarray = field(repr=False)
    """The decode kept for regions and previews: full resolution, or a DCT-scaled JPEG decode."""
    base_scale: float = 1.0
    data: bytes = field(repr=False, default=b"")
    work_side: int = DEFAULT_WORK_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def preview(self) -> np.ndarray:
        """The upright image with its longest side at most work_side (the detection copy)."""
        return self.preview_at(self.work_side)

    def preview_at(self, side: int) -> np.ndarray:
        """The upright image with its longest side at most `side` (made once per side)."""
        cache = self.__dict__.setdefault("_previews", {})
        if side not in cache:
            rgb, _ = self._decoded(min(1.0, side / max(self.width, self.height)))
            cache[side] = downscale(rgb, side)
        return cache[side]

    def reduced(self, side: int) -> Region:
        """A cheap detection copy of the whole image: the kept decode shrunk by the smallest whole factor
        that brings its longest side to at most `side` (a box filter on whole blocks of pixels, made once
        per side, no re-decode); `side` is a bound, so the copy may be up to half of it."""
        cache = self.__dict__.setdefault("_reduced", {})
        if side not in cache:
            height, width = self.base.shape[:2]
            factor = max(1, math.ceil(max(height, width) / max(1, side)))
            rgb = self.base
            if factor > 1:
                rows, cols = max(1, height // factor), max(1, width // factor)
                rgb = cv2.resize(rgb[:rows * factor, :cols * factor], (cols, rows), interpolation=cv2.INTER_AREA)
            cache[side] = Region(rgb=rgb, x0=0.0, y0=0.0, scale=self.base_scale / factor)
        return cache[side]

    @cached_property
    def rgb(self) -> np.ndarray:
        if self.base_scale == 1.0:
            return self.base
        return self._decoded(1.0)[0]

    def _decoded(self, min_scale: float) -> tuple[np.ndarray, float]:
        """The coarsest kept or re-decoded upright image whose scale is at least min_scale."""
        if self.base_scale >= min_scale:
            return self.base, self.base_scale
        finer = self.__dict__.get("_finer")
        if finer is not None and finer[1] >= min_scale:
            return finer
        rgb, _, _, scale = decode_scaled(self.data, name=self.name, max_pixels=self.max_pixels,
                                         max_side=None, max_aspect=None,
                                         min_side=min_scale * max(self.width, self.height))
        self.__dict__["_finer"] = (rgb, scale)  # one extra decode kept at most (frozen: no setattr)
        return rgb, scale

    @property
    def held_scale(self) -> float:
        """The finest scale decoded so far (the kept decode, or a finer one a region needed): a region at
        up to this scale costs no new decode."""
        finer = self.__dict__.get("_finer")
        return max(self.base_scale, finer[1]) if finer is not None else self.base_scale

    def region(self, box, *, min_scale: float = 1.0) -> Region:
        """The pixels of box (x0, y0, x1, y1, full-resolution coordinates, clipped to the image) at a
        scale of at least min_scale (re-decoding a JPEG at a finer DCT scale only when needed)."""
        rgb, scale = self._decoded(min(1.0, max(min_scale, 1e-6)))
        x0, y0, x1, y1 = (float(v) for v in box)
        height, width = rgb.shape[:2]
        left = int(np.clip(math.floor(x0 * scale), 0, width - 1))
        top = int(np.clip(math.floor(y0 * scale), 0, height - 1))
        right = int(np.clip(math.ceil(x1 * scale), left + 1, width))
        bottom = int(np.clip(math.ceil(y1 * scale), top + 1, height))
        return Region(rgb=rgb[top:bottom, left:right], x0=left / scale, y0=top / scale, scale=scale)

    def binned_region(self, box, *, scale: float, grid: int = 1) -> Region:
        """The pixels of box (full-resolution coordinates, clipped to the image) at `scale`, each the mean
        of a whole block of a decode's pixels (a box filter, as a JPEG's DCT scaling is): give a power of
        two (1, 1/2, 1/4, ...) and every decode serves it, so a reduced-scale decode and the full one give
        the same pixels. The window is widened to the image-wide `grid` (in pixels at this scale), so
        nearby boxes give the same pixels at the same place. Decodes a finer JPEG scale only if needed."""
        rgb, have = self._decoded(min(1.0, max(scale, 1e-6)) * 0.999)
        factor = int(min(max(1, round(have / scale)), rgb.shape[0], rgb.shape[1]))
        scale = have / factor
        rows, cols = rgb.shape[0] // factor, rgb.shape[1] // factor
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        left = int(np.clip(math.floor(x0 / grid) * grid, 0, cols - 1))
        top = int(np.clip(math.floor(y0 / grid) * grid, 0, rows - 1))
        right = int(np.clip(math.ceil(x1 / grid) * grid, left + 1, cols))
        bottom = int(np.clip(math.ceil(y1 / grid) * grid, top + 1, rows))
        block = rgb[top * factor:bottom * factor, left * factor:right * factor]
        if factor > 1:
            block = cv2.resize(block, (right - left, bottom - top), interpolation=cv2.INTER_AREA)
        return Region(rgb=block, x0=left / scale, y0=top / scale, scale=scale)


def from_array(rgb: np.ndarray, *, name: str = "<array>", work_side: int = DEFAULT_WORK_SIDE) -> LoadedImage:
    """An RGB uint8 array already in memory as a LoadedImage (base = the array itself, no copy)."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"{name}: expected an RGB uint8 array (H, W, 3)")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{name}: the image has no pixels")
    return LoadedImage(sha256="", format="array", name=name, width=int(rgb.shape[1]), height=int(rgb.shape[0]),
                       base=rgb, base_scale=1.0, work_side=work_side)


def read_bytes(path: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a regular file, refusing anything else (folder, FIFO, device) and files over the byte limit
    before reading. Opened non-blocking and checked on the open descriptor, so a FIFO cannot hang us."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{path}: is a folder, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{path}: is not a regular file (a pipe, device or socket); give an image file")
        if info.st_size > max_bytes:
            raise ImageTooLarge(f"{path}: {info.st_size:,} bytes is over the limit of {max_bytes:,} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{path}: over the limit of {max_bytes:,} bytes (it grew while being read)")
    return data


def load_image(
    source: Path | str | bytes,
    *,
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    work_side: int = DEFAULT_WORK_SIDE,
    decode_side: int | None = None,
) -> LoadedImage:
    """Decode a path or raw bytes into an upright image, or raise ImageError saying why not.

    Limits are checked from the header before decoding. A JPEG is decoded at the coarsest DCT scale
    whose longest side is still at least decode_side (default: work_side, the detection size); finer
    scales, up to full resolution, are decoded later only if a preview or a face region needs them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "<upload>"
        if len(data) > max_bytes:
            raise ImageTooLarge(f"{name}: {len(data):,} bytes is over the limit of {max_bytes:,} bytes")
    else:
        data = read_bytes(source, max_bytes=max_bytes)
        name = name or str(source)
    digest = _Sha256(data)  # hashed beside the decode: both release the GIL
    try:
        base, fmt, (width, height), scale = decode_scaled(data, name=name, max_pixels=max_pixels,
                                                          max_side=max_side, max_aspect=max_aspect,
                                                          min_side=decode_side or work_side)
    finally:
        sha256 = digest.hexdigest()
    return LoadedImage(sha256=sha256, format=fmt, name=name, width=width, height=height,
                       base=base, base_scale=scale, data=data, work_side=work_side, max_pixels=max_pixels)


class _Sha256:
    """The sha256 of bytes, computed on a thread of its own for inputs of THREADED_HASH_BYTES or more, so
    that hashing a 3 MB photo (about 1.5 ms) overlaps its decode; smaller inputs are hashed at once."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._digest: str | None = None
        self._thread = None
        if len(data) < THREADED_HASH_BYTES:
            self._digest = hashlib.sha256(data).hexdigest()
        else:
            self._thread = threading.Thread(target=self._run, name="faceledger-sha256", daemon=True)
            try:
                self._thread.start()
            except RuntimeError:  # no thread to be had (a process at its limit): hashed in hexdigest()
                self._thread = None

    def _run(self) -> None:
        try:
            self._digest = hashlib.sha256(self._data).hexdigest()
        except Exception:  # noqa: BLE001 - hexdigest() hashes again where the error is seen
            pass

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._digest is None:
            self._digest = hashlib.sha256(self._data).hexdigest()
        self._data = b""
        return self._digest


def decode(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
           max_side: int | None = DEFAULT_MAX_SIDE, max_aspect: float | None = DEFAULT_MAX_ASPECT,
           ) -> tuple[np.ndarray, str]:
    """Bytes -> (full-resolution RGB uint8 array, format). Limits are checked from the header first."""
    rgb, fmt, _, _ = decode_scaled(data, name=name, max_pixels=max_pixels, max_side=max_side,
                                   max_aspect=max_aspect, min_side=None)
    return rgb, fmt


def decode_scaled(data: bytes, *, name: str, max_pixels: int, max_side: int | None, max_aspect: float | None,
                  min_side: float | None) -> tuple[np.ndarray, str, tuple[int, int], float]:
    """Bytes -> (upright RGB array, format, full upright (width, height), scale of the array).

    min_side: for JPEG, decode at the coarsest DCT scale (1/8, 1/4, 1/2, 1) keeping the longest side at
    least this long; None or other formats: full resolution. Any failure is an ImageError."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            _check_header(image, name, max_pixels, max_side, max_aspect)
            width, height = image.size
            image.seek(0)  # GIF / TIFF / MPO: the first frame
            if min_side and image.format in DCT_SCALED_FORMATS and min_side < max(width, height):
                factor = min_side / max(width, height)
                image.draft(image.mode if image.mode in ("L", "CMYK") else "RGB",
                            (max(1, math.ceil(width * factor)), max(1, math.ceil(height * factor))))
            orientation = image.getexif().get(_EXIF_ORIENTATION)  # read from the header: no decoding
            fmt = image.format
            rgb = jpeg_fast.decoded(data, image) if fmt == "JPEG" else None
            if rgb is not None:
                scale = rgb.shape[1] / width
                rgb = jpeg_fast.oriented(rgb, orientation)
            else:
                image.load()
                scale = image.size[0] / width
                if orientation in range(2, 9):  # turned or mirrored (exif_transpose would copy even when upright)
                    image = ImageOps.exif_transpose(image)
                rgb = to_rgb(image)
    except FaceledgerError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file, or a format faceledger cannot read") from None
    except MemoryError:
        raise ImageTooLarge(f"{name}: decoding the image needs more memory than is available") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes make decoders raise anything: all are "corrupt"
        raise ImageError(f"{name}: the image is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return rgb, fmt, (width, height), scale


def _check_header(image: Image.Image, name: str, max_pixels: int, max_side: int | None,
                  max_aspect: float | None) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(f"{name}: format {image.format} is not supported ({', '.join(SUPPORTED_FORMATS)})")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}"
        )
    if max_side is not None and max(width, height) > max_side:
        raise ImageTooLarge(f"{name}: {width}x{height}: a side of {max(width, height):,} pixels is over the "
                            f"limit of {max_side:,}")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        raise ImageTooLarge(f"{name}: {width}x{height} is too long and thin (aspect ratio over {max_aspect:g}:1); "
                            "crop the image around the face")


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The image with its longest side at most max_side (area interpolation), or the image itself."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8. Transparent pixels are composited onto mid grey."""
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integer or float: stretch to 0..255
        array = np.array(image, dtype=np.float32)  # a writable copy (4 bytes per pixel)
        np.nan_to_num(array, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(array, 0.0, None, out=array)
        top = float(array.max()) or 1.0
        array *= 255.0 / top
        image = Image.fromarray(array.astype(np.uint8), mode="L")
        del array
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        return _over_grey(np.asarray(rgba))
    if image.mode == "L":  # grey: three channels straight from the 1-byte array (no 4-byte RGB copy)
        grey = np.asarray(image)
        out = np.empty(grey.shape + (3,), dtype=np.uint8)
        out[...] = grey[..., None]
        return out
    return np.ascontiguousarray(np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8))


def _over_grey(rgba: np.ndarray, rows: int = 512) -> np.ndarray:
    """RGBA -> RGB composited onto mid grey, a band of rows at a time (no full-size float copies)."""
    out = np.empty(rgba.shape[:2] + (3,), dtype=np.uint8)
    for top in range(0, rgba.shape[0], rows):
        band = rgba[top:top + rows].astype(np.uint16)
        alpha = band[..., 3:4]
        out[top:top + rows] = ((band[..., :3] * alpha + 128 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return out
