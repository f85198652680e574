"""SFace (OpenCV Zoo, 2021dec, 128-D) through cv2.FaceRecognizerSF."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from ..models import SFACE_2021DEC, locate, quiet_opencv
from .alignment import ARCFACE_112_V1, align
from .vectors import l2_normalise


class SFaceEmbedder:
    name = "sface"
    backend = "opencv"
    dim = 128
    template_id = ARCFACE_112_V1.template_id

    def __init__(self, *, flip_average: bool = False, model_dir: Path | None = None) -> None:
        self.flip_average = flip_average
        self.model_dir = model_dir
        self._net = None
        self._load_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Flip-averaged vectors are a different embedding space in the strict sense: separate id."""
        return "sface-2021dec+flip" if self.flip_average else "sface-2021dec"

    def load(self) -> None:
        """Load the model once; safe from several threads (one loads, the others wait for it)."""
        if self._net is None:
            with self._load_lock:
                if self._net is None:
                    quiet_opencv()
                    self._net = cv2.FaceRecognizerSF.create(str(locate(SFACE_2021DEC, self.model_dir)), "")

    def aligned_crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return align(rgb, landmarks, ARCFACE_112_V1)

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return self.embed_aligned(self.aligned_crop(rgb, landmarks))

    def embed_aligned(self, crop_rgb: np.ndarray) -> np.ndarray:
        self.load()
        crop_bgr = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR)
        vector = l2_normalise(self._net.feature(crop_bgr))
        if self.flip_average:
            mirrored = l2_normalise(self._net.feature(np.ascontiguousarray(crop_bgr[:, ::-1])))
            vector = l2_normalise(vector + mirrored)
        return vector

    def embed_aligned_batch(self, crops_rgb) -> np.ndarray:
        """(n, 128) embeddings of n aligned crops; cv2.FaceRecognizerSF takes one crop per call."""
        vectors = [self.embed_aligned(crop) for crop in crops_rgb]
        return np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)
