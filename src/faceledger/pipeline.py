"""The image-to-faces pipeline: detect -> align -> quality -> embed. Knows nothing of storage."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .config import Settings
from .detect import Detector, create_detector
from .embed import Embedder, create_embedder
from .embed.alignment import ARCFACE_112_V1, similarity_transform
from .errors import FaceNotChosen, MultipleFaces, NoFaceFound
from .faces import Detection, Face
from .imaging import LoadedImage, from_array
from .quality import QualityThresholds, assess

DOMINANCE_RATIO = 0.6
"""A second face at least this fraction of the largest face's size makes an image ambiguous."""


ALIGN_OVERSAMPLE = 4.0
"""A face is aligned from pixels at this many times the template's resolution (region of the full image,
area-downscaled when finer): enough for a 112-px template, and a big photo never costs more than that."""

MIN_COMPETITOR_PX = 24.0
"""The coarse detection pass decides alone only when a competing face (DOMINANCE_RATIO of the chosen
one) would be at least this many pixels there, which YuNet finds reliably; otherwise the full pass runs."""

DETECTOR_STRIDE = 32
"""YuNet's coarsest feature stride: crops for the refinement start on this grid of the preview."""
REFINE_CONTEXT = 0.65
"""The face chosen on the coarse pass is detected again on its region of the full pass's preview, the box
widened by this fraction of its size on each side (the framing of a 250-px LFW portrait)."""

ImageInput = np.ndarray | LoadedImage
"""The pipeline takes an RGB uint8 array or a LoadedImage (which can decode less)."""


