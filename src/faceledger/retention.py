"""Deleting records for real: expired images and probes (retention) and a person's faces (erasure).

Functions here take an open session and return what they removed; the engine commits, updates the
index cache and ledgers the summary.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .store import FaceRecord, Gallery, ImageRecord, Probe, Subject


@dataclass
class Removal:
    """What a purge or an erasure took out of the store."""

    images: int = 0
    faces: int = 0
    subjects: int = 0
    probes: int = 0
    face_ids_by_gallery: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    probe_images: list[str] = field(default_factory=list)
    """Searches (ledger entry ids) whose kept probe image (full, or the crop kept for review) went with
    their expired probe: the caller ledgers them as `probe.image.delete`, reason "retention"."""

    def summary(self) -> dict:
        return {"images": self.images, "faces": self.faces, "subjects": self.subjects, "probes": self.probes}


def delete_images(session: Session, image_ids: list[int], removal: Removal) -> None:
    """Delete images with their faces, then subjects left without any image; bump galleries' generation."""
    if not image_ids:
        return
    for start in range(0, len(image_ids), 900):
        chunk = image_ids[start:start + 900]
        faces = session.execute(select(FaceRecord.id, FaceRecord.gallery_id).where(
            FaceRecord.image_id.in_(chunk))).all()
        for face_id, gallery_id in faces:
            removal.face_ids_by_gallery[gallery_id].append(face_id)
        subject_ids = set(session.execute(select(ImageRecord.subject_id).where(ImageRecord.id.in_(chunk))).scalars())
        subject_ids |= set(session.execute(select(FaceRecord.subject_id).where(
            FaceRecord.image_id.in_(chunk))).scalars())
        removal.faces += session.execute(delete(FaceRecord).where(FaceRecord.image_id.in_(chunk))).rowcount
        removal.images += session.execute(delete(ImageRecord).where(ImageRecord.id.in_(chunk))).rowcount
        removal.subjects += delete_empty_subjects(session, subject_ids)
    bump_generations(session, list(removal.face_ids_by_gallery))


def delete_empty_subjects(session: Session, subject_ids: set[int]) -> int:
    removed = 0
    for subject_id in subject_ids:
        has_images = session.execute(select(func.count()).select_from(ImageRecord).where(
            ImageRecord.subject_id == subject_id)).scalar_one()
        has_faces = session.execute(select(func.count()).select_from(FaceRecord).where(
            FaceRecord.subject_id == subject_id)).scalar_one()
        if not has_images and not has_faces:
            removed += session.execute(delete(Subject).where(Subject.id == subject_id)).rowcount
    return removed


def bump_generations(session: Session, gallery_ids: list[int]) -> None:
    for gallery in session.execute(select(Gallery).where(Gallery.id.in_(gallery_ids))).scalars():
        gallery.generation += 1


def purge_expired(session: Session, now: datetime) -> Removal:
    """Delete every image whose retain-until date has passed, and every expired probe."""
    removal = Removal()
    expired = list(session.execute(select(ImageRecord.id).where(
        ImageRecord.retain_until.is_not(None), ImageRecord.retain_until < now)).scalars())
    delete_images(session, expired, removal)
    removal.probe_images = list(session.execute(select(Probe.entry_id).where(
        Probe.expires_at < now, (Probe.image.is_not(None)) | (Probe.review_image.is_not(None)))
        .order_by(Probe.id)).scalars())
    removal.probes = session.execute(delete(Probe).where(Probe.expires_at < now)).rowcount
    return removal


def images_of_subjects(session: Session, subject_ids: list[int]) -> list[int]:
    image_ids = set(session.execute(select(ImageRecord.id).where(ImageRecord.subject_id.in_(subject_ids))).scalars())
    image_ids |= set(session.execute(select(FaceRecord.image_id).where(
        FaceRecord.subject_id.in_(subject_ids))).scalars())
    return sorted(image_ids)
