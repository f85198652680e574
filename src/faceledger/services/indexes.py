"""The vector index cache: one index per gallery, rebuilt from the store whenever it is stale.

The store is the truth. Every gallery has a `generation` bumped in the transaction that adds or
removes its faces; an index (in memory or on disk) records the generation it holds. A stale or missing
index is rebuilt from the embeddings in the store, so a crash can cost speed, never data.

On disk an enrolment batch adds a small delta file (index/deltas.py) instead of rewriting the whole
index; the base is rewritten (compacted) only when the deltas grow past their rule, after a removal, a
rebuild or `reindex`. A process holding an older index catches up by applying the deltas it missed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..index.faiss_index import FaissIndex
from ..index.files import IndexFiles, IndexMeta, bulk
from ..policy import Principal
from ..retention import Removal
from ..store import FaceRecord, Gallery
from .access import Access
from .context import Context

Progress = Callable[[int, int], None]


class IndexCache:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access
        self.files = IndexFiles(ctx.settings.index_dir, ctx.settings.index, dim=ctx.pipeline.embedder.dim)
        self._held: dict[int, tuple[int, FaissIndex]] = {}

    def clear(self) -> None:
        """Forget every in-memory index (the next use loads the file or rebuilds)."""
        with self.ctx.lock:
            self._held.clear()

    def expected_meta(self, gallery: Gallery, count: int, generation: int | None = None) -> IndexMeta:
        return IndexMeta(gallery_id=gallery.id, generation=gallery.generation if generation is None else generation,
                         model_id=gallery.model_id, dim=self.ctx.pipeline.embedder.dim,
                         description=self.files.description_for(gallery.id), count=count)

    def get(self, session: Session, gallery: Gallery) -> FaissIndex:
        """The gallery's index at the store's current generation: memory (caught up from the deltas other
        processes wrote), else the files (base + deltas), else rebuilt from the store."""
        with self.ctx.lock:
            held = self._held.get(gallery.id)
            if held and held[0] == gallery.generation:
                return held[1]
            generation, count = self._state(session, gallery.id)
            if held and held[0] == generation:
                return held[1]
            if held and held[0] < generation and self._catch_up(held[1], held[0], gallery.id, generation, count):
                self._held[gallery.id] = (generation, held[1])
                return held[1]
            index = self.files.load(gallery.id, expected=self.expected_meta(gallery, count, generation))
            if index is None:
                index = self.build(session, gallery)
                if self._state(session, gallery.id) != (generation, len(index)):
                    return index  # a commit landed while building: right for now, but neither saved nor held
                self.files.save(index, self.expected_meta(gallery, len(index), generation))
            self._held[gallery.id] = (generation, index)
            return index

    def _state(self, session: Session, gallery_id: int) -> tuple[int, int]:
        """The gallery's generation and face count in one statement: one snapshot, even where a read
        session's statements each see the latest commit (SQLite reads outside a transaction, READ COMMITTED)."""
        count = select(func.count()).select_from(FaceRecord).where(
            FaceRecord.gallery_id == gallery_id).scalar_subquery()
        generation, faces = session.execute(select(Gallery.generation, count).where(Gallery.id == gallery_id)).one()
        return int(generation), int(faces)

    def _catch_up(self, index: FaissIndex, held: int, gallery_id: int, generation: int, count: int) -> bool:
        """Apply the deltas other processes wrote since the `held` generation, if every one is there."""
        if not isinstance(index, FaissIndex):
            return False
        batches = self.files.deltas_between(gallery_id, held, generation)
        if batches is None or len(index) + sum(len(ids) for ids, _ in batches) != count:
            return False
        for ids, vectors in batches:
            if len(ids):
                index.add(ids, vectors)
        return True

    def build(self, session: Session, gallery: Gallery, description: str | None = None,
              progress: Progress | None = None) -> FaissIndex:
        """Stream the gallery's embeddings from the store into a new index (trained once, at the end)."""
        count = session.execute(select(func.count()).select_from(FaceRecord).where(
            FaceRecord.gallery_id == gallery.id)).scalar_one()
        index = self.files.new_index(gallery.id, self.ctx.pipeline.embedder.dim, count, description)
        done = 0
        rows = session.execute(select(FaceRecord.id, FaceRecord.embedding).where(
            FaceRecord.gallery_id == gallery.id).order_by(FaceRecord.id).execution_options(yield_per=50_000))
        with bulk(index):
            for chunk in rows.partitions():
                ids = np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk))
                vectors = np.frombuffer(b"".join(r[1] for r in chunk), dtype=np.float32).reshape(len(chunk), -1)
                index.add(ids, vectors)
                done += len(chunk)
                if progress:
                    progress(done, count)
        if progress:
            progress(count, count)
        return index

    def add(self, gallery_id: int, generation: int, faces: list[tuple[int, np.ndarray]]) -> None:
        """Faces just committed at `generation`: written as that generation's delta file, and added to the
        held index if it was current (else it is dropped)."""
        ids = np.array([fid for fid, _ in faces], dtype=np.int64)
        vectors = np.stack([v for _, v in faces]) if faces else np.empty((0, self.ctx.pipeline.embedder.dim),
                                                                         np.float32)
        self.files.append(gallery_id, generation, ids, vectors, self.ctx.model_id)
        with self.ctx.lock:
            held = self._held.get(gallery_id)
            if held is None or held[0] != generation - 1:
                self._held.pop(gallery_id, None)  # caught up from the deltas, or rebuilt, on next use
                return
            if len(ids):
                held[1].add(ids, vectors)
            self._held[gallery_id] = (generation, held[1])

    def save(self, gallery: str) -> None:
        """After an enrolment: each batch wrote its delta; the whole index is written again only when
        there is no base yet, a delta is missing, or the deltas grew past their rule (compaction)."""
        with self.ctx.sessions() as session:
            gallery_row = self.ctx.gallery(session, gallery)
            if not self.files.needs_base(gallery_row.id, gallery_row.generation):
                return
        with self.ctx.writing() as session:
            gallery_row = self.ctx.gallery(session, gallery)
            index = self.get(session, gallery_row)
            self.files.save(index, self.expected_meta(gallery_row, len(index)))

    def discard_files(self, removal: Removal) -> None:
        """Before a removal commits: delete the affected galleries' index files, so that a process killed
        between the commit and `refresh` leaves no copy of the removed vectors in them. The index is a
        cache: a missing file is rebuilt from the store on next use, and `refresh` writes it again."""
        for gallery_id in removal.face_ids_by_gallery:
            self.files.discard(gallery_id)

    def refresh(self, removal: Removal) -> None:
        """Take deleted vectors out of held indexes and rewrite the index files, so none survive on disk."""
        if not removal.face_ids_by_gallery:
            return
        with self.ctx.writing() as session:
            for gallery_id, face_ids in removal.face_ids_by_gallery.items():
                gallery = session.get(Gallery, gallery_id)
                held = self._held.get(gallery_id)
                if held is not None and held[0] == gallery.generation - 1:
                    held[1].remove(np.asarray(face_ids, dtype=np.int64))
                    self._held[gallery_id] = (gallery.generation, held[1])
                index = self.get(session, gallery)
                self.files.save(index, self.expected_meta(gallery, len(index)))

    def reindex(self, gallery: str | None = None, *, index: str | None = None,
                progress: Callable[[str, int, int], None] | None = None,
                by: Principal | None = None) -> list[dict]:
        """Rebuild index files from the store (all galleries, or one), optionally with another index string."""
        self.access.authorize(by, "reindex", gallery=gallery, index=index)
        with self.ctx.writing() as session:
            names = [gallery] if gallery else session.execute(select(Gallery.name)).scalars().all()
            rebuilt = []
            for name in names:
                gallery_row = self.ctx.gallery(session, name)
                report = (lambda done, total, name=name: progress(name, done, total)) if progress else None
                built = self.build(session, gallery_row, index, report)
                self.files.save(built, self.expected_meta(gallery_row, len(built)).with_description(
                    built.description))
                self._held[gallery_row.id] = (gallery_row.generation, built)
                rebuilt.append({"gallery": name, "faces": len(built), "index": built.description,
                                "kind": getattr(built, "kind", built.description)})
        return rebuilt
