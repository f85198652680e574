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

    Once a file is published (saved beside an index, `publish`), other processes map its first
    `shared_rows` rows, so it never changes size again: rows added later go to a private, already
    unlinked tail file, and the next `publish` copies both into a new file.
    """

    def __init__(self, path: Path, dim: int, ids: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.ids = np.asarray(ids if ids is not None else np.empty(0, np.int64), dtype=np.int64)
        self.live = int((self.ids >= 0).sum())
        self._map: np.memmap | None = None
        self._tail = None  # the private file of rows added after publication
        self._tail_map: np.memmap | None = None
        self.shared_rows = 0 if ids is None else len(self.ids)
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
        if self.shared_rows:  # published: other processes map this file, so its size stays as it is
            if self._tail is None:
                self._tail = tempfile.TemporaryFile(dir=self.path.parent, prefix=".rerank-tail-")  # noqa: SIM115
            fh, offset = self._tail, (start - self.shared_rows) * self.dim * 4
        else:
            fh, offset = self._fh, start * self.dim * 4
        fh.truncate(offset)
        fh.seek(offset)
        fh.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        fh.flush()
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self.live += len(ids)
        self._map = self._tail_map = None
        return np.arange(start, start + len(ids), dtype=np.int64)

    def _base(self) -> np.ndarray:
        rows = self.shared_rows or self.rows
        if self._map is None or len(self._map) != rows:
            if rows == 0:
                return np.empty((0, self.dim), np.float32)
            self._map = np.memmap(self._fh, dtype=np.float32, mode="r", shape=(rows, self.dim))
        return self._map

    def _tail_rows(self) -> np.ndarray:
        rows = self.rows - self.shared_rows
        if self._tail is None or rows == 0:
            return np.empty((0, self.dim), np.float32)
        if self._tail_map is None or len(self._tail_map) != rows:
            self._tail_map = np.memmap(self._tail, dtype=np.float32, mode="r", shape=(rows, self.dim))
        return self._tail_map

    def matrix(self) -> np.ndarray:
        """Every row: the file's map, or (with a private tail) a copy of both; see `take` for a few rows."""
        if self._tail is None or self.rows == self.shared_rows:
            return self._base()
        return np.concatenate([np.asarray(self._base()), np.asarray(self._tail_rows())])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the given rows (sorted rows read forward through the file)."""
        if self._tail is None or self.rows == self.shared_rows:
            return np.asarray(self._base()[rows])
        out = np.empty((len(rows), self.dim), np.float32)
        shared = rows < self.shared_rows
        out[shared] = self._base()[rows[shared]]
        out[~shared] = self._tail_rows()[rows[~shared] - self.shared_rows]
        return out

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.ids, ids) & (self.ids >= 0))

    def erase(self, rows: np.ndarray) -> None:
        """Overwrite rows with zeros and forget their ids."""
        if len(rows) == 0:
            return
        zeros = np.zeros(self.dim, np.float32).tobytes()
        self._fh.flush()
        for row in np.sort(rows):
            if self._tail is not None and self.shared_rows and row >= self.shared_rows:
                os.pwrite(self._tail.fileno(), zeros, int(row - self.shared_rows) * self.dim * 4)
            else:
                os.pwrite(self._fh.fileno(), zeros, int(row) * self.dim * 4)
        os.fsync(self._fh.fileno())
        self.ids = self.ids.copy()
        self.live -= int((self.ids[rows] >= 0).sum())
        self.ids[rows] = -1
        self._map = self._tail_map = None

    def publish(self, fresh: Path | None = None, *, extend: bool = False) -> None:
        """Make the file hold every row and write its ids, for an index saved beside it. A published file
        that has gained a private tail is extended in place when `extend` (the caller holds the gallery's
        write lock and the file is the current base, no longer than this index's shared rows: no reader
        maps beyond them), else copied with the tail to `fresh` (a new name), as is an unlinked one."""
        self._fh.flush()
        unlinked = os.fstat(self._fh.fileno()).st_nlink == 0
        grown = self.shared_rows and self.rows > self.shared_rows
        if grown and extend and not unlinked and os.fstat(self._fh.fileno()).st_size == self.shared_rows * self.dim * 4:
            self._extend_in_place()
        elif unlinked or grown:
            if fresh is None:
                raise FaceledgerError(f"re-rank vectors {self.path} need a new file to be saved")
            self._copy_to(Path(fresh))
        elif not self.shared_rows:
            self._fh.truncate(self.rows * self.dim * 4)
            os.fsync(self._fh.fileno())
        self.shared_rows = self.rows
        tmp = self.path.with_name(f"{self.path.name}.ids.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npy")
        np.save(tmp, self.ids)
        os.replace(tmp, self.ids_path)

    def _extend_in_place(self) -> None:
        """Append the private tail after the shared rows (never truncating: readers map the rows before)."""
        tail = self._tail_rows()
        offset = self.shared_rows * self.dim * 4
        for start in range(0, len(tail), 65_536):
            data = np.ascontiguousarray(tail[start:start + 65_536]).tobytes()
            os.pwrite(self._fh.fileno(), data, offset)
            offset += len(data)
        os.fsync(self._fh.fileno())
        self._map = self._tail_map = None
        self._tail.close()
        self._tail = None

    def _copy_to(self, fresh: Path) -> None:
        base, tail = self._base(), self._tail_rows()
        step = 65_536
        with open(fresh, "wb") as out:
            for part in (base, tail):
                for start in range(0, len(part), step):
                    out.write(np.ascontiguousarray(part[start:start + step]).tobytes())
            out.flush()
            os.fsync(out.fileno())
        self.close_files()
        self.path, self._fh = fresh, open(fresh, "r+b")  # noqa: SIM115

    def close_files(self) -> None:
        self._map = self._tail_map = None
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self._fh.close()

    @classmethod
    def open(cls, path: Path, dim: int) -> RerankVectors:
        try:
            ids = np.load(path.with_name(path.name + ".ids.npy"))
        except (OSError, ValueError) as exc:
            raise FaceledgerError(f"cannot read re-rank ids for {path}: {exc}") from None
        return cls(path, dim, ids)


def temp_vectors_path() -> Path:
    return Path(tempfile.gettempdir()) / f"faceledger-rerank-{uuid.uuid4().hex}.f32"
