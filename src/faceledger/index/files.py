"""Where each gallery's index lives and what it holds: FAISS files beside a meta file, or a Milvus collection."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IndexMismatch
from . import atomic_write, deltas
from .faiss_index import FaissIndex
from .spec import AUTO, resolve, same_family

DELTA_WAIT_S = 0.25
"""How long a reader waits for a delta whose commit it has seen (written right after it) before rebuilding."""


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
        atomic_write(path, json.dumps(self.__dict__).encode())

    def with_description(self, description: str) -> IndexMeta:
        return IndexMeta(**{**self.__dict__, "description": description})


def bulk(index):
    """Context for loading many vectors: a FAISS index trains once at the end; others need nothing."""
    return index if isinstance(index, FaissIndex) else contextlib.nullcontext(index)


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
        """The stored index at exactly the generation expected (base + its deltas; same model), else None.
        A reader that loses a race with a compaction (its base or deltas replaced meanwhile) tries again."""
        for _attempt in range(2):
            index = self._load_once(gallery_id, expected)
            if index is not False:
                return index
        return None

    def _load_once(self, gallery_id: int, expected: IndexMeta):
        """The index, None (nothing usable: rebuild), or False (files changed while reading: try again)."""
        index_path, meta_path = self.paths(gallery_id)
        meta = IndexMeta.read(meta_path)
        if meta is None:
            return None
        if meta.model_id != expected.model_id or meta.dim != expected.dim:
            raise IndexMismatch(
                f"index for gallery {gallery_id} was built by model {meta.model_id} ({meta.dim}-D) but the "
                f"store uses {expected.model_id} ({expected.dim}-D); run `faceledger reindex`"
            )
        if meta.description != expected.description or meta.generation > expected.generation:
            return None
        if is_milvus(meta.description):
            if meta.generation != expected.generation:
                return None
            index = self.milvus(meta.description).existing(gallery_id, meta.dim)
            return index if len(index) == meta.count else None
        batches = self.deltas_between(gallery_id, meta.generation, expected.generation, meta)
        if batches is None:
            return False if IndexMeta.read(meta_path) != meta else None
        if not index_path.is_file():
            return None
        vectors = self.directory / meta.vectors if meta.vectors else self._fresh_vectors(gallery_id)
        if meta.vectors and not vectors.is_file():
            return False if IndexMeta.read(meta_path) != meta else None
        index = FaissIndex.read(index_path, meta.dim, meta.description, kind=meta.kind or None,
                                vectors_path=vectors)
        if len(index) != meta.count or not index.consistent():  # replaced while this reader read it
            index.close()
            return False if IndexMeta.read(meta_path) != meta else None
        for ids, batch in batches:
            if len(ids):
                index.add(ids, batch)
        return index if len(index) == expected.count else None

    def deltas_between(self, gallery_id: int, after: int, upto: int, meta: IndexMeta | None = None
                       ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The faces added at generations after+1 .. upto, one batch each; None if any delta is missing.
        A delta is written just after its commit: a reader that saw the commit first waits for it a moment
        (DELTA_WAIT_S) before giving up (then it rebuilds, as after a process killed in between)."""
        meta = meta or IndexMeta.read(self.paths(gallery_id)[1])
        if meta is None or upto < after:
            return None
        deadline = time.monotonic() + DELTA_WAIT_S
        while True:
            batches = self._read_deltas(gallery_id, after, upto, meta)
            if batches is not None or time.monotonic() >= deadline:
                return batches
            time.sleep(0.01)

    def _read_deltas(self, gallery_id: int, after: int, upto: int, meta: IndexMeta
                     ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        found = deltas.pending(self.directory, gallery_id) if upto > after else {}
        batches = []
        for generation in range(after + 1, upto + 1):
            batch = generation in found and deltas.read(found[generation], gallery_id=gallery_id,
                                                        generation=generation, model_id=meta.model_id,
                                                        dim=meta.dim)
            if not batch:
                return None
            batches.append(batch)
        return batches

    def append(self, gallery_id: int, generation: int, ids: np.ndarray, vectors: np.ndarray,
               model_id: str) -> bool:
        """After a batch committed at `generation`: its faces as a delta beside the base, instead of a
        rewrite of the whole index. Not written where it could never be used (no base, a Milvus index, a
        base at that generation already): then the next reader rebuilds or already has them."""
        with deltas.locked(self.directory, gallery_id):
            meta = IndexMeta.read(self.paths(gallery_id)[1])
            if meta is None or is_milvus(meta.description) or meta.generation >= generation:
                return False
            if meta.model_id != model_id or (len(ids) and vectors.shape[1] != meta.dim):
                return False
            try:
                deltas.write(self.directory, gallery_id, generation, ids, vectors.reshape(len(ids), meta.dim),
                             model_id)
            except OSError:  # the batch is committed: a missing delta only costs the next reader a rebuild
                return False
            return True

    def needs_base(self, gallery_id: int, generation: int) -> bool:
        """Whether the base file should be (re)written now: missing, a delta missing, or too many deltas."""
        meta = IndexMeta.read(self.paths(gallery_id)[1])
        if meta is None or is_milvus(meta.description):
            return True
        if meta.generation >= generation:
            return False
        found = deltas.pending(self.directory, gallery_id)
        if any(g not in found for g in range(meta.generation + 1, generation + 1)):
            return True
        count, faces = deltas.pending_faces(self.directory, gallery_id, base_generation=meta.generation)
        if meta.description.strip().lower() == AUTO and meta.kind and not same_family(
                resolve(AUTO, meta.count + faces, meta.dim), meta.kind):
            return True  # `auto` crossed its size: write the converted index once, not in every reader
        return deltas.too_many(count, faces, base_faces=meta.count)

    def save(self, index, meta: IndexMeta) -> None:
        """Write the whole index as the new base at meta.generation; the deltas it holds are deleted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self.paths(meta.gallery_id)
        with deltas.locked(self.directory, meta.gallery_id):
            vectors = ""
            if isinstance(index, FaissIndex):
                now = IndexMeta.read(meta_path)
                extend = (now is not None and index.vectors is not None and now.vectors == index.vectors.path.name)
                index.write(index_path, fresh_vectors=self._fresh_vectors(meta.gallery_id), extend=extend)
                if index.vectors is not None:
                    vectors = index.vectors.path.name
            else:
                index_path.unlink(missing_ok=True)
            IndexMeta(**{**meta.__dict__, "kind": getattr(index, "kind", meta.description),
                         "vectors": vectors}).write(meta_path)
            self._drop_old_vectors(meta.gallery_id, keep=vectors)
            deltas.drop(self.directory, meta.gallery_id, upto=meta.generation)

    def discard(self, gallery_id: int) -> None:
        """Delete the gallery's index files: base, meta, deltas and re-rank vectors (before a removal)."""
        with deltas.locked(self.directory, gallery_id):
            for path in self.paths(gallery_id):
                path.unlink(missing_ok=True)
            deltas.drop(self.directory, gallery_id)
            self._drop_old_vectors(gallery_id, keep="")

    def _drop_old_vectors(self, gallery_id: int, keep: str) -> None:
        keep_stem = Path(keep).stem if keep else None
        for path in self.directory.glob(f"gallery-{gallery_id}-*.f32*"):
            if keep_stem is None or not path.name.startswith(keep_stem):
                path.unlink(missing_ok=True)

    def delete(self, gallery_id: int) -> None:
        self.discard(gallery_id)
