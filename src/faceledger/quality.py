"""Is this face usable? Size, sharpness, pose from landmarks, detector score -> QualityReport."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Detection, QualityReport


@dataclass(frozen=True)
class QualityThresholds:
    min_face_size: float = 40.0
    min_sharpness: float = 25.0
    max_yaw: float = 50.0
    max_pitch: float = 45.0
    min_detector_score: float = 0.7


def face_size(detection: Detection) -> float:
    """Face size in pixels: the shorter side of the box."""
    return float(min(detection.width, detection.height))


def sharpness(aligned_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned grey crop (fixed scale, so comparable between faces)."""
    grey = cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Rough (yaw, pitch, roll) in degrees from the 5 landmarks; 0 is frontal.

    Roll is the angle of the eye line. Yaw comes from how far the nose sits from the midpoint of the
    eyes relative to half the eye distance (arcsin); pitch from where the nose sits between the eye line
    and the mouth line (0.5 of the way on a frontal face in the ArcFace template's proportions).
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_r, eye_l, nose, mouth_r, mouth_l = pts
    eye_vec = eye_l - eye_r
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    eye_dist = float(np.hypot(*eye_vec)) or 1e-6
    # Rotate into the eye-line frame so roll does not leak into yaw and pitch.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    eye_mid = (eye_r + eye_l) / 2
    mouth_mid = (mouth_r + mouth_l) / 2
    nose_r = rot @ (nose - eye_mid)
    mouth_r_ = rot @ (mouth_mid - eye_mid)
    yaw = math.degrees(math.asin(float(np.clip(nose_r[0] / (eye_dist / 2), -1.0, 1.0))))
    vertical = mouth_r_[1] if abs(mouth_r_[1]) > 1e-6 else 1e-6
    ratio = nose_r[1] / vertical  # about 0.5 for a frontal face
    pitch = math.degrees(math.asin(float(np.clip((ratio - 0.5) * 2, -1.0, 1.0))))
    return yaw, pitch, roll


def assess(detection: Detection, aligned_rgb: np.ndarray, thresholds: QualityThresholds) -> QualityReport:
    """Measure a face and list every reason it is unusable (empty list: usable)."""
    size = face_size(detection)
    sharp = sharpness(aligned_rgb)
    yaw, pitch, roll = pose_from_landmarks(detection.landmarks)
    reasons = []
    if size < thresholds.min_face_size:
        reasons.append(f"face too small ({size:.0f} px < {thresholds.min_face_size:.0f} px)")
    if sharp < thresholds.min_sharpness:
        reasons.append(f"too blurry (sharpness {sharp:.0f} < {thresholds.min_sharpness:.0f})")
    if abs(yaw) > thresholds.max_yaw:
        reasons.append(f"head turned too far (yaw {yaw:.0f} deg, limit {thresholds.max_yaw:.0f})")
    if abs(pitch) > thresholds.max_pitch:
        reasons.append(f"head tilted too far (pitch {pitch:.0f} deg, limit {thresholds.max_pitch:.0f})")
    if detection.score < thresholds.min_detector_score:
        reasons.append(f"weak detection (score {detection.score:.2f} < {thresholds.min_detector_score:.2f})")
    return QualityReport(
        face_size=size, sharpness=sharp, yaw=yaw, roll=roll, pitch=pitch,
        detector_score=detection.score, reasons=tuple(reasons),
    )
