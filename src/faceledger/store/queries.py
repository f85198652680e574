"""Read queries more than one service needs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import FaceRecord, ImageRecord, Subject

SQLITE_PARAMETER_CHUNK = 900
"""Stay under SQLite's bound-parameter limit in IN (...) lists."""


def face_subjects(session: Session, face_ids: set[int]) -> dict[int, tuple[int, str, str]]:
    """face id -> (subject id, subject name, image name) for the given faces (missing ids are left out)."""
    subject_of: dict[int, tuple[int, str, str]] = {}
    ordered = sorted(face_ids)
    for start in range(0, len(ordered), SQLITE_PARAMETER_CHUNK):
        rows = session.execute(
            select(FaceRecord.id, Subject.id, Subject.name, ImageRecord.name)
            .join(Subject, FaceRecord.subject_id == Subject.id)
            .join(ImageRecord, FaceRecord.image_id == ImageRecord.id)
            .where(FaceRecord.id.in_(ordered[start:start + SQLITE_PARAMETER_CHUNK]))).all()
        subject_of.update({r[0]: (r[1], r[2], r[3]) for r in rows})
    return subject_of
