"""SQLAlchemy 2 models. The SQL store is the source of truth: it holds every embedding."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for large galleries.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Gallery(Base):
    __tablename__ = "galleries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    retain_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_fpir: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    purposes: Mapped[list] = mapped_column(JSON, default=list)
    """Purposes a search of this gallery may state; empty: any stated purpose."""
    allow_investigative: Mapped[bool] = mapped_column(Boolean, default=False)
    probe_retain_days: Mapped[int] = mapped_column(Integer, default=30)
    keep_probe_images: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_live: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Live watching of streams may search this gallery (an admin opts in; off by default)."""
    blind_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Reviewers record a decision before they see rank and score."""
    keep_probe_for_review: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    """The probe image is kept until the search is reviewed or the probe's retention ends."""
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bumped on every change of the gallery's faces; the index cache records the generation it holds."""

    subjects: Mapped[list[Subject]] = relationship(back_populates="gallery", cascade="all, delete-orphan")


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("gallery_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    gallery: Mapped[Gallery] = relationship(back_populates="subjects")
    images: Mapped[list[ImageRecord]] = relationship(back_populates="subject", cascade="all, delete-orphan")


class ImageRecord(Base):
    """One enrolled image and where it came from."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("gallery_id", "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retain_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)

    subject: Mapped[Subject] = relationship(back_populates="images")
    faces: Mapped[list[FaceRecord]] = relationship(back_populates="image", cascade="all, delete-orphan")


class FaceRecord(Base):
    """One face of an enrolled image, with its embedding (float32 bytes) and the model that made it."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    box: Mapped[list] = mapped_column(JSON)
    landmarks: Mapped[list] = mapped_column(JSON)
    detector_score: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict] = mapped_column(JSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    model_id: Mapped[str] = mapped_column(String(100))
    template_id: Mapped[str] = mapped_column(String(100))

    image: Mapped[ImageRecord] = relationship(back_populates="faces")


class FaceCrop(Base):
    """A small JPEG of an enrolled face, kept only for uploaded images (they have no path to read the face
    from) so a reviewer can see whom a candidate is. Deleted with its face (ON DELETE CASCADE)."""

    __tablename__ = "face_crops"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerEntry(Base):
    """Append-only, hash-chained record of every consequential act."""

    __tablename__ = "ledger"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class User(Base):
    """Someone who may act; only the sha256 of the token is stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A signed-in browser of the web app. Only the sha256 of the session id (the cookie's value) is
    stored; deleting the row (sign-out, a disabled user, expiry) ends the session at once."""

    __tablename__ = "web_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Probe(Base):
    """What is kept of a search probe until it expires: hash, embedding, quality, and the image only if
    the gallery's policy keeps probe images."""

    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    searched_by: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[dict] = mapped_column(JSON)
    mode: Mapped[str] = mapped_column(String(20))
    candidates: Mapped[list] = mapped_column(JSON)
    image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    review_image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """A small JPEG of the probe's face (box plus margin) for its reviewers, where the gallery keeps one:
    deleted once every candidate has a reviewer's decision, or with the probe when its retention ends."""


class Review(Base):
    """A reviewer's decision on one candidate of one search."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("search_entry_id", "candidate_rank", "reviewer"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    search_entry_id: Mapped[str] = mapped_column(String(36), index=True)
    candidate_rank: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(300))
    decision: Mapped[str] = mapped_column(String(20))
    reviewer: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ledger_entry: Mapped[str] = mapped_column(String(36))
    blind: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The reviewer decided without seeing rank or score (a blind-review gallery)."""


class OpenReview(Base):
    """A search awaiting review: it showed candidates and not every one has a reviewer's confirm or reject.
    Written in the transaction of the search's ledger entry, removed in the one of the decision that
    settles it; the review queue is read from here (the ledger stays the record: revision 0005 fills this
    table from it). Erasure and retention leave it alone: the search still awaits review."""

    __tablename__ = "open_reviews"

    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    """The search's place in the ledger: the queue is oldest first."""
    created_at: Mapped[str] = mapped_column(String(40), index=True)
    searched_by: Mapped[str] = mapped_column(String(200))
    gallery: Mapped[str | None] = mapped_column(Text, nullable=True)
    purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    case_ref: Mapped[str | None] = mapped_column(Text, nullable=True)
    case_folded: Mapped[str] = mapped_column(Text)
    """The case reference case-folded (Python's `casefold`), so a part of it is found alike on every database."""
    mode: Mapped[str | None] = mapped_column(String(20), nullable=True)
    candidates: Mapped[int] = mapped_column(Integer)


class OpenReviewGallery(Base):
    """Each gallery a search awaiting review covered (one, or several searched as one): the queue's filter."""

    __tablename__ = "open_review_galleries"

    gallery: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """The search's seq again, so one gallery's queue is read in order from this table's key."""
    entry_id: Mapped[str] = mapped_column(ForeignKey("open_reviews.entry_id", ondelete="CASCADE"), index=True)


class Maintenance(Base):
    """Key/value facts about housekeeping, e.g. when retention was last enforced."""

    __tablename__ = "maintenance"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
