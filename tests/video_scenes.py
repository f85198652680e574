"""Tiny test videos made in code from the committed stills in tests/data/open-faces (see CREDITS.md).

Each scene is a list of frames at a fixed rate; every face is a square crop of a still pasted on a plain
background, with its true box recorded so tests can compare tracks with what is really there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np

OPEN_FACES = Path(__file__).parent / "data" / "open-faces"
W, H = 320, 240


@cache
def face_still(name: str) -> np.ndarray:
    """A square RGB crop around the one face of a committed still (found once with the detector)."""
    from faceledger.config import Settings
    from faceledger.imaging import load_image
    from faceledger.pipeline import FacePipeline

    pipe = _pipeline(FacePipeline, Settings)
    rgb = load_image(OPEN_FACES / name).rgb
    face = pipe.single_face(rgb, name=name, on_multiple="largest")
    x0, y0, x1, y1 = face.box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 1.6
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(rgb.shape[1], cx + side / 2)), int(min(rgb.shape[0], cy + side / 2))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


_PIPE = {}


def _pipeline(FacePipeline, Settings):
    if "p" not in _PIPE:
        _PIPE["p"] = FacePipeline.from_settings(Settings())
        _PIPE["p"].load()
    return _PIPE["p"]


@dataclass
class Scene:
    fps: int
    frames: list[np.ndarray] = field(default_factory=list)
    truth: list[list[tuple[str, tuple[int, int, int, int]]]] = field(default_factory=list)
    """Per frame: (who, box of the pasted square) for every face present."""

    def add(self, faces: list[tuple[str, float, float, int]], background=(128, 128, 128)) -> None:
        """One frame with each (still, centre x, centre y, side) pasted on a plain background."""
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = background
        boxes = []
        for name, cx, cy, side in faces:
            face = cv2.resize(face_still(name), (side, side), interpolation=cv2.INTER_AREA)
            x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
            fx0, fy0 = max(0, -x0), max(0, -y0)
            x0c, y0c = max(0, x0), max(0, y0)
            x1c, y1c = min(W, x0 + side), min(H, y0 + side)
            if x1c > x0c and y1c > y0c:
                frame[y0c:y1c, x0c:x1c] = face[fy0:fy0 + y1c - y0c, fx0:fx0 + x1c - x0c]
                boxes.append((name, (x0, y0, x0 + side, y0 + side)))
        self.frames.append(frame)
        self.truth.append(boxes)

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


def write(scene: Scene, path: Path, *, codec: str = "libx264", pix_fmt: str = "yuv420p",
          rotation: int = 0, options: dict | None = None) -> Path:
    """Encode a scene with PyAV. rotation: store the frames turned and set the display matrix so a
    player (and the decoder) turns them back upright."""
    import av

    container = av.open(str(path), "w", options=options or {})
    stream = container.add_stream(codec, rate=scene.fps)
    height, width = scene.frames[0].shape[:2]
    if rotation % 180:
        width, height = height, width
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if rotation:
        stream.set_display_rotation(rotation)
    for pixels in scene.frames:
        stored = np.ascontiguousarray(np.rot90(pixels, k=-(rotation // 90))) if rotation else pixels
        for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


FACE_A, FACE_B, FACE_C = "macron_2014.jpg", "obama_senate_portrait.jpg", "sunak_portrait.jpg"


def moving(fps: int = 10, seconds: float = 3.0) -> Scene:
    """FACE_A moves left to right and grows."""
    scene = Scene(fps)
    n = int(fps * seconds)
    for i in range(n):
        f = i / (n - 1)
        scene.add([(FACE_A, 70 + 180 * f, 120, int(80 + 40 * f))])
    return scene


def crossing(fps: int = 10, seconds: float = 3.0) -> Scene:
    """FACE_A left to right, FACE_B right to left; they overlap in the middle (A in front)."""
    scene = Scene(fps)
    n = int(fps * seconds)
    for i in range(n):
        f = i / (n - 1)
        scene.add([(FACE_B, 260 - 200 * f, 130, 90), (FACE_A, 60 + 200 * f, 110, 90)])
    return scene


def cut_leave_return(fps: int = 10) -> Scene:
    """0-1 s FACE_A; cut to 1-2 s FACE_B in the same place on another background; 2-3.5 s nobody;
    3.5-4.5 s FACE_A comes back. Four faces on screen in all, three tracks expected... see the test."""
    scene = Scene(fps)
    for i in range(int(fps * 4.5)):
        t = i / fps
        if t < 1.0:
            scene.add([(FACE_A, 160, 120, 100)])
        elif t < 2.0:
            scene.add([(FACE_B, 160, 120, 100)], background=(40, 90, 160))
        elif t < 3.5:
            scene.add([], background=(40, 90, 160))
        else:
            scene.add([(FACE_A, 150 + 10 * (t - 3.5), 120, 100)], background=(40, 90, 160))
    return scene


def still_frames(seconds: float, fps: int = 10, who: str = FACE_A) -> Scene:
    scene = Scene(fps)
    for _ in range(int(fps * seconds)):
        scene.add([(who, 160, 120, 100)])
    return scene
