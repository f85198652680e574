"""Read queries more than one service needs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .models import FaceRecord, ImageRecord, Subject

SQLITE_PARAMETER_CHUNK = 900
"""Stay under SQLite's bound-parameter limit in IN (...) lists."""


def face_subjects(session: Session, face_ids: set[int], *, live_at: datetime | None = None
                  ) -> dict[int, tuple[int, str, str]]:
    """face id -> (subject id, subject name, image name) for the given faces (missing ids are left out).

    With `live_at`, faces whose image's retention date has passed by then are left out too: expired
    records are never returned, even before the purge deletes them."""
    subject_of: dict[int, tuple[int, str, str]] = {}
    ordered = sorted(face_ids)
    faces, subjects, images = FaceRecord.__table__.c, Subject.__table__.c, ImageRecord.__table__.c
    for start in range(0, len(ordered), SQLITE_PARAMETER_CHUNK):
        # the tables' columns, not the mapped classes': a plain SQL statement, without the ORM's compile and
        # result steps (every search runs this)
        query = (select(faces.id, subjects.id, subjects.name, images.name)
                 .join_from(FaceRecord.__table__, Subject.__table__, faces.subject_id == subjects.id)
                 .join(ImageRecord.__table__, faces.image_id == images.id)
                 .where(faces.id.in_(ordered[start:start + SQLITE_PARAMETER_CHUNK])))
        if live_at is not None:
            query = query.where(or_(images.retain_until.is_(None), images.retain_until >= live_at))
        rows = session.execute(query).all()
        subject_of.update({r[0]: (r[1], r[2], r[3]) for r in rows})
    return subject_of


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its wildcards taken literally (escape character \\)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def subject_page(session: Session, gallery_id: int, *, query: str | None, exact: bool, limit: int,
                 offset: int) -> tuple[int, list]:
    """(how many subjects match, one page of (id, name) of them ordered by name), in SQL.

    `query` is matched as the whole name (exact) or case-insensitively anywhere in it. Without a query
    (or with an exact one) the (gallery, name) index gives the count and the page. A substring has to
    read every name, so the total comes with the page from that one scan (`count(*) OVER ()`; only a
    page past the end needs a second query). SQLite's LIKE already ignores ASCII case (all that its
    lower() folds), so it is used as is there instead of `lower(name) LIKE lower(?)`, a call per row.
    benchmarks/web_gallery_pages.py measures the pages at 100k subjects."""
    where = [Subject.gallery_id == gallery_id]
    if exact:
        where.append(Subject.name == (query or "").strip())
    elif query and query.strip():
        pattern = like_pattern(query.strip())
        sqlite = session.get_bind().dialect.name == "sqlite"
        where.append(Subject.name.like(pattern, escape="\\") if sqlite else Subject.name.ilike(pattern, escape="\\"))
    page = select(Subject.id, Subject.name).where(*where).order_by(Subject.name, Subject.id).limit(limit).offset(offset)
    count = select(func.count()).select_from(Subject).where(*where)
    if exact or not (query and query.strip()):  # the (gallery, name) index serves both queries
        return session.execute(count).scalar_one(), session.execute(page).all()
    rows = session.execute(page.add_columns(func.count().over().label("total"))).all()
    if rows:
        return rows[0].total, rows
    return (session.execute(count).scalar_one() if offset else 0), []
