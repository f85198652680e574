"""Galleries: create, change and describe them and their policy; list their images; show a face."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..enrollment import face_crop_jpeg
from ..errors import AlreadyExists, FaceledgerError, ImageError, NotFound
from ..policy import Principal, gallery_policy, validated_policy
from ..store import FaceCrop, FaceRecord, Gallery, ImageRecord, Subject
from .access import Access
from .context import Context, iso, require_text, utcnow


class Galleries:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access

    def create_gallery(self, name: str, *, purposes: Sequence[str] = (), allow_investigative: bool = False,
                       target_fpir: float | None = None, retain_days: int | None = None,
                       probe_retain_days: int | None = None, keep_probe_images: bool = False,
                       keep_probe_for_review: bool = True, blind_review: bool = False,
                       by: Principal | None = None) -> dict:
        """A new gallery and its policy; the policy is ledgered."""
        ctx = self.ctx
        principal = self.access.authorize(by, "gallery.create", gallery=name)
        name = require_text(name, "a gallery name", "NAME")
        policy = validated_policy(
            purposes=purposes, allow_investigative=allow_investigative,
            target_fpir=target_fpir or ctx.settings.target_fpir, retain_days=retain_days,
            probe_retain_days=ctx.settings.probe_retain_days if probe_retain_days is None else probe_retain_days,
            keep_probe_images=keep_probe_images, keep_probe_for_review=keep_probe_for_review,
            blind_review=blind_review)
        with ctx.writing() as session:
            if session.execute(select(Gallery.id).where(Gallery.name == name)).first():
                raise AlreadyExists(f"gallery {name!r} already exists")
            gallery = Gallery(name=name, created_at=utcnow(), created_by=principal.name, model_id=ctx.model_id,
                              generation=0, **policy)
            session.add(gallery)
            session.flush()
            entry = ctx.ledger.append(session, actor=principal.name, action="gallery.create", payload={
                "gallery": name, "gallery_id": gallery.id, "model_id": ctx.model_id, "policy": policy})
            session.commit()
        ctx.ledger.note_committed(entry)
        return self.gallery_info(name, by=principal)

    def update_gallery(self, name: str, *, by: Principal | None = None, **changes) -> dict:
        """Change a gallery's policy (admin); the before and after are ledgered."""
        ctx = self.ctx
        principal = self.access.authorize(by, "gallery.update", gallery=name)
        changes = {key: value for key, value in changes.items() if value is not None}
        if not changes:
            raise FaceledgerError("nothing to change: give at least one policy option")
        with ctx.writing() as session:
            gallery = ctx.gallery(session, name)
            before = gallery_policy(gallery)
            after = validated_policy(**{**before, **changes})
            for key, value in after.items():
                setattr(gallery, key, value)
            entry = ctx.ledger.append(session, actor=principal.name, action="gallery.update", payload={
                "gallery": name, "gallery_id": gallery.id, "before": before, "after": after})
            session.commit()
        ctx.ledger.note_committed(entry)
        return self.gallery_info(name, by=principal)

    def gallery_info(self, name: str, *, by: Principal | None = None) -> dict:
        self.access.authorize(by, "gallery.read", gallery=name)
        with self.ctx.sessions() as session:
            return describe(session, self.ctx.gallery(session, name))

    def list_galleries(self, *, by: Principal | None = None) -> list[dict]:
        self.access.authorize(by, "gallery.read")
        with self.ctx.sessions() as session:
            galleries = session.execute(select(Gallery).order_by(Gallery.name)).scalars().all()
            return [describe(session, g) for g in galleries]

    def gallery_images(self, name: str, *, limit: int = 100, offset: int = 0,
                       by: Principal | None = None) -> dict:
        """A page of a gallery's enrolled images: subject, provenance, expiry and face ids."""
        self.access.authorize(by, "gallery.read", gallery=name)
        with self.ctx.sessions() as session:
            gallery = self.ctx.gallery(session, name)
            total = session.execute(select(func.count()).select_from(ImageRecord).where(
                ImageRecord.gallery_id == gallery.id)).scalar_one()
            rows = session.execute(
                select(ImageRecord, Subject.name).join(Subject, ImageRecord.subject_id == Subject.id)
                .where(ImageRecord.gallery_id == gallery.id).order_by(Subject.name, ImageRecord.id)
                .limit(max(0, int(limit))).offset(max(0, int(offset)))).all()
            faces: dict[int, list[int]] = {}
            for face_id, image_id in session.execute(select(FaceRecord.id, FaceRecord.image_id).where(
                    FaceRecord.image_id.in_([r[0].id for r in rows])).order_by(FaceRecord.id)):
                faces.setdefault(image_id, []).append(face_id)
        images = [{"image_id": image.id, "subject": subject, "subject_id": image.subject_id, "name": image.name,
                   "sha256": image.sha256, "width": image.width, "height": image.height, "source": image.source,
                   "legal_basis": image.legal_basis, "enrolled_by": image.enrolled_by,
                   "enrolled_at": iso(image.enrolled_at), "retain_until": iso(image.retain_until),
                   "face_ids": faces.get(image.id, [])} for image, subject in rows]
        return {"gallery": name, "total": total, "limit": limit, "offset": offset, "images": images}

    def face_crop(self, face_id: int, *, by: Principal | None = None) -> bytes:
        """A JPEG of one enrolled face (box plus a margin), for the roles that compare faces.

        From the crop stored at enrolment (uploads), else read from the enrolled image's stored path; a
        file that is gone or changed since enrolment gives NotFound rather than someone else's face."""
        self.access.authorize(by, "face.view", face=face_id)
        with self.ctx.sessions() as session:
            face = session.get(FaceRecord, face_id)
            if face is None:
                raise NotFound(f"no enrolled face {face_id}")
            crop = session.get(FaceCrop, face_id)
            if crop is not None:
                return crop.jpeg
            image = session.get(ImageRecord, face.image_id)
            box, path, digest = list(face.box), image.name, image.sha256
        if not any(box):
            raise NotFound(f"face {face_id} was enrolled from a precomputed embedding: there is no image to show")
        try:
            loaded = self.ctx.load(Path(path))
        except ImageError:
            raise NotFound(f"the image of face {face_id} is no longer readable at {path}") from None
        if loaded.sha256 != digest:
            raise NotFound(f"the file at {path} changed since face {face_id} was enrolled")
        return face_crop_jpeg(loaded, box)


def describe(session: Session, gallery: Gallery) -> dict:
    """A gallery's counts, model and policy."""
    def count(model) -> int:
        return session.execute(select(func.count()).select_from(model).where(model.gallery_id == gallery.id)).scalar_one()

    return {
        "name": gallery.name, "id": gallery.id, "subjects": count(Subject), "images": count(ImageRecord),
        "faces": count(FaceRecord), "model_id": gallery.model_id, "created_at": iso(gallery.created_at),
        "created_by": gallery.created_by, **gallery_policy(gallery), "allow_live": bool(gallery.allow_live),
    }
