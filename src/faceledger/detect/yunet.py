"""YuNet (OpenCV Zoo, 2023mar) through cv2.FaceDetectorYN."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..faces import Detection
from ..models import quiet_opencv, YUNET_2023MAR, locate

PAD_FRACTION = 0.25
"""Border added on every side when nothing is found: tight face crops have no context for YuNet."""


class YuNetDetector:
    name = "yunet"
    model_id = "yunet-2023mar"

    def __init__(
        self,
        *,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int = 1280,
        model_dir: Path | None = None,
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.model_dir = model_dir
        self._net = None

    def load(self) -> None:
        if self._net is None:
            quiet_opencv()
            path = locate(YUNET_2023MAR, self.model_dir)
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), self.score_threshold, self.nms_threshold, 5000
            )

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face, best score first; retries once on a padded copy when nothing is found."""
        self.load()
        found = self._detect_scaled(rgb)
        if not found:
            found = self._detect_padded(rgb)
        return sorted(found, key=lambda d: d.score, reverse=True)

    def _detect_padded(self, rgb: np.ndarray) -> list[Detection]:
        pad = int(round(PAD_FRACTION * max(rgb.shape[:2])))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        height, width = rgb.shape[:2]
        return [
            _clip(_shift(d, -pad), width, height) for d in self._detect_scaled(padded)
        ]

    def _detect_scaled(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        return [_row_to_detection(row, 1.0 / scale) for row in rows]


def _row_to_detection(row: np.ndarray, factor: float) -> Detection:
    x, y, w, h = (float(v) * factor for v in row[:4])
    landmarks = (row[4:14].reshape(5, 2) * factor).astype(np.float32)
    return Detection(box=(x, y, x + w, y + h), landmarks=landmarks, score=float(row[14]))


def _shift(d: Detection, offset: float) -> Detection:
    x0, y0, x1, y1 = d.box
    return Detection(
        box=(x0 + offset, y0 + offset, x1 + offset, y1 + offset),
        landmarks=(d.landmarks + offset).astype(np.float32),
        score=d.score,
    )


def _clip(d: Detection, width: int, height: int) -> Detection:
    x0, y0, x1, y1 = d.box
    box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    return Detection(box=box, landmarks=d.landmarks, score=d.score)
