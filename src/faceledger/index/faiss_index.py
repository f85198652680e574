"""The embedded default: a FAISS index described by a factory string.

Two shapes, one contract (`VectorIndex`):

* exact (`Flat`): `IndexIDMap2(IndexFlatIP)` with the store's face ids as labels, all in RAM.
* compressed (any other factory string, e.g. `PQ32x4fs`, `IVF4096,PQ32x4fs`): the codes live in RAM
  under `IndexIDMap` whose labels are *rows* of a memory-mapped float32 file beside the index
  (`RerankVectors`). A search asks FAISS for a shortlist of `rerank` rows (default 100), reads just
  those rows from the file and scores them exactly, so the scores (and with them the calibrated error
  rates) are the exact inner products, whatever the index. Removing a face removes its code from
  FAISS and overwrites its row in the file with zeros: the embedding is gone, not just hidden.

A compressed index is trained on a random sample of the vectors it holds (at most
`TRAIN_SAMPLE`). Until it holds enough vectors to train (`min_train`) it answers by an exact scan of the
file, so a new gallery works from its first face.

The settings string is `FACTORY[;param=value...]`: FAISS search parameters such as `nprobe=256` and
our own `rerank=N` (default 300; 0 = only the k best codes, still re-scored). `auto` means `Flat` up to
`AUTO_FLAT_MAX` faces and `AUTO_COMPRESSED` above it; an `auto` index converts itself when it crosses the size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from ..errors import FaceledgerError, IndexMismatch
from . import atomic_write, check_ids, check_vectors, no_hits
from .rerank import RerankVectors, temp_vectors_path
from .spec import (  # noqa: F401 - re-exported: the settings belong with the index they describe
    ADD_CHUNK,
    AUTO,
    AUTO_COMPRESSED,
    AUTO_COMPRESSED_RERANK,
    AUTO_FLAT_MAX,
    TRAIN_SAMPLE,
    IndexSpec,
    min_train,
    resolve,
)


SMALL_QUERY_BATCH = 20
"""Below this many queries a search runs on one OpenMP thread (FAISS's own threshold for its batched path)."""


@contextmanager
def one_thread_for(queries: int) -> Iterator[None]:
    """Run a search of a few queries on this thread alone, as the latency benchmarks measure it.

    FAISS splits a search over its queries with OpenMP: with one query, one thread works and the others
    spin at the barrier. In a server handling several searches at once that spinning took CPU from the
    other requests (about a quarter of a search's CPU time, benchmarks/api_load.py). The thread count is
    a per-thread OpenMP setting, restored afterwards, so index builds and batch searches keep every core."""
    if queries >= SMALL_QUERY_BATCH:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissIndex:
    """A FAISS index over inner product; search results carry the store's face ids."""

    def __init__(self, dim: int, description: str = "Flat", *, count_hint: int = 0,
                 vectors_path: Path | None = None) -> None:
        self.dim = dim
        self.description = description
        self.kind = resolve(description, count_hint, dim)
        self.spec = IndexSpec.parse(self.kind)
        self._vectors_path = Path(vectors_path) if vectors_path else None
        self._deferred = False
        self._index = self._make(self.spec)
        self.vectors: RerankVectors | None = None
        if not self.spec.exact:
            path = self._vectors_path or temp_vectors_path()
            self.vectors = RerankVectors(path, dim)

    # -- construction ------------------------------------------------------------------------------

    def _make(self, spec: IndexSpec):
        try:
            inner = faiss.index_factory(self.dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise FaceledgerError(f"FAISS rejects the index string {spec.factory!r}: {first_line(exc)}") from None
        if spec.exact:
            return faiss.IndexIDMap2(inner)
        try:
            inner.remove_ids(faiss.IDSelectorBatch(np.empty(0, np.int64)))
        except RuntimeError:
            raise FaceledgerError(
                f"index {spec.factory!r} cannot delete vectors (FAISS has no remove_ids for it), and faceledger "
                "must be able to erase a face; choose e.g. PQ32x4fs or IVF4096,PQ32x4fs") from None
        self._apply_params(inner, spec)
        return faiss.IndexIDMap(inner)

    def _apply_params(self, inner, spec: IndexSpec) -> None:
        if not spec.params:
            return
        text = ",".join(f"{k}={v}" for k, v in spec.params)
        try:
            faiss.ParameterSpace().set_index_parameters(inner, text)
        except RuntimeError as exc:
            raise FaceledgerError(f"FAISS rejects the search parameters {text!r} for {spec.factory!r}: "
                                  f"{first_line(exc)}") from None

    @property
    def trained(self) -> bool:
        return self.spec.exact or bool(self._index.is_trained)

    def __enter__(self) -> FaissIndex:
        """Bulk mode: adds only fill the vectors file; training and coding happen once, on exit."""
        self._deferred = True
        return self

    def __exit__(self, *exc) -> None:
        self._deferred = False
        if exc[0] is None:
            self._maybe_train()

    # -- the contract ------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = check_vectors(vectors, self.dim)
        ids = check_ids(ids, len(vectors))
        if self.vectors is None:
            self._index.add_with_ids(vectors, ids)
            if self.description.strip().lower() == AUTO and resolve(AUTO, len(self), self.dim) != self.kind:
                self._convert(resolve(AUTO, len(self), self.dim))
            return
        rows = self.vectors.append(ids, vectors)
        if self._index.is_trained:
            self._index.add_with_ids(vectors, rows)
        elif not self._deferred:
            self._maybe_train()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        if self.vectors is None:
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        rows = self.vectors.rows_of(ids)
        if self._index.ntotal:
            self._index.remove_ids(faiss.IDSelectorBatch(rows))
        self.vectors.erase(rows)
        return len(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_vectors(queries, self.dim)
        n = len(self)
        if n == 0:
            return no_hits(len(queries))
        k = max(1, min(int(k), n))
        with one_thread_for(len(queries)):
            if self.vectors is None:
                return self._index.search(queries, k)
            if not self._index.is_trained or self._index.ntotal == 0:
                return self._exact_scan(queries, k)
            depth = max(k, self.spec.rerank)  # rerank=0: the k best codes, still scored exactly
            _, rows = self._index.search(queries, min(depth, int(self._index.ntotal)))
            return self._rescore(queries, rows, k)

    def consistent(self) -> bool:
        """Whether the codes and the re-rank rows come from one save (a reader racing a writer can read
        the index file of one and the row ids of another)."""
        if self.vectors is None or not self._index.is_trained:
            return True
        return int(self._index.ntotal) in (0, self.vectors.live)

    def face_ids(self) -> np.ndarray:
        """Every face id the index holds, sorted (to compare an index with the store)."""
        if self.vectors is None:
            return np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))
        return np.sort(self.vectors.ids[self.vectors.ids >= 0])

    def __len__(self) -> int:
        if self.vectors is None:
            return int(self._index.ntotal)
        return self.vectors.live

    # -- compressed-index internals --------------------------------------------------------------

    def _rescore(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of the shortlisted rows, best k first; ids from the rows."""
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        for i, (query, row_list) in enumerate(zip(queries, rows)):
            row_list = np.sort(row_list[row_list >= 0])  # sorted: forward reads through the file
            if len(row_list) == 0:
                continue
            scores = self.vectors.take(row_list) @ query
            top = np.argsort(-scores, kind="stable")[:k]
            out_scores[i, :len(top)] = scores[top]
            out_ids[i, :len(top)] = self.vectors.ids[row_list[top]]
        return out_scores, out_ids

    def _exact_scan(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.asarray(self.vectors.matrix())
        live = self.vectors.ids >= 0
        scores = queries @ matrix.T
        scores[:, ~live] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1).astype(np.float32), self.vectors.ids[top]

    def _maybe_train(self) -> None:
        vectors = self.vectors
        if vectors is None or self._index.is_trained and self._index.ntotal:
            return
        live_rows = np.flatnonzero(vectors.ids >= 0)
        if len(live_rows) < min_train(self.spec.factory):
            return
        if not self._index.is_trained:
            rng = np.random.default_rng(len(live_rows))
            sample = np.sort(rng.choice(live_rows, size=min(TRAIN_SAMPLE, len(live_rows)), replace=False))
            self._index.train(np.ascontiguousarray(vectors.take(sample)))
        for start in range(0, len(live_rows), ADD_CHUNK):
            rows = live_rows[start:start + ADD_CHUNK]
            self._index.add_with_ids(np.ascontiguousarray(vectors.take(rows)), rows)

    def _convert(self, kind: str) -> None:
        """An `auto` Flat index that grew past AUTO_FLAT_MAX becomes a compressed one (same contents)."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        flat = faiss.downcast_index(self._index.index)
        matrix = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim).reshape(-1, self.dim).copy()
        self.kind, self.spec = kind, IndexSpec.parse(kind)
        self._index = self._make(self.spec)
        self.vectors = RerankVectors(self._vectors_path or temp_vectors_path(), self.dim)
        with self:
            for start in range(0, len(ids), ADD_CHUNK):
                self.add(ids[start:start + ADD_CHUNK], matrix[start:start + ADD_CHUNK])

    # -- files -------------------------------------------------------------------------------------

    def write(self, path: Path, *, fresh_vectors: Path | None = None, extend: bool = False) -> None:
        """The index to `path` and its re-rank vectors to their file (see `RerankVectors.publish`: extended
        in place when `extend`, else to `fresh_vectors` when the shared file it was read from has grown)."""
        if self.vectors is not None:
            self.vectors.publish(fresh_vectors, extend=extend)
        atomic_write(path, faiss.serialize_index(self._index).tobytes())

    @classmethod
    def read(cls, path: Path, dim: int, description: str, *, kind: str | None = None,
             vectors_path: Path | None = None) -> FaissIndex:
        index = cls.__new__(cls)
        index.dim = dim
        index.description = description
        index.kind = kind or resolve(description, 0, dim)
        index.spec = IndexSpec.parse(index.kind)
        index._deferred = False
        index._vectors_path = vectors_path
        try:
            index._index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except RuntimeError as exc:
            raise FaceledgerError(f"cannot read index file {path}: {first_line(exc)}") from None
        if index._index.d != dim:
            raise IndexMismatch(f"index file {path} has dimension {index._index.d}, expected {dim}")
        index.vectors = None
        if not index.spec.exact:
            if vectors_path is None:
                raise FaceledgerError(f"index {path} needs its re-rank vectors file; run `faceledger reindex`")
            index.vectors = RerankVectors.open(vectors_path, dim)
            index._apply_params(faiss.downcast_index(index._index.index), index.spec)
        return index

    def close(self) -> None:
        """Forget a temporary index (its re-rank file too, when it was never saved anywhere)."""
        if self.vectors is not None and self._vectors_path is None:
            self.vectors.close_files()
            self.vectors.path.unlink(missing_ok=True)

    @property
    def bytes_in_ram(self) -> int:
        """What the index itself holds in memory (the re-rank file is on disk / page cache)."""
        return int(faiss.serialize_index(self._index).size)


def first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
