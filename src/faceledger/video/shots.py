"""From a sampled frame to observations, and from a track to its best shots and one search template.

Fusion: a track's template is the mean of its best shots' L2-normalised embeddings, renormalised (the
shots differ in pose, so the mean is steadier than any one of them; a max over shots would search a
track several times and raise its false-match rate with every extra shot).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ..faces import Detection, Face
from ..pipeline import FacePipeline
from ..quality import assess
from .track import Observation, Track, shot_score

THUMB_SIDE = 128


def observe(pipeline: FacePipeline, t: float, frame_index: int, rgb: np.ndarray, *,
            detect_max_side: int | None = None) -> list[Observation]:
    """Every face in a frame with its quality, aligned crop and a small crop (for the thumbnail); the
    embedding is computed later, only if needed (see track.py and `embedder`).

    detect_max_side: find faces on a copy scaled down to this side (video frames are big and the
    detector's cost grows with the pixels), then judge quality and align from the full frame."""
    height, width = rgb.shape[:2]
    scale = 1.0 if not detect_max_side else min(1.0, detect_max_side / max(height, width))
    small = rgb if scale >= 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)),
                                                 interpolation=cv2.INTER_AREA)
    observations = []
    for face in pipeline.faces(small, embed=False):
        d = face.detection
        detection = d if scale >= 1.0 else Detection(
            box=tuple(v / scale for v in d.box), landmarks=(d.landmarks / scale).astype(np.float32), score=d.score)
        aligned = pipeline.embedder.aligned_crop(rgb, detection.landmarks)
        observations.append(Observation(
            t=t, frame=frame_index, box=tuple(float(v) for v in detection.box), landmarks=detection.landmarks,
            score=float(detection.score), quality=assess(detection, aligned, pipeline.thresholds),
            aligned=aligned, crop=face_crop(rgb, detection.box)))
    return observations


def embedder(pipeline: FacePipeline) -> Callable[[Observation], np.ndarray]:
    """A function giving an observation's embedding, computed once from its aligned crop."""

    def embed(obs: Observation) -> np.ndarray:
        if obs.embedding is None:
            if obs.aligned is None:
                raise ValueError("this observation's pixels were already dropped")
            with pipeline._lock:  # the models run one call at a time (see FacePipeline)
                obs.embedding = pipeline.embedder.embed_aligned(obs.aligned)
        return obs.embedding

    return embed


def detect_faces(pipeline: FacePipeline, rgb: np.ndarray, detect_max_side: int | None) -> tuple[Face, ...]:
    """Faces with embeddings, found as `observe` finds them (for a per-frame comparison)."""
    embed = embedder(pipeline)
    return tuple(Face(detection=Detection(box=o.box, landmarks=o.landmarks, score=o.score), quality=o.quality,
                      embedding=embed(o)) for o in observe(pipeline, 0.0, 0, rgb, detect_max_side=detect_max_side))


def face_crop(rgb: np.ndarray, box: tuple[float, ...], *, margin: float = 0.25, side: int = THUMB_SIDE) -> np.ndarray:
    """The face box grown by `margin` on each side, clipped, scaled down to at most `side` pixels."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    x0, y0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
    x1, y1 = min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my)))
    crop = rgb[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    scale = min(1.0, side / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def select_shots(track: Track, *, max_shots: int = 3, min_pose_delta: float = 12.0) -> list[Observation]:
    """The track's best usable observation, then up to max_shots - 1 more that differ from every chosen
    one by at least min_pose_delta degrees of yaw or pitch (several views of one face, not the same view
    three times). Empty when the track has no usable observation."""
    usable = sorted((o for o in track.best if o.quality.usable), key=shot_score, reverse=True)
    chosen: list[Observation] = []
    for obs in usable:
        if len(chosen) >= max_shots:
            break
        if all(max(abs(obs.quality.yaw - c.quality.yaw), abs(obs.quality.pitch - c.quality.pitch)) >= min_pose_delta
               for c in chosen):
            chosen.append(obs)
    return chosen


def template(shots: list[Observation], embed: Callable[[Observation], np.ndarray]) -> np.ndarray:
    """Mean of the shots' L2-normalised embeddings, renormalised: the one vector a track is searched with."""
    if not shots:
        raise ValueError("a template needs at least one shot")
    vectors = [embed(o) for o in shots]
    stacked = np.stack([v / (np.linalg.norm(v) + 1e-12) for v in vectors]).astype(np.float32)
    mean = stacked.mean(axis=0)
    return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)


def thumbnail_jpeg(obs: Observation, *, quality: int = 85) -> bytes | None:
    """The observation's crop as JPEG bytes (None when its crop was already discarded)."""
    if obs.crop is None:
        return None
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(obs.crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buffer.tobytes() if ok else None


def forget(track: Track) -> None:
    """Drop a track's embeddings and crops (a bystander's): only its times and boxes remain in memory."""
    for obs in track.observations:
        obs.crop = obs.aligned = obs.embedding = None
    track.best.clear()
