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

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..errors import FaceledgerError, IndexMismatch
from . import check_ids, check_vectors, no_hits

AUTO = "auto"
AUTO_FLAT_MAX = 200_000
"""Largest gallery `auto` keeps exact (see docs/benchmarks-scale.md for the measurements behind it)."""
AUTO_COMPRESSED = "IVF1024,PQ{m}x4fs;nprobe=512;rerank=300"
"""Above AUTO_FLAT_MAX: 4-bit fast-scan PQ with dim/2 sub-quantizers (32 B/face for 128-D) in 1024 lists of
which half are scanned, then the best 300 rows re-scored exactly from the memory-mapped float32 file.
At 10M faces on one core (AMD EPYC guest): p50 7.7 ms, mate rank-1 retention 0.999 when trained on
400k faces. 4096 lists need 2048 probes (10.8 ms) to keep as many mates, 1536 (8.6 ms) for 0.9955;
see docs/benchmarks-scale.md."""
AUTO_COMPRESSED_RERANK = 300
TRAIN_SAMPLE = 400_000
"""Faces sampled to train a compressed index (was 100k: 400k keeps more mates at the same nprobe)."""
ADD_CHUNK = 65_536


@dataclass(frozen=True)
class IndexSpec:
    """A parsed settings string: FAISS factory, FAISS search parameters, and the re-rank depth."""

    factory: str
    params: tuple[tuple[str, str], ...] = ()
    rerank: int = AUTO_COMPRESSED_RERANK

    @property
    def exact(self) -> bool:
        return self.factory.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        parts = [p.strip() for p in str(text).split(";")]
        if not parts[0]:
            raise FaceledgerError(f"empty FAISS factory string in index setting {text!r}")
        params, rerank = [], AUTO_COMPRESSED_RERANK
        for part in parts[1:]:
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise FaceledgerError(f"index setting {text!r}: expected param=value after ';', got {part!r}")
            if key.strip() == "rerank":
                try:
                    rerank = int(value)
                except ValueError:
                    raise FaceledgerError(f"index setting {text!r}: rerank must be a whole number") from None
                if rerank < 0:
                    raise FaceledgerError(f"index setting {text!r}: rerank must be 0 or more")
            else:
                params.append((key.strip(), value.strip()))
        return cls(parts[0], tuple(params), rerank)

    def __str__(self) -> str:
        extra = [f"{k}={v}" for k, v in self.params]
        if not self.exact:
            extra.append(f"rerank={self.rerank}")
        return ";".join([self.factory, *extra])


