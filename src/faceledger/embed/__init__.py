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

    def aligned_crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The aligned RGB crop the model sees."""
        ...


def _sface(**kwargs) -> Embedder:
    from .sface import SFaceEmbedder

    return SFaceEmbedder(**kwargs)


EMBEDDERS = {"sface": _sface}


def create_embedder(name: str, **kwargs) -> Embedder:
    """Build an embedder by registry name; an unknown name is an error, never a guess."""
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise FaceledgerError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}") from None
    return factory(**kwargs)

