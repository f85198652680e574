"""Typed results. One box convention everywhere: (x0, y0, x1, y1) in pixels of the decoded image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
"""Order of the 5 landmarks (YuNet's order: the subject's right eye first, i.e. left in the image)."""


@dataclass(frozen=True)
class Detection:
    """A face found by a detector: box (x0, y0, x1, y1), landmarks (5, 2) as (x, y), score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class QualityReport:
    """Is this face usable for recognition, and if not, why."""

    face_size: float
    sharpness: float
    yaw: float
    roll: float
    pitch: float
    detector_score: float
    reasons: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {
            "usable": self.usable,
            "face_size": round(self.face_size, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 1),
            "roll": round(self.roll, 1),
            "pitch": round(self.pitch, 1),
            "detector_score": round(self.detector_score, 4),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Face:
    """A detected face with its quality and (when computed) its L2-normalised embedding."""

    detection: Detection
    quality: QualityReport
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.detection.box

    def as_dict(self) -> dict:
        return {
            "box": [round(v, 1) for v in self.detection.box],
            "landmarks": np.round(self.detection.landmarks, 1).tolist(),
            "detector_score": round(self.detection.score, 4),
            "quality": self.quality.as_dict(),
        }