def resolve(description: str, count: int, dim: int) -> str:
    """The concrete index string for a setting: `auto` depends on the gallery size."""
    if description.strip().lower() != AUTO:
        return description
    if count < AUTO_FLAT_MAX or dim % 2:
        return "Flat"
    return AUTO_COMPRESSED.format(m=dim // 2)


def min_train(factory: str) -> int:
    """Vectors needed to train without FAISS warnings (39 per centroid, FAISS's own minimum)."""
    need = 1
    for match in re.finditer(r"IVF(\d+)", factory):
        need = max(need, int(match.group(1)) * 39)
    for match in re.finditer(r"PQ(\d+)(?:x(\d+))?", factory):
        bits = int(match.group(2) or 8)
        need = max(need, (1 << bits) * 39)
    if "SQ" in factory or "OPQ" in factory or "PCA" in factory:
        need = max(need, 1000)
    return need


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
            path = self._vectors_path or _temp_vectors_path()
            self.vectors = RerankVectors(path, dim)

    # -- construction ------------------------------------------------------------------------------

    def _make(self, spec: IndexSpec):
        try:
            inner = faiss.index_factory(self.dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise FaceledgerError(f"FAISS rejects the index string {spec.factory!r}: {_first_line(exc)}") from None
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
                                  f"{_first_line(exc)}") from None

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
        if self.vectors is None:
            return self._index.search(queries, k)
        if not self._index.is_trained or self._index.ntotal == 0:
            return self._exact_scan(queries, k)
        depth = max(k, self.spec.rerank)  # rerank=0: the k best codes, still scored exactly
        _, rows = self._index.search(queries, min(depth, int(self._index.ntotal)))
        return self._rescore(queries, rows, k)

    def __len__(self) -> int:
        if self.vectors is None:
            return int(self._index.ntotal)
        return self.vectors.live

    # -- compressed-index internals --------------------------------------------------------------

    def _rescore(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of the shortlisted rows, best k first; ids from the rows."""
        matrix = self.vectors.matrix()
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        for i, (query, row_list) in enumerate(zip(queries, rows)):
            row_list = np.sort(row_list[row_list >= 0])  # sorted: forward reads through the file
            if len(row_list) == 0:
                continue
            scores = np.asarray(matrix[row_list]) @ query
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
        matrix = vectors.matrix()
        if not self._index.is_trained:
            rng = np.random.default_rng(len(live_rows))
            sample = np.sort(rng.choice(live_rows, size=min(TRAIN_SAMPLE, len(live_rows)), replace=False))
            self._index.train(np.ascontiguousarray(matrix[sample]))
        for start in range(0, len(live_rows), ADD_CHUNK):
            rows = live_rows[start:start + ADD_CHUNK]
            self._index.add_with_ids(np.ascontiguousarray(matrix[rows]), rows)

    def _convert(self, kind: str) -> None:
        """An `auto` Flat index that grew past AUTO_FLAT_MAX becomes a compressed one (same contents)."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        flat = faiss.downcast_index(self._index.index)
        matrix = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim).reshape(-1, self.dim).copy()
        self.kind, self.spec = kind, IndexSpec.parse(kind)
        self._index = self._make(self.spec)
        self.vectors = RerankVectors(self._vectors_path or _temp_vectors_path(), self.dim)
        with self:
            for start in range(0, len(ids), ADD_CHUNK):
                self.add(ids[start:start + ADD_CHUNK], matrix[start:start + ADD_CHUNK])

    # -- files -------------------------------------------------------------------------------------

    def write(self, path: Path) -> None:
        if self.vectors is not None:
            self.vectors.save_ids()
        _atomic_write(path, faiss.serialize_index(self._index).tobytes())

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
            raise FaceledgerError(f"cannot read index file {path}: {_first_line(exc)}") from None
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
            self.vectors._fh.close()
            self.vectors.path.unlink(missing_ok=True)

    @property
    def bytes_in_ram(self) -> int:
        """What the index itself holds in memory (the re-rank file is on disk / page cache)."""
        return int(faiss.serialize_index(self._index).size)


def _temp_vectors_path() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / f"faceledger-rerank-{uuid.uuid4().hex}.f32"


@dataclass(frozen=True)
class IndexMeta:
    """What an index file holds: which gallery, at which store generation, made by which model."""

    gallery_id: int
    generation: int
    model_id: str
    dim: int
    description: str
    count: int
    kind: str = ""
    vectors: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> IndexMeta | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, path: Path) -> None:
        _atomic_write(path, json.dumps(self.__dict__).encode())

    def with_description(self, description: str) -> IndexMeta:
        return IndexMeta(**{**self.__dict__, "description": description})


def bulk(index):
    """Context for loading many vectors: a FAISS index trains once at the end; others need nothing."""
    return index if isinstance(index, FaissIndex) else contextlib.nullcontext(index)


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # one per writer
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def check_description(description: str, dim: int, *, base: Path) -> None:
    """Fail at start-up, before anything is stored, on an index setting that cannot work."""
    if is_milvus(description):
        from .milvus_index import parse_target

        parse_target(description, base)
        return
    FaissIndex(dim, resolve(description, 0, dim), vectors_path=None).close()


def is_milvus(description: str) -> bool:
    text = description.strip()
    return text.startswith(("milvus://", "milvus-lite://")) or text.endswith(".db")


