"""Decode files or bytes into RGB uint8 arrays: EXIF orientation, many formats, size limits."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLarge

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "MPO")
"""Pillow format names we accept (PPM covers PGM/PBM; MPO is a multi-picture JPEG from cameras)."""

# faceledger checks the pixel count itself, from the header and before decoding (_check_header), against
# the configured limit; Pillow's own global bomb limit (about 89 Mpx) would otherwise override a larger one.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = 60_000_000


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and the facts about the bytes it came from."""

    rgb: np.ndarray
    sha256: str
    format: str
    name: str
    data: bytes = field(repr=False, default=b"")

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def read_bytes(path: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file, refusing one over the byte limit before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if size > max_bytes:
        raise ImageTooLarge(f"{path}: {size:,} bytes is over the limit of {max_bytes:,} bytes")
    return path.read_bytes()


def load_image(
    source: Path | str | bytes,
    *,
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode a path or raw bytes into an upright RGB image, or raise ImageError saying why not."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "<upload>"
        if len(data) > max_bytes:
            raise ImageTooLarge(f"{name}: {len(data):,} bytes is over the limit of {max_bytes:,} bytes")
    else:
        data = read_bytes(source, max_bytes=max_bytes)
        name = name or str(source)
    rgb, fmt = decode(data, name=name, max_pixels=max_pixels)
    return LoadedImage(rgb=rgb, sha256=hashlib.sha256(data).hexdigest(), format=fmt, name=name, data=data)


def decode(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Bytes -> (RGB uint8 array, format). The pixel limit is checked from the header, before decoding."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_header(image, name, max_pixels)
            image.seek(0)  # GIF / TIFF / MPO: the first frame
            image.load()
            fmt = image.format
            return to_rgb(ImageOps.exif_transpose(image)), fmt
    except (ImageTooLarge, ImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{name}: the image is over the pixel limit ({max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file, or a format faceledger cannot read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated ({exc})") from None


def _check_header(image: Image.Image, name: str, max_pixels: int) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(f"{name}: format {image.format} is not supported ({', '.join(SUPPORTED_FORMATS)})")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}"
        )


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8. Transparent pixels are composited onto mid grey."""
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integer or float: stretch to 0..255
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        array = np.clip(array, 0.0, None)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
