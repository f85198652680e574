"""Colour JPEGs decoded by simplejpeg (libjpeg-turbo, as in Pillow, straight into a numpy array).

imaging.decode_scaled reads the header, checks its limits and chooses the DCT scale with Pillow as
before; `decoded` then gives the same pixels Pillow would, faster (benchmarks/jpeg_decode.py), or None
so that Pillow decodes them (grey and CMYK JPEGs, simplejpeg missing, or anything it finds wrong).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

try:
    import simplejpeg
except ImportError:  # pragma: no cover - a dependency; without it Pillow decodes every JPEG
    simplejpeg = None


def decoded(data: bytes, image: Image.Image) -> np.ndarray | None:
    """A colour JPEG decoded by simplejpeg (libjpeg-turbo, as in Pillow, straight into an array: about 2 ms
    less for a 12 MP photo at 1/4 scale, and no copy out of a Pillow image) at the size Pillow's `draft`
    chose, the same pixels; None when simplejpeg is not installed, the JPEG is grey or CMYK, or it reports
    anything wrong with the data (strict): Pillow then decodes it as before, with its errors and leniency."""
    if simplejpeg is None or image.mode != "RGB":
        return None
    width, height = image.size  # after draft: the DCT-scaled size
    try:
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height, strict=True)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - Pillow decodes it instead, and says what is wrong if it cannot
        return None
    return rgb if rgb.shape == (height, width, 3) else None


_ORIENTED = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1],
}
"""EXIF orientation -> the numpy view that makes a decode upright (as ImageOps.exif_transpose does)."""


def oriented(rgb: np.ndarray, orientation) -> np.ndarray:
    turn = _ORIENTED.get(orientation)
    return rgb if turn is None else np.ascontiguousarray(turn(rgb))
