"""The image-to-faces pipeline: detect -> align -> quality -> embed. Knows nothing of storage."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .config import Settings
from .detect import Detector, create_detector
from .embed import Embedder, create_embedder
from .errors import MultipleFaces, NoFaceFound
from .faces import Face
from .quality import QualityThresholds, assess


DOMINANCE_RATIO = 0.6
"""A second face at least this fraction of the largest face's size makes an image ambiguous."""


@dataclass
class FacePipeline:
    """A loaded detector + embedder and the quality rules; one per process (models are not fork-safe)."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    """OpenCV's YuNet and SFace objects keep per-call state (input size, buffers): one call at a time."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "FacePipeline":
        detector = create_detector(
            settings.detector,
            score_threshold=settings.detector_score_threshold,
            max_side=settings.detect_max_side,
            model_dir=settings.model_dir,
        )
        embedder = create_embedder(
            settings.embedder, backend=settings.embed_backend, flip_average=settings.flip_average,
            model_dir=settings.model_dir,
        )
        thresholds = QualityThresholds(
            min_face_size=settings.min_face_size,
            min_sharpness=settings.min_sharpness,
            max_yaw=settings.max_yaw_degrees,
            min_detector_score=settings.min_detector_score,
        )
        return cls(detector=detector, embedder=embedder, thresholds=thresholds)

    def load(self) -> None:
        self.detector.load()
        self.embedder.load()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def faces(self, rgb: np.ndarray, *, embed: bool = True) -> list[Face]:
        """Every face in the image, largest first, with its quality report and (optionally) embedding.

        Safe to call from several threads: the models are used by one thread at a time."""
        with self._lock:
            return self._faces(rgb, embed=embed)

    def _faces(self, rgb: np.ndarray, *, embed: bool) -> list[Face]:
        faces = []
        for detection in self.detector.detect(rgb):
            crop = self.embedder.aligned_crop(rgb, detection.landmarks)
            quality = assess(detection, crop, self.thresholds)
            vector = self.embedder.embed_aligned(crop) if embed else None
            faces.append(Face(detection=detection, quality=quality, embedding=vector))
        return sorted(faces, key=lambda f: f.detection.area, reverse=True)

    def with_embeddings(self, rgb: np.ndarray, faces: Sequence[Face]) -> tuple[Face, ...]:
        """The same faces with their embeddings: embed only the faces that were chosen (SFace is the
        costly stage, and news photos often hold bystanders nobody needs a vector of)."""
        with self._lock:
            return tuple(face if face.embedding is not None else replace(
                face, embedding=self.embedder.embed(rgb, face.detection.landmarks)) for face in faces)

    def single_face(self, rgb: np.ndarray, *, name: str, on_multiple: str = "refuse") -> Face:
        """The one usable face of an image (probe or enrolment photo), with its embedding, or a clear error.

        on_multiple: "refuse" (MultipleFaces when more than one usable face), "largest" (take it).
        """
        chosen = choose_face(self.faces(rgb, embed=False), name=name, on_multiple=on_multiple)
        return self.with_embeddings(rgb, [chosen])[0]


def choose_face(faces: list[Face], *, name: str, on_multiple: str = "refuse") -> Face:
    if on_multiple not in ("refuse", "largest"):
        raise ValueError(f"on_multiple must be 'refuse' or 'largest', not {on_multiple!r}")
    if not faces:
        raise NoFaceFound(f"{name}: no face found")
    usable = [f for f in faces if f.quality.usable]
    if not usable:
        reasons = "; ".join(faces[0].quality.reasons)
        raise NoFaceFound(f"{name}: {len(faces)} face(s) found but none is usable ({reasons})")
    if on_multiple == "refuse" and competing_faces(usable):
        raise MultipleFaces(
            f"{name}: {1 + len(competing_faces(usable))} faces of similar size found; use one face per image, "
            "or choose --largest-face / --allow-multiple"
        )
    return usable[0]


def competing_faces(usable: list[Face]) -> list[Face]:
    """Usable faces other than the largest that are at least DOMINANCE_RATIO of its size.

    A face much smaller than the main one is a bystander in the background (common in news photos),
    not a second subject; a group photo has faces of similar size.
    """
    if len(usable) < 2:
        return []
    main = usable[0].quality.face_size
    return [f for f in usable[1:] if f.quality.face_size >= DOMINANCE_RATIO * main]


def central_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """The face whose box centre is nearest the image centre (the LFW convention)."""
    if not faces:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2

    def distance(face: Face) -> float:
        x0, y0, x1, y1 = face.box
        return (0.5 * (x0 + x1) - cx) ** 2 + (0.5 * (y0 + y1) - cy) ** 2

    return min(faces, key=distance)