class IndexFiles:
    """Where each gallery's index lives: FAISS files in the data directory, or a Milvus collection.

    The meta file (gallery-N.json) is always local: it records the store generation the index holds,
    so a stale or foreign index is rebuilt from the store (the truth) instead of being trusted.
    """

    def __init__(self, directory: Path, description: str = "Flat", *, dim: int | None = None) -> None:
        self.directory = Path(directory)
        self.configured = description
        self._milvus: dict = {}
        if dim is not None:
            check_description(description, dim, base=self.directory)

    def paths(self, gallery_id: int) -> tuple[Path, Path]:
        return (self.directory / f"gallery-{gallery_id}.faiss",
                self.directory / f"gallery-{gallery_id}.json")

    def description_for(self, gallery_id: int) -> str:
        """The configured index string; under `auto`, an index built explicitly (`reindex --index`) is kept."""
        if self.configured.strip().lower() != AUTO:
            return self.configured
        meta = IndexMeta.read(self.paths(gallery_id)[1])
        return meta.description if meta and meta.description else self.configured

    def milvus(self, description: str):
        if description not in self._milvus:
            from .milvus_index import MilvusConnection

            self._milvus[description] = MilvusConnection(description, base=self.directory)
        return self._milvus[description]

    def new_index(self, gallery_id: int, dim: int, count: int = 0, description: str | None = None):
        """An empty index for a (re)build of this gallery; Milvus drops the gallery's old vectors."""
        description = description or self.description_for(gallery_id)
        if is_milvus(description):
            return self.milvus(description).fresh(gallery_id, dim)
        return FaissIndex(dim, description, count_hint=count, vectors_path=self._fresh_vectors(gallery_id))

    def _fresh_vectors(self, gallery_id: int) -> Path:
        return self.directory / f"gallery-{gallery_id}-{uuid.uuid4().hex[:12]}.f32"

    def load(self, gallery_id: int, *, expected: IndexMeta):
        """The stored index if it is exactly the one expected (same generation and model), else None."""
        index_path, meta_path = self.paths(gallery_id)
        meta = IndexMeta.read(meta_path)
        if meta is None:
            return None
        if meta.model_id != expected.model_id or meta.dim != expected.dim:
            raise IndexMismatch(
                f"index for gallery {gallery_id} was built by model {meta.model_id} ({meta.dim}-D) but the "
                f"store uses {expected.model_id} ({expected.dim}-D); run `faceledger reindex`"
            )
        if meta.generation != expected.generation or meta.description != expected.description:
            return None
        if is_milvus(meta.description):
            index = self.milvus(meta.description).existing(gallery_id, meta.dim)
            return index if len(index) == meta.count else None
        if not index_path.is_file():
            return None
        vectors = self.directory / meta.vectors if meta.vectors else self._fresh_vectors(gallery_id)
        if meta.vectors and not vectors.is_file():
            return None
        index = FaissIndex.read(index_path, meta.dim, meta.description, kind=meta.kind or None,
                                vectors_path=vectors)
        return index if len(index) == meta.count else None

    def save(self, index, meta: IndexMeta) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self.paths(meta.gallery_id)
        vectors = ""
        if isinstance(index, FaissIndex):
            index.write(index_path)
            if index.vectors is not None:
                vectors = index.vectors.path.name
        else:
            index_path.unlink(missing_ok=True)
        IndexMeta(**{**meta.__dict__, "kind": getattr(index, "kind", meta.description),
                     "vectors": vectors}).write(meta_path)
        self._drop_old_vectors(meta.gallery_id, keep=vectors)

    def _drop_old_vectors(self, gallery_id: int, keep: str) -> None:
        keep_stem = Path(keep).stem if keep else None
        for path in self.directory.glob(f"gallery-{gallery_id}-*.f32*"):
            if keep_stem is None or not path.name.startswith(keep_stem):
                path.unlink(missing_ok=True)

    def delete(self, gallery_id: int) -> None:
        for path in self.paths(gallery_id):
            path.unlink(missing_ok=True)
        self._drop_old_vectors(gallery_id, keep="")
