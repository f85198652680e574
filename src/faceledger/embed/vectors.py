"""Vector helpers of the embedders (a leaf module, so a backend need not import the registry)."""

from __future__ import annotations

import numpy as np

from ..errors import FaceledgerError


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """The vector as float32 (dim,) with unit L2 norm; a zero or non-finite vector is an error."""
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise FaceledgerError("the embedding is zero or not finite; the face crop is unusable")
    return vector / norm
