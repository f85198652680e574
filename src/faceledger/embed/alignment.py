"""Face alignment: a pure function that maps 5 landmarks onto a named, versioned template."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AlignmentTemplate:
    """Target landmark positions (5, 2) in an output crop of `size` x `size` pixels."""

    template_id: str
    size: int
    points: tuple[tuple[float, float], ...]

    def as_array(self) -> np.ndarray:
        return np.asarray(self.points, dtype=np.float64)


ARCFACE_112_V1 = AlignmentTemplate(
    template_id="arcface-5pt-112-v1",
    size=112,
    points=(
        (38.2946, 51.6963),
        (73.5318, 51.5014),
        (56.0252, 71.7366),
        (41.5493, 92.3655),
        (70.7299, 92.2041),
    ),
)
"""The 5-point ArcFace template, the one SFace was trained with (and cv2.FaceRecognizerSF.alignCrop uses)."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst (Umeyama 1991).

    Returns a 2x3 matrix for cv2.warpAffine.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (n, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    src_variance = (src_c**2).sum() / len(src)
    scale = (singular * sign).sum() / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align(image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate = ARCFACE_112_V1) -> np.ndarray:
    """Warp `image` so that `landmarks` (5, 2) land on the template; returns a size x size crop."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {landmarks.shape}")
    matrix = similarity_transform(landmarks, template.as_array())
    return cv2.warpAffine(image, matrix, (template.size, template.size), flags=cv2.INTER_LINEAR)
