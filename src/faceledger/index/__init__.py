"""Vector indexes behind one tiny protocol; the SQL store is the truth, an index is a rebuildable cache."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import FaceledgerError


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised float32 vectors keyed by int64 ids (face ids)."""

    dim: int
    description: str

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k), best first; missing slots have id -1."""
        ...

    def __len__(self) -> int: ...


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Validate shape and dtype at the boundary; return a C-contiguous float32 (n, dim) array."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise FaceledgerError(f"vectors must have shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(array).all():
        raise FaceledgerError("vectors contain NaN or infinity")
    return np.ascontiguousarray(array)


def check_ids(ids: np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(array) != count:
        raise FaceledgerError(f"got {len(array)} ids for {count} vectors")
    return np.ascontiguousarray(array)


def no_hits(n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """The search answer of an empty index: one slot per query, score -inf, id -1."""
    return np.full((n_queries, 1), -np.inf, np.float32), np.full((n_queries, 1), -1, np.int64)


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new bytes, never a mix (one temp file per writer)."""
    path = Path(path)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # one per writer
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
