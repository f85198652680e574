"""The search photo in the web app: its faces numbered and boxed, for choosing the face to search with.

When a photo holds several faces of similar size, the engine refuses to guess. The page then shows the
photo with every detected face boxed and numbered (drawn on a JPEG by the server, so no script or
inline style is needed), a crop of each face, and a button per usable face. The numbers are those of
`Engine.faces` (1 is the largest), which `search(..., on_multiple="index:N")` takes.

Nothing here is stored: the photo travels back in the form as base64, exactly as it was uploaded, so the
search that follows hashes the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import io

from ..engine import Engine
from ..enrollment import face_crop_jpeg
from ..errors import ImageError
from ..policy import Principal

OVERVIEW_SIDE = 900
COLOURS = ["#ffd400", "#00e5ff", "#ff4fd8", "#7cff4f", "#ff8a00", "#ffffff"]


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def encode_upload(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_upload(text: str) -> bytes:
    """The photo a face-choice form carries back; ImageError if it is not what the page sent."""
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the photo sent back with the face choice is damaged; choose the photo again") from None


def overview(engine: Engine, data: bytes, name: str, *, by: Principal) -> dict:
    """The photo (small, boxes and numbers drawn on it) and each face's number, crop and usability."""
    from PIL import Image, ImageDraw, ImageFont

    loaded, faces = engine.faces(data, name=name, by=by)
    picture = Image.fromarray(loaded.rgb)
    scale = min(1.0, OVERVIEW_SIDE / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
    draw = ImageDraw.Draw(picture)
    line = max(2, round(max(picture.size) / 250))
    rows = []
    for number, face in enumerate(faces, start=1):
        colour = COLOURS[(number - 1) % len(COLOURS)] if face.quality.usable else "#9aa3ad"
        x0, y0, x1, y1 = (v * scale for v in face.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        size = max(14, round((y1 - y0) / 4))
        font = ImageFont.load_default(size=size)
        label = str(number)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tag = (x0, max(0, y0 - (bottom - top) - 2 * line), x0 + (right - left) + 2 * line, max(y0, bottom - top + 2 * line))
        draw.rectangle(tag, fill=colour)
        draw.text((tag[0] + line - left, tag[1] + line - top), label, fill="#000000", font=font)
        rows.append({"number": number, "usable": face.quality.usable, "reasons": list(face.quality.reasons),
                     "crop": data_url(face_crop_jpeg(loaded.rgb, face.box, max_side=200))})
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return {"image": data_url(buffer.getvalue()), "faces": rows, "width": picture.width, "height": picture.height}
