"""Read queries more than one service needs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
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
    for start in range(0, len(ordered), SQLITE_PARAMETER_CHUNK):
        query = (select(FaceRecord.id, Subject.id, Subject.name, ImageRecord.name)
                 .join(Subject, FaceRecord.subject_id == Subject.id)
                 .join(ImageRecord, FaceRecord.image_id == ImageRecord.id)
                 .where(FaceRecord.id.in_(ordered[start:start + SQLITE_PARAMETER_CHUNK])))
        if live_at is not None:
            query = query.where(or_(ImageRecord.retain_until.is_(None), ImageRecord.retain_until >= live_at))
        rows = session.execute(query).all()
        subject_of.update({r[0]: (r[1], r[2], r[3]) for r in rows})
    return subject_of
