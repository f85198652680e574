"""What every service shares: settings, the store's session factories, the ledger, the pipeline, the lock."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.orm import Session, sessionmaker

from .. import caches
from ..config import Settings
from ..enrollment import load_with
from ..errors import IndexMismatch, NotFound
from ..faces import Face
from ..imaging import LoadedImage
from ..ledger import Ledger
from ..pipeline import FacePipeline
from ..store import Gallery
from ..texts import clean_text
from ..times import iso, utcnow  # noqa: F401 (the services take them from here)

ImageSource = Path | str | bytes


def safe_url(url) -> str:
    """A database URL fit for logs and the ledger: the password hidden."""
    return url.render_as_string(hide_password=True)


def require_text(value: str | None, what: str, flag: str) -> str:
    """A required free-text field, normalised and checked (see texts.py)."""
    return clean_text(value, what, flag, required=True)


def optional_text(value: str | None, what: str, flag: str) -> str | None:
    """An optional free-text field, normalised and checked; blank gives None."""
    return clean_text(value, what, flag, required=False)


@dataclass
class Context:
    """The handles every service needs, made once by the engine.

    Thread safety: the models run one call at a time (FacePipeline's lock); every write transaction and
    every use or change of an in-memory index holds `lock` (shared with the ledger), so a ledger
    sequence number is read and written under one lock and a FAISS index is never searched while
    another thread adds to it. Reads of the store need no lock (SQLite WAL, or PostgreSQL).
    """

    settings: Settings
    db: SqlEngine
    sessions: sessionmaker
    """Reads (and writes that need no cross-process consistency)."""
    writer: sessionmaker
    """Write transactions: each holds the database's write lock from its start (SQLite BEGIN IMMEDIATE,
    a PostgreSQL advisory lock), so processes sharing the store never interleave their checks and writes."""
    ledger: Ledger
    pipeline: FacePipeline

    _copies: ModelCopies | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # a fresh process (each CLI command) reads the calibration tail fits and the optimised embedding
        # model made before instead of remaking them (about 2 s of CPU; caches.py)
        caches.use_dir(self.settings.home / "cache")

    @property
    def lock(self) -> threading.RLock:
        return self.ledger.lock

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session for a write transaction, holding this process's lock and the database's write lock
        until it ends. Never call `ledger.record` or open another writer inside it: it would wait on itself."""
        with self.lock, self.writer() as session:
            yield session

    def gallery(self, session: Session, name: str) -> Gallery:
        """The gallery row by name; NotFound with the known names, IndexMismatch for another model's."""
        return self._checked(session, name, session.execute(select(Gallery).where(Gallery.name == name))
                             .scalar_one_or_none())

    def gallery_values(self, session: Session, name: str):
        """`gallery`, read as a plain row of its columns (attributes by column name) rather than an ORM object:
        for reads that change nothing, such as a search's (several per search; an ORM object costs a
        search several times the Python time under the GIL). Same checks and errors."""
        table = Gallery.__table__
        return self._checked(session, name, session.execute(select(table).where(table.c.name == name)).first())

    def _checked(self, session: Session, name: str, gallery):
        if gallery is None:
            known = session.execute(select(Gallery.name).order_by(Gallery.name)).scalars().all()
            hint = f"known galleries: {', '.join(known)}" if known else "no gallery exists yet"
            raise NotFound(f"unknown gallery {name!r} ({hint}); create it with `faceledger gallery create`")
        if gallery.model_id != self.model_id:
            raise IndexMismatch(
                f"gallery {name!r} holds {gallery.model_id} embeddings but this engine uses {self.model_id}; "
                "use the same model settings (e.g. FACELEDGER_FLIP_AVERAGE) or re-enrol"
            )
        return gallery

    def load(self, source: ImageSource, name: str | None = None) -> LoadedImage:
        """An image within every configured limit (bytes, pixels, side, aspect); decoded lazily, at the
        size detection needs (see imaging.py)."""
        return load_with(self.settings, source, name=name)

    def probe_face(self, image: LoadedImage, *, on_multiple: str = "refuse") -> Face:
        """The probe's one face. Probes (searches, verifications) arriving together, as on a server, run
        on up to `model_copies` copies of the models at once (each copy one thread; see ModelCopies)."""
        if self._copies is None:
            self._copies = ModelCopies(self.pipeline, self.settings)
        with self._copies.borrow() as pipeline:
            return pipeline.single_face(image, name=image.name, on_multiple=on_multiple)


def model_copies_for(settings: Settings) -> int:
    """How many copies of the models serve probes at once: settings.model_copies, or (0) one per CPU core
    this process may use, at most 4."""
    if settings.model_copies:
        return settings.model_copies
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class ModelCopies:
    """Copies of the detection and embedding models, lent out one per probe.

    A FacePipeline runs one call at a time (OpenCV's detector is not thread-safe), so with one copy,
    concurrent searches queue behind each other's detection and embedding and a second core sits idle.
    The first copy is the engine's own; more are made only when a probe finds every copy busy, up to
    `model_copies_for(settings)`, so a one-shot CLI command never loads a second one. Every copy is built
    from the same settings and model files (one model id), so which copy serves a probe changes nothing.
    """

    def __init__(self, first: FacePipeline, settings: Settings) -> None:
        self.settings = settings
        self.limit = model_copies_for(settings)
        self._idle = [first]
        self._made = 1
        self._ready = threading.Condition()

    @contextmanager
    def borrow(self) -> Iterator[FacePipeline]:
        pipeline = self._take()
        try:
            yield pipeline
        finally:
            with self._ready:
                self._idle.append(pipeline)
                self._ready.notify()

    def _take(self) -> FacePipeline:
        with self._ready:
            while not self._idle and self._made >= self.limit:
                self._ready.wait()
            if self._idle:
                return self._idle.pop()
            self._made += 1  # a new copy, made outside the lock (loading takes a fraction of a second)
        try:
            pipeline = FacePipeline.from_settings(self.settings)
            pipeline.load()
        except BaseException:
            with self._ready:
                self._made -= 1
                self._ready.notify()
            raise
        return pipeline
