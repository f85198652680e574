"""Face embedders: a tiny protocol and an explicit registry keyed by name."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import FaceledgerError
from .vectors import l2_normalise

__all__ = ["EMBEDDERS", "Embedder", "create_embedder", "l2_normalise"]


class Embedder(Protocol):
    name: str
    model_id: str
    template_id: str
    dim: int

    def load(self) -> None: ...

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embedding (dim,) of the face with these 5 landmarks."""
        ...

    def embed_aligned(self, crop_rgb: np.ndarray) -> np.ndarray:
        """Embedding of a crop already produced by aligned_crop."""
        ...

    def embed_aligned_batch(self, crops_rgb) -> np.ndarray:
        """(n, dim) embeddings of n crops made by aligned_crop (one forward pass where the backend can)."""
        ...

    def aligned_crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The aligned RGB crop the model sees."""
        ...


def _sface_opencv(**kwargs) -> Embedder:
    from .sface import SFaceEmbedder

    return SFaceEmbedder(**kwargs)


def _sface_onnxruntime(**kwargs) -> Embedder:
    from .sface_ort import SFaceOrtEmbedder

    return SFaceOrtEmbedder(**kwargs)


EMBEDDERS = {"sface": {"onnxruntime": _sface_onnxruntime, "opencv": _sface_opencv}}
"""name -> backend (the engine that runs the model) -> factory. A backend changes speed, never the
vectors beyond float rounding: vectors that differ more belong under a different model id."""

DEFAULT_BACKEND = "onnxruntime"


def create_embedder(name: str, *, backend: str = DEFAULT_BACKEND, **kwargs) -> Embedder:
    """Build an embedder by registry name and backend; an unknown name is an error, never a guess."""
    try:
        backends = EMBEDDERS[name]
    except KeyError:
        raise FaceledgerError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}") from None
    try:
        factory = backends[backend]
    except KeyError:
        raise FaceledgerError(
            f"unknown backend {backend!r} for embedder {name!r}; known: {', '.join(sorted(backends))}"
        ) from None
    return factory(**kwargs)