@dataclass
class FacePipeline:
    """A loaded detector + embedder and the quality rules; one per process (models are not fork-safe).

    Detection runs on a copy bounded by detect_max_side; each face is aligned from a region of the image
    at ALIGN_OVERSAMPLE x the template's resolution, so boxes and landmarks are in full-resolution pixels
    and a 12 MP photo costs about what a small one does."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    detect_max_side: int = 1280
    coarse_side: int = 640
    """single_face first detects on a copy this size (0: never) and falls back to detect_max_side."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    """OpenCV's YuNet and SFace objects keep per-call state (input size, buffers): one call at a time."""

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
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
        return cls(detector=detector, embedder=embedder, thresholds=thresholds,
                   detect_max_side=settings.detect_max_side, coarse_side=settings.detect_coarse_side)

    def load(self) -> None:
        self.detector.load()
        self.embedder.load()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def image(self, image: ImageInput) -> LoadedImage:
        return image if isinstance(image, LoadedImage) else from_array(image, work_side=self.detect_max_side)

    def faces(self, image: ImageInput, *, embed: bool = True) -> list[Face]:
        """Every face in the image, largest first, with its quality report and (optionally) embedding.

        Safe to call from several threads: the models are used by one thread at a time."""
        with self._lock:
            return self._faces(self.image(image), embed=embed)

    def _faces(self, image: LoadedImage, *, embed: bool, side: int | None = None) -> list[Face]:
        faces = []
        for detection in self._detect(image, side):
            crop = self.aligned_crop(image, detection.landmarks)
            quality = assess(detection, crop, self.thresholds)
            vector = self.embedder.embed_aligned(crop) if embed else None
            faces.append(Face(detection=detection, quality=quality, embedding=vector))
        return sorted(faces, key=lambda f: f.detection.area, reverse=True)

    def _detect(self, image: LoadedImage, side: int | None) -> list[Detection]:
        """Detections in full-resolution coordinates, found on the preview (or a copy `side` long)."""
        preview = image.preview_at(side or self.detect_max_side)
        fx, fy = image.width / preview.shape[1], image.height / preview.shape[0]
        found = []
        for d in self.detector.detect(preview):
            x0, y0, x1, y1 = d.box
            found.append(Detection(box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy), score=d.score,
                                   landmarks=(d.landmarks * np.array([fx, fy], dtype=np.float32)).astype(np.float32)))
        return found

    def aligned_crop(self, image: ImageInput, landmarks: np.ndarray) -> np.ndarray:
        """The template-aligned crop of the face with these (full-resolution) landmarks, made from a
        region of the image at ALIGN_OVERSAMPLE x the template's resolution (never the whole image)."""
        image = self.image(image)
        template = getattr(self.embedder, "template", ARCFACE_112_V1)
        landmarks = np.asarray(landmarks, dtype=np.float64)
        matrix = similarity_transform(landmarks, template.as_array())
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))) or 1.0  # template px per image px
        corners = np.array([[0, 0], [template.size, 0], [0, template.size], [template.size, template.size]], float)
        inverse = cv2.invertAffineTransform(matrix)
        mapped = corners @ inverse[:, :2].T + inverse[:, 2]
        margin = 2.0 / scale
        box = (*(mapped.min(axis=0) - margin), *(mapped.max(axis=0) + margin))
        wanted = min(1.0, ALIGN_OVERSAMPLE * scale)
        region = image.region(box, min_scale=min(1.0, scale))  # never upsampled; finer is area-reduced
        pixels, factor = region.rgb, region.scale
        if factor > wanted * 1.05 and pixels.shape[0] > 1 and pixels.shape[1] > 1:
            size = (max(1, round(pixels.shape[1] * wanted / factor)), max(1, round(pixels.shape[0] * wanted / factor)))
            fx, fy = size[0] / pixels.shape[1], size[1] / pixels.shape[0]
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        else:
            fx = fy = 1.0
        local = (landmarks - (region.x0, region.y0)) * factor * np.array([fx, fy])
        return self.embedder.aligned_crop(np.ascontiguousarray(pixels), local)

    def with_embeddings(self, image: ImageInput, faces: Sequence[Face]) -> tuple[Face, ...]:
        """The same faces with their embeddings: embed only the faces that were chosen (SFace is the
        costly stage, and news photos often hold bystanders nobody needs a vector of)."""
        with self._lock:
            image = self.image(image)
            return tuple(face if face.embedding is not None else replace(
                face, embedding=self.embedder.embed_aligned(self.aligned_crop(image, face.detection.landmarks)))
                for face in faces)

    def single_face(self, image: ImageInput, *, name: str, on_multiple: str = "refuse") -> Face:
        """The one usable face of an image (probe or enrolment photo), with its embedding, or a clear error.

        on_multiple: "refuse" (MultipleFaces when more than one usable face), "largest" (take it),
        "index:N" (face N as numbered by `faces`: the full detection pass, so the numbers agree).
        """
        image = self.image(image)
        with self._lock:
            found = None if on_multiple.startswith("index:") else self._coarse_faces(image)
            if found is None:
                found = self._faces(image, embed=False)
        chosen = choose_face(found, name=name, on_multiple=on_multiple)
        return self.with_embeddings(image, [chosen])[0]

    def _coarse_faces(self, image: LoadedImage) -> list[Face] | None:
        """Faces from detection on a coarse copy, or None when the full pass must decide: nothing usable
        was found, or a competing face could be too small there to be seen."""
        if not self.coarse_side or self.coarse_side >= min(self.detect_max_side, max(image.width, image.height)):
            return None
        found = self._faces(image, embed=False, side=self.coarse_side)
        usable = [f for f in found if f.quality.usable]
        if not usable:
            return None
        coarse_px = usable[0].quality.face_size * self.coarse_side / max(image.width, image.height)
        if DOMINANCE_RATIO * coarse_px < MIN_COMPETITOR_PX:
            return None
        return [self._refined(image, f) if f is usable[0] else f for f in found]

    def _refined(self, image: LoadedImage, face: Face) -> Face:
        """The face detected again on its own region of the detect_max_side preview (the pixels the full
        pass would see), so its landmarks are those of a full pass; the coarse face if none is found."""
        preview = image.preview_at(self.detect_max_side)
        fx, fy = preview.shape[1] / image.width, preview.shape[0] / image.height
        x0, y0, x1, y1 = face.box
        w, h, c = x1 - x0, y1 - y0, REFINE_CONTEXT
        g = DETECTOR_STRIDE  # a crop on the network's coarsest grid sees the pixels the full pass sees, aligned
        left, top = max(0, int((x0 - c * w) * fx) // g * g), max(0, int((y0 - c * h) * fy) // g * g)
        right = min(preview.shape[1], -(-int(np.ceil((x1 + c * w) * fx)) // g) * g)
        bottom = min(preview.shape[0], -(-int(np.ceil((y1 + c * h) * fy)) // g) * g)
        if right - left < 2 or bottom - top < 2:
            return face
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        best = None
        for d in self.detector.detect(np.ascontiguousarray(preview[top:bottom, left:right])):
            a0, b0, a1, b1 = d.box
            box = ((a0 + left) / fx, (b0 + top) / fy, (a1 + left) / fx, (b1 + top) / fy)
            distance = ((box[0] + box[2]) / 2 - cx) ** 2 + ((box[1] + box[3]) / 2 - cy) ** 2
            if distance < (0.25 * min(w, h)) ** 2 and (best is None or distance < best[0]):
                landmarks = ((d.landmarks + np.array([left, top], dtype=np.float32))
                             / np.array([fx, fy], dtype=np.float32)).astype(np.float32)
                best = (distance, Detection(box=box, score=d.score, landmarks=landmarks))
        if best is None:
            return face
        crop = self.aligned_crop(image, best[1].landmarks)
        return Face(detection=best[1], quality=assess(best[1], crop, self.thresholds))


def choose_face(faces: list[Face], *, name: str, on_multiple: str = "refuse") -> Face:
    """on_multiple: "refuse", "largest", or "index:N": face N of `faces` (from 1; largest first, as
    `FacePipeline.faces` numbers them), which must be usable."""
    if on_multiple.startswith("index:"):
        return _face_number(faces, name=name, number=on_multiple[len("index:"):])
    if on_multiple not in ("refuse", "largest"):
        raise ValueError(f"on_multiple must be 'refuse', 'largest' or 'index:N', not {on_multiple!r}")
    if not faces:
        raise NoFaceFound(f"{name}: no face found")
    usable = [f for f in faces if f.quality.usable]
    if not usable:
        reasons = "; ".join(faces[0].quality.reasons)
        raise NoFaceFound(f"{name}: {len(faces)} face(s) found but none is usable ({reasons})")
    if on_multiple == "refuse" and competing_faces(usable):
        raise MultipleFaces(
            f"{name}: {1 + len(competing_faces(usable))} faces of similar size found; use one face per image, "
            "or choose --face N (search), --largest-face or --allow-multiple (enrol)"
        )
    return usable[0]


def _face_number(faces: list[Face], *, name: str, number: str) -> Face:
    """Face N (from 1, largest first) of the image, if it is usable."""
    if not number.isdigit() or int(number) < 1:
        raise FaceNotChosen(f"{name}: choose a face by its number (1 is the largest), not {number!r}")
    if int(number) > len(faces):
        raise FaceNotChosen(f"{name}: there is no face {number}; {len(faces)} face(s) found")
    face = faces[int(number) - 1]
    if not face.quality.usable:
        raise NoFaceFound(f"{name}: face {number} is not usable ({'; '.join(face.quality.reasons)})")
    return face


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
