"""The image-to-faces pipeline: detect -> align -> quality -> embed. Knows nothing of storage."""

from __future__ import annotations

import math
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
from .imaging import LoadedImage, Region, from_array
from .loading import LoadOnce
from .quality import QualityThresholds, assess

DOMINANCE_RATIO = 0.6
"""A second face at least this fraction of the largest face's size makes an image ambiguous."""


ALIGN_MIN_SCALE_RATIO = 0.9
"""A face is aligned from pixels binned to a power-of-two scale holding at least this fraction of the
template's resolution (so 0.9 to 1.8x of it): a 12 MP photo's face comes from its 1/4 or 1/8 JPEG decode,
and a face only slightly short of a scale is upsampled 1.1x rather than decoded again at the next one."""
COARSE_SCALE_RATIO = 0.7
"""The coarse pass judges quality on crops holding this fraction of the template's resolution, and first
refines the chosen face at the kept decode's scale when that holds this fraction: coarse landmarks are a
few percent off, and a face just short of a scale there is often not once refined. The refined face is
aligned at ALIGN_MIN_SCALE_RATIO, decoding finer only then if it needs to."""

MIN_COMPETITOR_PX = 24.0
"""The coarse detection pass decides alone only when a competing face (DOMINANCE_RATIO of the chosen
one) would be at least this many pixels there, which YuNet finds reliably; otherwise the full pass runs."""

DETECTOR_STRIDE = 32
"""YuNet's coarsest feature stride: the refinement's window lies on this grid of the whole image."""
REFINE_CELLS = 10
"""The face chosen on the coarse pass is detected again on a window this many DETECTOR_STRIDE cells square
(320 px) around it, at its alignment scale, where the face is 80-160 px: at least the framing of a 250-px
LFW portrait (the box widened by 0.65 of its size on each side)."""

ImageInput = np.ndarray | LoadedImage
"""The pipeline takes an RGB uint8 array or a LoadedImage (which can decode less)."""


