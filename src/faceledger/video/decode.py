"""Video files and streams → upright RGB frames with their presentation timestamps.

PyAV (FFmpeg) does the decoding, so MP4/MOV (H.264, HEVC), WebM (VP8, VP9), MKV and MJPEG AVI all
work, timestamps come from each frame's pts (variable frame rates are handled), and the display
matrix (a phone's rotation metadata) is applied to every frame. Knows nothing of the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError, ImageTooLarge


class VideoError(ImageError):
    """The file or stream could not be read as a video (corrupt, truncated, or no video stream)."""


class VideoTooLarge(VideoError, ImageTooLarge):
    """The video is larger, longer or of more pixels per frame than the configured limits."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 2 * 1024**3
    max_seconds: float = 4 * 3600.0
    max_pixels: int = 3840 * 2160


@dataclass(frozen=True)
class VideoInfo:
    """What a video file is: hash, container, codec, upright size, rotation applied, duration."""

    name: str
    sha256: str | None
    size_bytes: int | None
    container: str
    codec: str
    width: int
    height: int
    rotation: int
    duration_s: float | None
    fps: float | None

    def as_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "container": self.container, "codec": self.codec, "width": self.width, "height": self.height,
                "rotation": self.rotation, "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
                "fps": None if self.fps is None else round(self.fps, 3)}


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in decoding order, its time in seconds, upright RGB pixels."""

    index: int
    t: float
    rgb: np.ndarray
    sampled: bool
    pts: int | None = None
    time_base: object = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(source: str, options: dict | None = None, fmt: str | None = None):
    import av

    try:
        return av.open(source, format=fmt, options=options or {}, timeout=(10.0, 10.0))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{Path(source).name if '://' not in source else source}: cannot be read as a "
                         f"video ({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.split("; last error log")[0][:200]




def probe(path: Path | str, *, limits: VideoLimits = VideoLimits(), hash_file: bool = True) -> VideoInfo:
    """Open a video file, check it against the limits and describe it; raises VideoError/VideoTooLarge."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{path.name}: the file is empty")
    if size > limits.max_bytes:
        raise VideoTooLarge(f"{path.name}: {size / 1e6:.1f} MB is over the video limit of "
                            f"{limits.max_bytes / 1e6:.1f} MB (FACELEDGER_VIDEO_MAX_BYTES)")
    container = _open(str(path))
    try:
        if not container.streams.video:
            raise VideoError(f"{path.name}: the file has no video stream (audio only, or not a video)")
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        first = _first_frame(container, stream, path.name)
        rotation = _frame_rotation(first)
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        if duration is not None and duration > limits.max_seconds:
            raise VideoTooLarge(f"{path.name}: {duration:.1f} s is over the video limit of "
                                f"{limits.max_seconds:.0f} s (FACELEDGER_VIDEO_MAX_SECONDS)")
        if width * height > limits.max_pixels:
            raise VideoTooLarge(f"{path.name}: {width}×{height} frames are over the limit of "
                                f"{limits.max_pixels} pixels (FACELEDGER_VIDEO_MAX_PIXELS)")
        fps = float(stream.average_rate) if stream.average_rate else None
        info = VideoInfo(name=path.name, sha256=sha256_file(path) if hash_file else None, size_bytes=size,
                         container=container.format.name, codec=stream.codec_context.name, width=width,
                         height=height, rotation=rotation, duration_s=duration, fps=fps)
    finally:
        container.close()
    return info


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _first_frame(container, stream, name: str):
    import av

    try:
        for frame in container.decode(stream):
            return frame
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"{name}: the video stream cannot be decoded ({_reason(exc)})") from exc
    raise VideoError(f"{name}: the video stream holds no decodable frame (truncated or empty)")


def _frame_rotation(frame) -> int:
    """Degrees counter-clockwise the stored picture must be turned to display upright (0, 90, 180, 270)."""
    rotation = getattr(frame, "rotation", 0) or 0
    return round(rotation / 90.0) * 90 % 360


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, FFmpeg's sign) to stored pixels."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def frames(source: Path | str, *, every_ms: float | None = None, all_frames: bool = False,
           realtime: bool = False, max_seconds: float | None = None, fmt: str | None = None,
           options: dict | None = None, stop=None, wall_clock: bool = False) -> Iterator[Frame]:
    """Decode frames in order. With every_ms, one frame per every_ms of presentation time is `sampled`
    (the first frame at or after each step, so variable frame rates are sampled evenly). Only sampled
    frames are converted to RGB unless all_frames is set (redaction needs every frame).

    realtime: pace the frames to their timestamps (a file played as if it were live).
    max_seconds: stop after this much video time. stop: a threading.Event that ends the iteration.
    wall_clock: time frames by their arrival (live streams such as MJPEG over HTTP carry no usable pts).
    """
    import time

    import av

    name = str(source)
    container = _open(name, options=options, fmt=fmt)
    try:
        if not container.streams.video:
            raise VideoError(f"{Path(name).name}: the file has no video stream (audio only, or not a video)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = None if not every_ms else every_ms / 1000.0
        next_sample = None
        start_t = None
        wall_start = time.monotonic()
        index = -1
        try:
            for frame in container.decode(stream):
                if stop is not None and stop.is_set():
                    return
                index += 1
                if wall_clock:
                    t = time.monotonic() - wall_start
                elif frame.time is not None:
                    t = float(frame.time)
                else:
                    t = index / float(stream.average_rate or 25)
                if start_t is None:
                    start_t = t
                t -= start_t
                if max_seconds is not None and t > max_seconds:
                    return
                sampled = step is None
                if step is not None and (next_sample is None or t >= next_sample - 1e-6):
                    sampled = True
                    next_sample = (0.0 if next_sample is None else next_sample) + step
                    while next_sample <= t:
                        next_sample += step
                if not (sampled or all_frames):
                    continue
                if realtime:
                    delay = t - (time.monotonic() - wall_start)
                    if delay > 0:
                        time.sleep(delay)
                rgb = upright(frame.to_ndarray(format="rgb24"), _frame_rotation(frame))
                yield Frame(index=index, t=t, rgb=rgb, sampled=sampled, pts=frame.pts, time_base=frame.time_base)
        except av.error.FFmpegError as exc:
            if index < 0:
                raise VideoError(f"{Path(name).name}: the video stream cannot be decoded ({_reason(exc)})") from exc
            # A truncated tail: the frames decoded so far stand; the caller sees fewer frames.
            return
    finally:
        container.close()
