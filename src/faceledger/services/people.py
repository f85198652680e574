"""The people of a gallery: list and find subjects by name, read one with its images and faces, and fix
enrolment mistakes — rename a subject, merge two subjects, move a face to another subject, remove a face.

Every change is checked against the role (`subject.edit`: admin, enroller) and ledgered with ids and
the names involved. Merging and moving keep every embedding (the vector index holds face ids, not
subjects, so it stays valid); removing a face deletes it and takes it out of the index. Each change
drops the gallery's own calibration sample, which pairs faces of different subjects, so it is rebuilt
from the corrected subjects on next use.
"""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import AlreadyExists, Conflict, NotFound
from ..policy import Principal
from ..retention import Removal, bump_generations
from ..store import FaceRecord, Gallery, ImageRecord, Subject
from ..store.queries import subject_page
from .access import Access
from .calibrations import Calibrations
from .context import Context, iso, require_text
from .indexes import IndexCache

FACES_SHOWN = 6
"""Face ids listed per subject in a page of subjects (the subject's own page lists all)."""


class People:
    def __init__(self, ctx: Context, access: Access, indexes: IndexCache, calibrations: Calibrations) -> None:
        self.ctx = ctx
        self.access = access
        self.indexes = indexes
        self.calibrations = calibrations

    # -- reading -----------------------------------------------------------------------------------------

    def list_subjects(self, gallery: str, *, query: str | None = None, exact: bool = False, limit: int = 50,
                      offset: int = 0, by: Principal | None = None) -> dict:
        """A page of a gallery's subjects by name (those whose name contains `query`, or is `query` with
        exact=True), each with its face and image counts and its first few face ids."""
        self.access.authorize(by, "gallery.read", gallery=gallery)
        limit, offset = max(1, min(int(limit), 500)), max(0, int(offset))
        with self.ctx.sessions() as session:
            row = self.ctx.gallery(session, gallery)
            total, subjects = subject_page(session, row.id, query=query, exact=exact, limit=limit, offset=offset)
            ids = [s.id for s in subjects]
            faces: dict[int, list[int]] = {}
            counts: dict[int, int] = {}
            images: dict[int, int] = {}
            if ids:
                for subject_id, count in session.execute(select(FaceRecord.subject_id, func.count()).where(
                        FaceRecord.subject_id.in_(ids)).group_by(FaceRecord.subject_id)):
                    counts[subject_id] = count
                for subject_id, count in session.execute(select(FaceRecord.subject_id, func.count(
                        FaceRecord.image_id.distinct())).where(FaceRecord.subject_id.in_(ids))
                        .group_by(FaceRecord.subject_id)):
                    images[subject_id] = count
                for face_id, subject_id in session.execute(select(FaceRecord.id, FaceRecord.subject_id).where(
                        FaceRecord.subject_id.in_(ids)).order_by(FaceRecord.id)):
                    shown = faces.setdefault(subject_id, [])
                    if len(shown) < FACES_SHOWN:
                        shown.append(face_id)
        return {"gallery": gallery, "query": query or "", "total": total, "limit": limit, "offset": offset,
                "subjects": [{"subject_id": s.id, "name": s.name, "faces": counts.get(s.id, 0),
                              "images": images.get(s.id, 0), "face_ids": faces.get(s.id, [])} for s in subjects]}

    def subject(self, gallery: str, subject_id: int, *, by: Principal | None = None) -> dict:
        """One subject: its images, each with its provenance once and the subject's faces in it."""
        self.access.authorize(by, "gallery.read", gallery=gallery, subject_id=subject_id)
        with self.ctx.sessions() as session:
            row = self.ctx.gallery(session, gallery)
            subject = _subject(session, row, subject_id)
            faces = session.execute(select(FaceRecord.id, FaceRecord.image_id).where(
                FaceRecord.subject_id == subject.id).order_by(FaceRecord.id)).all()
            by_image: dict[int, list[int]] = {}
            for face_id, image_id in faces:
                by_image.setdefault(image_id, []).append(face_id)
            records = session.execute(select(ImageRecord).where(or_(
                ImageRecord.id.in_(list(by_image)), ImageRecord.subject_id == subject.id))
                .order_by(ImageRecord.id)).scalars().all()
            images = [{"image_id": im.id, "name": im.name, "sha256": im.sha256, "source": im.source,
                       "legal_basis": im.legal_basis, "enrolled_by": im.enrolled_by,
                       "enrolled_at": iso(im.enrolled_at), "retain_until": iso(im.retain_until),
                       "face_ids": by_image.get(im.id, [])} for im in records]
            return {"gallery": gallery, "subject_id": subject.id, "name": subject.name, "faces": len(faces),
                    "images": images}

    # -- changes -----------------------------------------------------------------------------------------

    def rename_subject(self, gallery: str, subject_id: int, name: str, *, by: Principal | None = None) -> dict:
        """Give a subject another name, unique in its gallery."""
        principal = self.access.authorize(by, "subject.edit", gallery=gallery, subject_id=subject_id)
        name = require_text(name, "the new name", "--subject")
        with self.ctx.writing() as session:
            row = self.ctx.gallery(session, gallery)
            subject = _subject(session, row, subject_id)
            if subject.name == name:
                raise Conflict(f"the subject is already called {name!r}")
            if session.execute(select(Subject.id).where(Subject.gallery_id == row.id, Subject.name == name)).first():
                raise AlreadyExists(f"gallery {gallery!r} already has a subject called {name!r}; "
                                    "merge the two subjects if they are the same person")
            before, subject.name = subject.name, name
            self._ledger(session, principal, "subject.rename", {
                "gallery": gallery, "subject_id": subject.id, "before": before, "after": name})
        return self.subject(gallery, subject_id, by=principal)

    def merge_subjects(self, gallery: str, subject_id: int, into: int, *, by: Principal | None = None) -> dict:
        """Move every face and image of `subject_id` to `into` (the same person enrolled twice), and
        delete the emptied subject."""
        principal = self.access.authorize(by, "subject.edit", gallery=gallery, subject_id=subject_id, into=into)
        if int(subject_id) == int(into):
            raise Conflict("a subject cannot be merged into itself; choose another subject")
        with self.ctx.writing() as session:
            row = self.ctx.gallery(session, gallery)
            source, target = _subject(session, row, subject_id), _subject(session, row, into)
            faces = session.execute(update(FaceRecord).where(FaceRecord.subject_id == source.id)
                                    .values(subject_id=target.id)).rowcount
            images = session.execute(update(ImageRecord).where(ImageRecord.subject_id == source.id)
                                     .values(subject_id=target.id)).rowcount
            session.execute(delete(Subject).where(Subject.id == source.id))
            self._ledger(session, principal, "subject.merge", {
                "gallery": gallery, "subject_id": source.id, "subject": source.name, "into_id": target.id,
                "into": target.name, "faces": faces, "images": images})
        self.calibrations.forget([row.id])
        return self.subject(gallery, into, by=principal)

    def move_face(self, gallery: str, face_id: int, to: int, *, by: Principal | None = None) -> dict:
        """Give one face to another subject of the gallery (a photo enrolled under the wrong name)."""
        principal = self.access.authorize(by, "subject.edit", gallery=gallery, face=face_id, to=to)
        with self.ctx.writing() as session:
            row = self.ctx.gallery(session, gallery)
            face = _face(session, row, face_id)
            source, target = _subject(session, row, face.subject_id), _subject(session, row, to)
            if source.id == target.id:
                raise Conflict(f"face {face_id} already belongs to {target.name!r}")
            if _face_count(session, source.id) == 1:
                raise Conflict(f"face {face_id} is the only face of {source.name!r}: merge the subject into "
                               f"{target.name!r} instead")
            face.subject_id = target.id
            session.flush()
            image = session.get(ImageRecord, face.image_id)
            others = session.execute(select(func.count()).select_from(FaceRecord).where(
                FaceRecord.image_id == image.id, FaceRecord.subject_id != target.id)).scalar_one()
            if not others:
                image.subject_id = target.id  # the whole image is now the target's
            self._ledger(session, principal, "face.move", {
                "gallery": gallery, "face_id": face.id, "image_id": image.id, "from_id": source.id,
                "from": source.name, "to_id": target.id, "to": target.name})
        self.calibrations.forget([row.id])
        return self.subject(gallery, to, by=principal)

    def remove_face(self, gallery: str, face_id: int, *, reason: str | None, by: Principal | None = None) -> dict:
        """Delete one face (a wrong detection, a bystander, a photo of someone else); its image goes too
        when no face is left in it. A subject's last face is not removed this way: erasing a person is
        `erase`, with its receipt."""
        principal = self.access.authorize(by, "subject.edit", gallery=gallery, face=face_id)
        with self.access.refusals(principal, "face.remove", {"gallery": gallery, "face": face_id}):
            reason = require_text(reason, "a reason", "--reason")
        removal = Removal()
        with self.ctx.writing() as session:
            row = self.ctx.gallery(session, gallery)
            face = _face(session, row, face_id)
            subject = _subject(session, row, face.subject_id)
            if _face_count(session, subject.id) == 1:
                raise Conflict(f"face {face_id} is the last face of {subject.name!r}; to remove the person, "
                               "an admin erases the subject (with a receipt)")
            image_id = face.image_id
            removal.face_ids_by_gallery[row.id].append(face.id)
            removal.faces += session.execute(delete(FaceRecord).where(FaceRecord.id == face.id)).rowcount
            left = session.execute(select(func.count()).select_from(FaceRecord).where(
                FaceRecord.image_id == image_id)).scalar_one()
            if not left:
                removal.images += session.execute(delete(ImageRecord).where(ImageRecord.id == image_id)).rowcount
            bump_generations(session, [row.id])
            self._ledger(session, principal, "face.remove", {
                "gallery": gallery, "face_id": face_id, "image_id": image_id, "subject_id": subject.id,
                "subject": subject.name, "reason": reason, "image_removed": not left})
        self.indexes.refresh(removal)
        self.calibrations.forget([row.id])
        return self.subject(gallery, subject.id, by=principal)

    def _ledger(self, session: Session, principal: Principal, action: str, payload: dict) -> None:
        entry = self.ctx.ledger.append(session, actor=principal.name, action=action, payload=payload)
        session.commit()
        self.ctx.ledger.note_committed(entry)


def _subject(session: Session, gallery: Gallery, subject_id: int) -> Subject:
    subject = session.get(Subject, int(subject_id))
    if subject is None or subject.gallery_id != gallery.id:
        raise NotFound(f"gallery {gallery.name!r} has no subject {subject_id}")
    return subject


def _face(session: Session, gallery: Gallery, face_id: int) -> FaceRecord:
    face = session.get(FaceRecord, int(face_id))
    if face is None or face.gallery_id != gallery.id:
        raise NotFound(f"gallery {gallery.name!r} has no face {face_id}")
    return face


def _face_count(session: Session, subject_id: int) -> int:
    return session.execute(select(func.count()).select_from(FaceRecord).where(
        FaceRecord.subject_id == subject_id)).scalar_one()
