"""Hostile images made in code (never committed): tiny files whose headers claim huge or odd sizes.

Shared by tests/test_hostile_images.py and benchmarks/hostile_images.py.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

_PNG_MODES = {"L": (8, 0, 1), "RGB": (8, 2, 3), "RGBA": (8, 6, 4), "I16": (16, 0, 1)}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, *, mode: str = "L", fill: int = 128) -> bytes:
    """A valid PNG of one flat colour, streamed row by row (a 60000x1000 one is about 60 KB)."""
    depth, colour, channels = _PNG_MODES[mode]
    row = b"\x00" + bytes([fill]) * (width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    parts = []
    for _ in range(height):
        for start in range(0, len(row), 1 << 20):
            parts.append(compressor.compress(row[start:start + (1 << 20)]))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height over garbage pixel data (decoding it fails)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"garbage") + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of JPEG whose frame header claims width x height (data truncated)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 130, 140)).save(buffer, format="JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    sos = data.index(b"\xff\xda")
    end = sos + 2 + struct.unpack(">H", data[sos + 2:sos + 4])[0]
    return bytes(data[:end + 8])


def jpeg(width: int, height: int, *, quality: int = 90) -> bytes:
    """A valid flat-grey JPEG of this size (small file, full-size decode)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def phone_frame(face, *, height: int, size: tuple[int, int] = (4032, 3024), at: tuple[float, float] = (0.5, 0.45),
                seed: int = 0):
    """A phone-sized RGB frame (PIL image): `face` (a PIL portrait) upscaled to `height` px tall and pasted
    on a neutral background of a soft gradient with sensor-like noise (so the JPEG has a realistic size)."""
    import numpy as np

    width, frame_height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(90, 170, width, dtype=np.float32)[None, :, None]
    tint = np.array([1.0, 0.97, 0.92], dtype=np.float32)[None, None, :]
    background = ramp * tint + rng.normal(0.0, 6.0, (frame_height, width, 3)).astype(np.float32)
    frame = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    scaled = face.resize((round(face.width * height / face.height), height), Image.Resampling.BICUBIC)
    left = int(at[0] * width - scaled.width / 2)
    top = int(at[1] * frame_height - scaled.height / 2)
    frame.paste(scaled, (max(0, left), max(0, top)))
    return frame
