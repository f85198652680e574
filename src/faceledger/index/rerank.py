"""The exact float32 vectors behind a compressed index: a file addressed by row, read through a memory map."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from ..errors import FaceledgerError


class RerankVectors:
    """Exact float32 vectors in a file, addressed by row, read through a memory map.

    `ids[row]` is the face id stored in that row, or -1 once removed (its row is zeroed).
    Only the rows a query needs are read, so the file can be far larger than RAM.
    """

    def __init__(self, path: Path, dim: int, ids: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.ids = np.asarray(ids if ids is not None else np.empty(0, np.int64), dtype=np.int64)
        self.live = int((self.ids >= 0).sum())
        self._map: np.memmap | None = None
        if ids is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
        elif self.path.stat().st_size < len(self.ids) * dim * 4:
            raise FaceledgerError(f"re-rank vectors file {self.path} is shorter than its id list; "
                                  "run `faceledger reindex`")
        # One descriptor for the index's lifetime: if another process rebuilds the gallery and removes
        # this file, this index keeps working on its (unlinked) file until its generation goes stale.
        self._fh = open(self.path, "r+b")  # noqa: SIM115

    @property
    def ids_path(self) -> Path:
        return self.path.with_name(self.path.name + ".ids.npy")

    @property
    def rows(self) -> int:
        return len(self.ids)

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Write vectors after the last row (dropping any tail a crash left); return their rows."""
        start = self.rows
        fh = self._fh
        fh.truncate(start * self.dim * 4)
        fh.seek(start * self.dim * 4)
        fh.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        fh.flush()
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self.live += len(ids)
        self._map = None
        return np.arange(start, start + len(ids), dtype=np.int64)

    def matrix(self) -> np.ndarray:
        if self._map is None or len(self._map) != self.rows:
            if self.rows == 0:
                return np.empty((0, self.dim), np.float32)
            self._map = np.memmap(self._fh, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        return self._map

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.ids, ids) & (self.ids >= 0))

    def erase(self, rows: np.ndarray) -> None:
        """Overwrite rows with zeros and forget their ids."""
        if len(rows) == 0:
            return
        zeros = np.zeros(self.dim, np.float32).tobytes()
        self._fh.flush()
        for row in np.sort(rows):
            os.pwrite(self._fh.fileno(), zeros, int(row) * self.dim * 4)
        os.fsync(self._fh.fileno())
        self.ids = self.ids.copy()
        self.live -= int((self.ids[rows] >= 0).sum())
        self.ids[rows] = -1
        self._map = None

    def save_ids(self) -> None:
        self._fh.flush()
        self._fh.truncate(self.rows * self.dim * 4)
        os.fsync(self._fh.fileno())
        tmp = self.path.with_name(self.path.name + ".ids.tmp.npy")
        np.save(tmp, self.ids)
        os.replace(tmp, self.ids_path)

    @classmethod
    def open(cls, path: Path, dim: int) -> RerankVectors:
        try:
            ids = np.load(path.with_name(path.name + ".ids.npy"))
        except (OSError, ValueError) as exc:
            raise FaceledgerError(f"cannot read re-rank ids for {path}: {exc}") from None
        return cls(path, dim, ids)


def temp_vectors_path() -> Path:
    return Path(tempfile.gettempdir()) / f"faceledger-rerank-{uuid.uuid4().hex}.f32"
