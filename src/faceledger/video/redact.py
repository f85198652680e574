"""Redaction: a copy of a video with every face blurred except the tracks kept.

Faces are detected on sampled frames only; between two detections of a track its box is interpolated
linearly, and for one sampling step before its first and after its last detection the nearest box is
held, so a face is covered on every frame, not only the sampled ones. Each box is grown by a margin
and replaced by a smooth gradient of its own four mean colours: no eyes, nose or mouth survive, and
the detector finds nothing there (the tests run it over the output; finer pixelation left blobs it
took for a face where two blurred faces overlapped).
Upright frames are written (rotation applied, no display matrix); audio is not copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .decode import VideoError, frames
from .track import Track

CODECS = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
          ".webm": ("libvpx-vp9", "yuv420p"), ".avi": ("mjpeg", "yuvj420p")}


def box_at(track: Track, t: float, *, hold: float) -> tuple[float, float, float, float] | None:
    """The track's face box at time t: interpolated between detections, held for `hold` seconds beyond
    its ends, None outside. Gaps inside a track are at most the tracker's max_gap_s."""
    obs = track.observations
    if t < obs[0].t - hold or t > obs[-1].t + hold:
        return None
    if t <= obs[0].t:
        return obs[0].box
    if t >= obs[-1].t:
        return obs[-1].box
    times = [o.t for o in obs]
    i = int(np.searchsorted(times, t, side="right"))
    a, b = obs[i - 1], obs[i]
    w = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
    return tuple((1 - w) * pa + w * pb for pa, pb in zip(a.box, b.box))


def obscure(rgb: np.ndarray, box: tuple[float, ...], *, margin: float = 0.3) -> None:
    """Replace the box grown by `margin` on each side by a gradient of its 2×2 mean colours, in place."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    x0, y0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
    x1, y1 = min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    region = rgb[y0:y1, x0:x1]
    tiny = cv2.resize(region, (2, 2), interpolation=cv2.INTER_AREA)
    rgb[y0:y1, x0:x1] = cv2.resize(tiny, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)


def write_redacted(source: Path, out: Path, blur: Iterable[Track], *, every_ms: float) -> dict:
    """Write `out` with the `blur` tracks obscured on every frame; returns frame counts."""
    import av

    codec, pix_fmt = CODECS.get(out.suffix.lower(), (None, None))
    if codec is None:
        raise VideoError(f"{out.name}: write redacted video as one of {', '.join(sorted(CODECS))}")
    blur = list(blur)
    hold = every_ms / 1000.0
    written = obscured = 0
    container = None
    stream = None
    try:
        for frame in frames(source, every_ms=every_ms, all_frames=True):
            rgb = frame.rgb.copy()
            for track in blur:
                box = box_at(track, frame.t, hold=hold)
                if box is not None:
                    obscure(rgb, box)
                    obscured += 1
            height, width = rgb.shape[:2]
            if container is None:
                container = av.open(str(out), "w")
                stream = container.add_stream(codec, rate=Fraction(25, 1))
                stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, pix_fmt
                stream.time_base = Fraction(1, 1000)
                if codec == "libx264":
                    stream.options = {"crf": "20", "preset": "veryfast"}
            if width % 2 or height % 2:
                rgb = cv2.copyMakeBorder(rgb, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            video_frame.pts = round(frame.t * 1000)
            video_frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
            written += 1
        if container is None:
            raise VideoError(f"{source.name}: no frame could be decoded")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        if container is not None:
            container.close()
    return {"frames_written": written, "faces_obscured": obscured}
