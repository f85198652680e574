"""Where each gallery's index lives and what it holds: FAISS files beside a meta file, or a Milvus collection."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IndexMismatch
from . import atomic_write
from .faiss_index import FaissIndex
from .spec import AUTO, resolve


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
