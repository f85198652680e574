"""The embedded default: a FAISS index described by a factory string, wrapped with an id map."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import FaceledgerError, IndexMismatch
from . import check_ids, check_vectors


class FaissIndex:
    """A FAISS index over inner product; ids are the store's face ids."""

    def __init__(self, dim: int, description: str = "Flat") -> None:
        self.dim = dim
        self.description = description
        try:
            inner = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise FaceledgerError(f"FAISS rejects the index string {description!r}: {_first_line(exc)}") from None
        if not inner.is_trained:
            raise FaceledgerError(
                f"index {description!r} needs training; only untrained-free indexes (e.g. Flat) are supported yet"
            )
        self._index = faiss.IndexIDMap2(inner)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = check_vectors(vectors, self.dim)
        self._index.add_with_ids(vectors, check_ids(ids, len(vectors)))

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, self.dim)
        k = max(1, min(int(k), len(self))) if len(self) else 1
        if len(self) == 0:
            return np.full((len(queries), 1), -np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        scores, ids = self._index.search(queries, k)
        return scores, ids

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def write(self, path: Path) -> None:
        _atomic_write(path, faiss.serialize_index(self._index).tobytes())

    @classmethod
    def read(cls, path: Path, dim: int, description: str) -> "FaissIndex":
        index = cls.__new__(cls)
        index.dim = dim
        index.description = description
        try:
            index._index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except RuntimeError as exc:
            raise FaceledgerError(f"cannot read index file {path}: {_first_line(exc)}") from None
        if index._index.d != dim:
            raise IndexMismatch(f"index file {path} has dimension {index._index.d}, expected {dim}")
        return index


@dataclass(frozen=True)
class IndexMeta:
    """What an index file holds: which gallery, at which store generation, made by which model."""

    gallery_id: int
    generation: int
    model_id: str
    dim: int
    description: str
    count: int

    @classmethod
    def read(cls, path: Path) -> "IndexMeta | None":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, path: Path) -> None:
        _atomic_write(path, json.dumps(self.__dict__).encode())


class IndexFiles:
    """Where a gallery's index and its meta live inside the data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def paths(self, gallery_id: int) -> tuple[Path, Path]:
        return (self.directory / f"gallery-{gallery_id}.faiss",
                self.directory / f"gallery-{gallery_id}.json")

    def load(self, gallery_id: int, *, expected: IndexMeta) -> FaissIndex | None:
        """The stored index if it is exactly the one expected (same generation and model), else None."""
        index_path, meta_path = self.paths(gallery_id)
        meta = IndexMeta.read(meta_path)
        if meta is None or not index_path.is_file():
            return None
        if meta.model_id != expected.model_id or meta.dim != expected.dim:
            raise IndexMismatch(
                f"index for gallery {gallery_id} was built by model {meta.model_id} ({meta.dim}-D) but the "
                f"store uses {expected.model_id} ({expected.dim}-D); run `faceledger reindex`"
            )
        if meta.generation != expected.generation or meta.description != expected.description:
            return None
        index = FaissIndex.read(index_path, meta.dim, meta.description)
        return index if len(index) == meta.count else None

    def save(self, index: FaissIndex, meta: IndexMeta) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self.paths(meta.gallery_id)
        index.write(index_path)
        meta.write(meta_path)

    def delete(self, gallery_id: int) -> None:
        for path in self.paths(gallery_id):
            path.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
