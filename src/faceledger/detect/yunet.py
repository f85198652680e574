"""YuNet (OpenCV Zoo, 2023mar): through ONNX Runtime (`yunet_ort`, the default) or cv2.FaceDetectorYN.

Both backends run the same model file and decode it the same way, so boxes, landmarks and scores agree
to float rounding under one model id; ONNX Runtime is about twice as fast on CPU (docs/benchmarks.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from ..errors import FaceledgerError
from ..faces import Detection
from ..models import YUNET_2023MAR, locate, quiet_opencv

BACKENDS = ("onnxruntime", "opencv")
"""Engines that run YuNet: the same detections to float rounding (tests/test_detectors.py)."""
TOP_K = 5000
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
        backend: str = "onnxruntime",
        threads: int = 1,
    ) -> None:
        if backend not in BACKENDS:
            raise FaceledgerError(f"unknown backend {backend!r} for detector 'yunet'; known: {', '.join(BACKENDS)}")
        self.backend = backend
        self.threads = threads
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.model_dir = model_dir
        self._net = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load the model once; safe from several threads (one loads, the others wait for it)."""
        if self._net is None:
            with self._load_lock:
                if self._net is None:
                    self._net = self._made()

    def _made(self):
        if self.backend == "onnxruntime":
            from .yunet_ort import YuNetOrt, create_session

            return YuNetOrt(create_session(self.model_dir, threads=self.threads),
                            score_threshold=self.score_threshold, nms_threshold=self.nms_threshold, top_k=TOP_K)
        quiet_opencv()
        path = locate(YUNET_2023MAR, self.model_dir)
        return cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold, self.nms_threshold, TOP_K)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face, best score first; retries once on a padded copy when nothing is found.

        Work and memory are bounded by max_side whatever the input size: the image is downscaled once
        (its longest side at most max_side) and the retry pads that small copy, never the input."""
        self.load()
        height, width = rgb.shape[:2]
        small = _downscaled(rgb, self.max_side)
        factor = (width / small.shape[1], height / small.shape[0])
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        found = self._detect_scaled(bgr)
        if not found:
            pad = int(round(PAD_FRACTION * max(bgr.shape[:2])))
            padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            found = [_shift(d, -pad) for d in self._detect_scaled(padded)]
        found = [_clip(_scaled(d, factor), width, height) for d in found]
        return sorted(found, key=lambda d: d.score, reverse=True)

    def _detect_scaled(self, bgr: np.ndarray) -> list[Detection]:
        """Detections in bgr's coordinates; bgr is downscaled to max_side first when larger."""
        height, width = bgr.shape[:2]
        small = _downscaled(bgr, self.max_side)
        if self.backend == "onnxruntime":
            rows = self._net.detect(small)
        else:
            self._net.setInputSize((small.shape[1], small.shape[0]))
            _, rows = self._net.detect(small)
        if rows is None:
            return []
        factor = (width / small.shape[1], height / small.shape[0])
        return [_scaled(_row_to_detection(row), factor) for row in rows]


def _downscaled(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _scaled(d: Detection, factor: tuple[float, float]) -> Detection:
    fx, fy = factor
    if fx == 1.0 and fy == 1.0:
        return d
    x0, y0, x1, y1 = d.box
    landmarks = (d.landmarks * np.array([fx, fy], dtype=np.float32)).astype(np.float32)
    return Detection(box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy), landmarks=landmarks, score=d.score)


def _row_to_detection(row: np.ndarray) -> Detection:
    x, y, w, h = (float(v) for v in row[:4])
    landmarks = row[4:14].reshape(5, 2).astype(np.float32)
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
