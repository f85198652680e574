"""Face detectors: a tiny protocol and an explicit registry keyed by name."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import FaceledgerError
from ..faces import Detection


class Detector(Protocol):
    name: str

    def load(self) -> None: ...

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB uint8 image, best score first."""
        ...


def _yunet(**kwargs) -> Detector:
    from .yunet import YuNetDetector

    return YuNetDetector(**kwargs)


DETECTORS = {"yunet": _yunet}


def create_detector(name: str, **kwargs) -> Detector:
    """Build a detector by registry name; an unknown name is an error, never a guess."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise FaceledgerError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}") from None
    return factory(**kwargs)