@dataclass
class FacePipeline:
    """A loaded detector + embedder and the quality rules; one per process (models are not fork-safe).

    Detection runs on a copy bounded by detect_max_side (single_face: first on a coarse copy); each face
    is aligned from a region of the image binned to about the template's resolution, so boxes and
    landmarks are in full-resolution pixels and a 12 MP photo costs little more than its JPEG decode."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    detect_max_side: int = 1280
    coarse_side: int = 640
    """single_face first detects on a copy this size (0: never) and falls back to detect_max_side."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    """OpenCV's YuNet and SFace objects keep per-call state (input size, buffers): one call at a time."""
    _detector_load: LoadOnce = field(init=False, repr=False, compare=False)
    _embedder_load: LoadOnce = field(init=False, repr=False, compare=False)
    _loader: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    _loader_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._detector_load = LoadOnce(self.detector.load)
        self._embedder_load = LoadOnce(self.embedder.load)

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
        """Load the detector and the embedder. Safe to call twice and from several threads: a load already
        running (on another thread, or started by `start_loading`) is waited for, and its exception, if it
        failed, is raised here, on the caller's thread (see loading.py)."""
        self._detector_load.ensure()
        self._embedder_load.ensure()

    def start_loading(self) -> None:
        """Start loading the models on a background thread and return at once; idempotent.

        Loading the models of a fresh process (importing ONNX Runtime, creating the detector's and the
        embedder's sessions, checking their files' and caches' sha256) takes about 0.1 s of CPU, much of
        it with the GIL released, so a one-shot command can call this as early as it likes and do its
        other start-up work (imports, opening the store) meanwhile. Nothing else changes: `load`,
        `faces`, `single_face` and `with_embeddings` wait for the model they need (detection can start
        while the embedder is still loading), and a load that failed there (a missing or altered model
        file: ModelNotAvailable) raises in them, on the caller's thread, as it would have without this.

        Set up first: `caches.use_dir(...)` when the caller keeps a cache folder (the engine's Context
        names `<home>/cache`; a one-shot process without an engine must call
        `caches.use_dir(settings.home / "cache")` itself before this), because the embedder looks for
        its optimised graph there when the thread reaches it. The thread is not a daemon: a process that
        ends before the models are loaded (a refused argument, an error) waits for it at exit, at most
        the load's own time, because a daemon thread still inside ONNX Runtime when the interpreter shuts
        down aborts the process ("terminate called without an active exception", exit status 134
        instead of the command's own)."""
        with self._loader_lock:
            if self._loader is not None or (self._detector_load.loaded and self._embedder_load.loaded):
                return
            self._loader = threading.Thread(target=self._load_ahead, name="faceledger-models", daemon=False)
        self._loader.start()

    def _load_ahead(self) -> None:
        self._detector_load.prefetch()
        self._embedder_load.prefetch()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def image(self, image: ImageInput) -> LoadedImage:
        return image if isinstance(image, LoadedImage) else from_array(image, work_side=self.detect_max_side)

    def faces(self, image: ImageInput, *, embed: bool = True) -> list[Face]:
        """Every face in the image, largest first, with its quality report and (optionally) embedding.

        Safe to call from several threads: the models are used by one thread at a time."""
        self._detector_load.ensure()
        if embed:
            self._embedder_load.ensure()
        with self._lock:
            return self._faces(self.image(image), embed=embed)

    def _faces(self, image: LoadedImage, *, embed: bool) -> list[Face]:
        faces = []
        for detection in self._detect(image):
            crop = self.aligned_crop(image, detection.landmarks)
            quality = assess(detection, crop, self.thresholds)
            vector = self.embedder.embed_aligned(crop) if embed else None
            faces.append(Face(detection=detection, quality=quality, embedding=vector))
        return sorted(faces, key=lambda f: f.detection.area, reverse=True)

    def _detect(self, image: LoadedImage) -> list[Detection]:
        """Detections in full-resolution coordinates, found on the preview (longest side detect_max_side)."""
        preview = image.preview_at(self.detect_max_side)
        fx, fy = image.width / preview.shape[1], image.height / preview.shape[0]
        found = []
        for d in self.detector.detect(preview):
            x0, y0, x1, y1 = d.box
            found.append(Detection(box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy), score=d.score,
                                   landmarks=(d.landmarks * np.array([fx, fy], dtype=np.float32)).astype(np.float32)))
        return found

    def aligned_crop(self, image: ImageInput, landmarks: np.ndarray, *,
                     min_ratio: float = ALIGN_MIN_SCALE_RATIO) -> np.ndarray:
        """The template-aligned crop of the face with these (full-resolution) landmarks, warped from a
        region of the image binned to `alignment_scale` (1 to 2x the template's resolution; never the
        whole image, and the same pixels from a reduced-scale JPEG decode as from the full one)."""
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
        region = image.binned_region(box, scale=alignment_scale(scale, ratio=min_ratio))
        local = (landmarks - (region.x0, region.y0)) * region.scale
        return self.embedder.aligned_crop(np.ascontiguousarray(region.rgb), local)

    def with_embeddings(self, image: ImageInput, faces: Sequence[Face]) -> tuple[Face, ...]:
        """The same faces with their embeddings: embed only the faces that were chosen (SFace is the
        costly stage, and news photos often hold bystanders nobody needs a vector of)."""
        if any(face.embedding is None for face in faces):
            self._embedder_load.ensure()
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
        self._detector_load.ensure()
        with self._lock:
            found = None if on_multiple.startswith("index:") else self._coarse_faces(image)
            if found is None:
                found = self._faces(image, embed=False)
        chosen = choose_face(found, name=name, on_multiple=on_multiple)
        return self.with_embeddings(image, [chosen])[0]

    def _coarse_faces(self, image: LoadedImage) -> list[Face] | None:
        """Faces from one detection pass on a coarse copy (the kept decode shrunk by a whole factor), or
        None when the full pass must decide: nothing usable was found, or a competing face could be too
        small to be seen (under MIN_COMPETITOR_PX) on any copy the kept decode can give below
        detect_max_side. When the coarse copy is too small for that but such a copy exists, it is
        detected on instead (one more pass, sized to make a competitor MIN_COMPETITOR_PX). The chosen
        face is then detected again on its own region (`_refined`). Quality here is judged on crops
        allowed COARSE_SCALE_RATIO of the template's resolution, so the coarse landmarks' jitter does
        not make a finer decode that the refined face would not need."""
        longest = max(image.width, image.height)
        if not self.coarse_side or self.coarse_side >= min(self.detect_max_side, longest):
            return None
        copy = image.reduced(self.coarse_side)
        for attempt in range(2):
            found = []
            for detection in self._detect_region(copy):
                crop = self.aligned_crop(image, detection.landmarks, min_ratio=COARSE_SCALE_RATIO)
                found.append(Face(detection=detection, quality=assess(detection, crop, self.thresholds)))
            found.sort(key=lambda f: f.detection.area, reverse=True)
            usable = [f for f in found if f.quality.usable]
            if not usable:
                return None
            needed = MIN_COMPETITOR_PX / (DOMINANCE_RATIO * usable[0].quality.face_size)  # copy px per image px
            if copy.scale >= needed:
                return [self._refined(image, f) if f is usable[0] else f for f in found]
            side = DETECTOR_STRIDE * math.ceil(needed * longest / DETECTOR_STRIDE)
            if attempt or side >= self.detect_max_side or image.base_scale * longest < side:
                return None
            preview = image.preview_at(side)  # from the kept decode: no new decode
            copy = Region(rgb=preview, x0=0.0, y0=0.0, scale=preview.shape[1] / image.width)
        return None

    def _detect_region(self, region: Region) -> list[Detection]:
        """Detections on a region's pixels, in full-resolution coordinates."""
        scale = np.float32(region.scale)
        offset = np.array([region.x0, region.y0], dtype=np.float32)
        found = []
        for d in self.detector.detect(np.ascontiguousarray(region.rgb)):
            x0, y0, x1, y1 = d.box
            box = (x0 / region.scale + region.x0, y0 / region.scale + region.y0,
                   x1 / region.scale + region.x0, y1 / region.scale + region.y0)
            found.append(Detection(box=box, score=d.score, landmarks=(d.landmarks / scale + offset).astype(np.float32)))
        return found

    def _refined(self, image: LoadedImage, face: Face) -> Face:
        """The face detected again on its own region at its alignment scale (`_redetected`; the kept
        decode's scale when the coarse landmarks are just short of it), and once more if the refined
        landmarks call for another scale, so that the landmarks come from the scale they choose (whatever
        the coarse pass said); the coarse face if the region shows none."""
        coarse = self._template_scale(face.detection.landmarks)
        scale = alignment_scale(coarse)
        if scale > image.base_scale >= alignment_scale(coarse, ratio=COARSE_SCALE_RATIO):
            scale = alignment_scale(coarse, ratio=COARSE_SCALE_RATIO)  # no finer decode for the coarse jitter
        found = self._redetected(image, face.detection, scale)
        if found is None:
            return face
        final = alignment_scale(self._template_scale(found.landmarks))
        if final != scale:
            found = self._redetected(image, found, final) or found
        crop = self.aligned_crop(image, found.landmarks)
        return Face(detection=found, quality=assess(found, crop, self.thresholds))

    def _redetected(self, image: LoadedImage, detection: Detection, scale: float) -> Detection | None:
        """The face detected on its region binned to `scale`: REFINE_CELLS square cells of the image-wide
        DETECTOR_STRIDE grid around the cell of the box's centre. The pixels, their place in the
        network's grid and the window do not depend on the photo's decode scale or on small shifts of the
        box, so neither do the landmarks. None if no face is found at the box's centre."""
        x0, y0, x1, y1 = detection.box
        cell = DETECTOR_STRIDE / scale  # one grid cell in full-resolution pixels
        left = (math.floor((x0 + x1) / 2 / cell) - REFINE_CELLS // 2) * cell
        top = (math.floor((y0 + y1) / 2 / cell) - REFINE_CELLS // 2) * cell
        region = image.binned_region((left, top, left + REFINE_CELLS * cell, top + REFINE_CELLS * cell),
                                     scale=scale, grid=DETECTOR_STRIDE)
        best = None
        for d in self._detect_region(region):
            distance = float(np.hypot((d.box[0] + d.box[2] - x0 - x1) / 2, (d.box[1] + d.box[3] - y0 - y1) / 2))
            if distance < 0.25 * min(x1 - x0, y1 - y0) and (best is None or distance < best[0]):
                best = (distance, d)
        return None if best is None else best[1]

    def _template_scale(self, landmarks: np.ndarray) -> float:
        """Template pixels per full-resolution pixel for a face with these landmarks."""
        template = getattr(self.embedder, "template", ARCFACE_112_V1)
        matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64), template.as_array())
        return float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))) or 1.0


def alignment_scale(template_scale: float, *, ratio: float = ALIGN_MIN_SCALE_RATIO) -> float:
    """The scale a face is aligned and refined at: the coarsest power of two (1, 1/2, 1/4, ...) that holds
    `ratio` of the template's resolution (template_scale: template px per image px)."""
    return float(min(1.0, 2.0 ** math.ceil(math.log2(max(ratio * template_scale, 1e-9)))))


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
