"""Enrolment: image files, uploads and precomputed embeddings, through one provenance check and one
batch writer. Each batch commits its images, faces, the gallery's generation bump and its ledger entry
in one transaction, and images are de-duplicated by sha256, so a killed run resumes with no duplicates.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..enrollment import (
    Analysis,
    PrecomputedFace,
    WorkItem,
    analyse_all,
    analyse_upload,
    expand_paths,
    file_sha256,
    subject_for,
)
from ..errors import FaceledgerError, IndexMismatch
from ..policy import Principal, check_retain_until
from ..results import EnrollReport, FileOutcome
from ..store import FaceCrop, FaceRecord, Gallery, ImageRecord, Subject
from ..store.queries import SQLITE_PARAMETER_CHUNK
from .access import Access
from .context import Context, iso, require_text, utcnow
from .indexes import IndexCache

Progress = Callable[[int, int], None]


class Enrolment:
    def __init__(self, ctx: Context, access: Access, indexes: IndexCache) -> None:
        self.ctx = ctx
        self.access = access
        self.indexes = indexes

    def enroll(self, paths: Sequence[Path | str], *, gallery: str, subject: str | None = None,
               subject_from_folder: bool = False, source: str, legal_basis: str,
               retain_until: datetime | None = None, on_multiple: str = "refuse", workers: int = 1,
               progress: Progress | None = None, by: Principal | None = None) -> EnrollReport:
        """Enrol image files. Already-enrolled images (same sha256) are skipped, so a rerun resumes."""
        provenance, _ = self._begin(gallery, source, legal_basis, retain_until, "images", by)
        if subject:
            subject = require_text(subject, "the subject's name", "--subject")
        if bool(subject) == bool(subject_from_folder):
            raise FaceledgerError("give exactly one of --subject NAME or --subject-from-folder")
        report = EnrollReport(gallery=gallery)
        items = self._work_items(gallery, expand_paths(paths), subject, subject_from_folder, report)
        done, total = len(report.outcomes), len(report.outcomes) + len(items)
        if progress:
            progress(done, total)
        batch: list[Analysis] = []  # models load lazily, in this process only when workers == 1
        for analysis in analyse_all(items, pipeline=self.ctx.pipeline, settings=self.ctx.settings,
                                    on_multiple=on_multiple, workers=workers):
            batch.append(analysis)
            if len(batch) >= self.ctx.settings.enroll_batch:
                self._store_batch(gallery, batch, provenance, report)
                done += len(batch)
                batch = []
                if progress:
                    progress(done, total)
        if batch:
            self._store_batch(gallery, batch, provenance, report)
            if progress:
                progress(total, total)
        self.indexes.save(gallery)
        return report

    def enroll_embeddings(self, entries: Sequence[PrecomputedFace], *, gallery: str, source: str,
                          legal_basis: str, retain_until: datetime | None = None,
                          by: Principal | None = None) -> EnrollReport:
        """Enrol embeddings computed elsewhere by this engine's model, with the same provenance rules."""
        ctx = self.ctx
        provenance, known = self._begin(gallery, source, legal_basis, retain_until, "precomputed embeddings", by,
                                        only=[entry.sha256 for entry in entries])
        dim = ctx.pipeline.embedder.dim
        for entry in entries:
            if entry.model_id != ctx.model_id:
                raise IndexMismatch(f"{entry.name}: embedding from model {entry.model_id}, engine uses {ctx.model_id}")
            vector = np.asarray(entry.embedding, dtype=np.float32).reshape(-1)
            if vector.shape != (dim,) or not np.isfinite(vector).all() or not np.any(vector):
                # checked before anything is stored: a bad vector in the store would break every index rebuild
                raise FaceledgerError(f"{entry.name}: an embedding must be {dim} finite numbers, not all zero "
                                      f"(got {vector.size} values)")
        report = EnrollReport(gallery=gallery)
        fresh = []
        for entry in entries:
            if entry.sha256 in known:
                report.outcomes.append(FileOutcome(path=entry.name, status="duplicate", subject=entry.subject))
            else:
                known.add(entry.sha256)
                fresh.append(entry.analysis())
        self._store_in_batches(gallery, fresh, provenance, report)
        return report

    def enroll_uploads(self, uploads: Sequence[tuple[str, bytes] | tuple[str, bytes, str]], *, gallery: str,
                       subject: str | None, source: str | None, legal_basis: str | None,
                       retain_until: datetime | None = None, on_multiple: str = "refuse",
                       by: Principal | None = None) -> EnrollReport:
        """Enrol uploaded images, given as (file name, bytes) of `subject`, or as (file name, bytes,
        subject) to name each one's subject (the web app's one folder per subject): the HTTP API's and
        the web app's enrolment.

        The same provenance rules, sha256 de-duplication, batches, ledger entries and store as `enroll`.
        Only these uploads' hashes are looked up in the gallery (not every hash it holds), and the index
        file is written only when something was stored, so a small upload into a large gallery is quick.
        The bytes are not kept; each enrolled face keeps a small JPEG crop instead (there is no file to
        show a reviewer later), deleted with the face. The image is recorded as ``upload:NAME`` (see
        `upload_name`: a browser's relative path such as ``person/photo.jpg`` is kept, made safe).
        """
        items = [(upload[0], upload[1], upload[2] if len(upload) > 2 else subject) for upload in uploads]
        hashes = [hashlib.sha256(data).hexdigest() for _, data, _ in items]
        provenance, seen = self._begin(gallery, source, legal_basis, retain_until, "upload", by, only=hashes)
        names = {who: require_text(who, "the subject's name", "--subject") for who in {who for *_, who in items}}
        report = EnrollReport(gallery=gallery)
        analyses = []
        for (filename, data, who), digest in zip(items, hashes, strict=True):
            item = WorkItem(path=upload_name(filename), subject=names[who], sha256=digest)
            if item.sha256 in seen:
                report.outcomes.append(FileOutcome(path=item.path, status="duplicate", subject=item.subject))
                continue
            seen.add(item.sha256)
            analyses.append(analyse_upload(self.ctx.pipeline, item, data, settings=self.ctx.settings,
                                           on_multiple=on_multiple))
        if analyses:
            self._store_in_batches(gallery, analyses, provenance, report)
        return report

    def _begin(self, gallery: str, source: str | None, legal_basis: str | None, retain_until: datetime | None,
               method: str, by: Principal | None, *, only: Sequence[str] = ()) -> tuple[dict, set[str]]:
        """Check the role and the provenance; return the provenance record and those of the sha256s
        `only` that the gallery already holds."""
        principal = self.access.authorize(by, "enroll", gallery=gallery)
        provenance = {
            "source": require_text(source, "the image source (provenance)", "--source"),
            "legal_basis": require_text(legal_basis, "the legal basis for holding these images", "--legal-basis"),
            "retain_until": retain_until, "method": method, "by": principal.name,
        }
        with self.ctx.sessions() as session:
            gallery_row = self.ctx.gallery(session, gallery)
            with self.access.refusals(principal, "enroll", {"gallery": gallery, "retain_until": iso(retain_until)}):
                check_retain_until(retain_until, gallery_row.retain_days, gallery, utcnow())
        return provenance, self._held(gallery, only)

    def _held(self, gallery: str, only: Sequence[str]) -> set[str]:
        """Those of the sha256s `only` that the gallery already holds (looked up in chunks: a call costs
        what it enrols, not what the gallery holds)."""
        with self.ctx.sessions() as session:
            held = select(ImageRecord.sha256).where(ImageRecord.gallery_id == self.ctx.gallery(session, gallery).id)
            wanted = sorted(set(only))
            known: set[str] = set()
            for start in range(0, len(wanted), SQLITE_PARAMETER_CHUNK):
                known.update(session.execute(held.where(ImageRecord.sha256.in_(
                    wanted[start:start + SQLITE_PARAMETER_CHUNK]))).scalars())
            return known

    def _store_in_batches(self, gallery: str, analyses: list[Analysis], provenance: dict,
                          report: EnrollReport) -> None:
        size = self.ctx.settings.enroll_batch
        stored = len(report.ledger_entries)
        for start in range(0, len(analyses), size):
            self._store_batch(gallery, analyses[start:start + size], provenance, report)
        if len(report.ledger_entries) > stored:  # nothing stored: the index and its file are unchanged
            self.indexes.save(gallery)

    def _work_items(self, gallery: str, files: list[Path], subject: str | None, from_folder: bool,
                    report: EnrollReport) -> list[WorkItem]:
        """The files to analyse, in order; a file that cannot be read or named fails, and one whose
        sha256 the gallery holds, or an earlier file of this call had, is a duplicate."""
        hashed: list[tuple[Path, str, str] | tuple[Path, FaceledgerError]] = []
        for path in files:
            # The absolute path is what the store keeps (ImageRecord.name): crops are read from it later,
            # by a server that may run in another directory than the `enroll` that stored it.
            path = Path(os.path.abspath(path))
            try:
                name = subject_for(path, subject=subject, from_folder=from_folder)
                hashed.append((path, name, file_sha256(path, max_bytes=self.ctx.settings.max_image_bytes)))
            except FaceledgerError as exc:
                hashed.append((path, exc))
        seen = self._held(gallery, [entry[2] for entry in hashed if len(entry) == 3])
        items: list[WorkItem] = []
        for entry in hashed:
            if len(entry) == 2:
                report.outcomes.append(FileOutcome(path=str(entry[0]), status="failed", error=str(entry[1])))
                continue
            path, name, digest = entry
            if digest in seen:
                report.outcomes.append(FileOutcome(path=str(path), status="duplicate", subject=name))
                continue
            seen.add(digest)
            items.append(WorkItem(path=str(path), subject=name, sha256=digest))
        return items

    def _store_batch(self, gallery: str, batch: list[Analysis], provenance: dict, report: EnrollReport) -> None:
        """One transaction per batch: images, faces, generation bump and a ledger entry, or nothing."""
        ctx = self.ctx
        now = utcnow()
        added: list[tuple[int, np.ndarray]] = []
        ledgered = []
        with ctx.writing() as session:
            gallery_row = ctx.gallery(session, gallery)
            retain_until = provenance["retain_until"] or (
                now + timedelta(days=gallery_row.retain_days) if gallery_row.retain_days else None)
            subjects: dict[str, Subject] = {}
            # Checked again under the write lock: a concurrent enrolment may have stored the same image.
            present = set(session.execute(select(ImageRecord.sha256).where(
                ImageRecord.gallery_id == gallery_row.id,
                ImageRecord.sha256.in_([a.item.sha256 for a in batch]))).scalars())
            for analysis in batch:
                if analysis.item.sha256 in present:
                    report.outcomes.append(FileOutcome(path=analysis.item.path, status="duplicate",
                                                       subject=analysis.item.subject))
                    continue
                present.add(analysis.item.sha256)
                if analysis.error:
                    report.outcomes.append(FileOutcome(path=analysis.item.path, status="failed",
                                                       subject=analysis.item.subject, error=analysis.error))
                    continue
                faces = self._store_image(session, gallery_row, analysis, provenance, retain_until, now, subjects)
                added.extend(faces)
                report.outcomes.append(FileOutcome(path=analysis.item.path, status="enrolled",
                                                   subject=analysis.item.subject, faces=len(faces)))
                ledgered.append({"sha256": analysis.item.sha256, "name": analysis.item.path,
                                 "subject": analysis.item.subject, "faces": [fid for fid, _ in faces]})
            if not ledgered:
                return
            gallery_row.generation += 1
            entry = ctx.ledger.append(session, actor=provenance["by"], action="enroll", payload={
                "gallery": gallery, "gallery_id": gallery_row.id, "model_id": ctx.model_id,
                "source": provenance["source"], "legal_basis": provenance["legal_basis"],
                "method": provenance["method"], "retain_until": iso(retain_until), "images": ledgered})
            session.commit()
            generation = gallery_row.generation
            gallery_id = gallery_row.id
        ctx.ledger.note_committed(entry)
        report.ledger_entries.append(entry.entry_id)
        self.indexes.add(gallery_id, generation, added)

    def _store_image(self, session: Session, gallery: Gallery, analysis: Analysis, provenance: dict,
                     retain_until: datetime | None, now: datetime, subjects: dict[str, Subject]
                     ) -> list[tuple[int, np.ndarray]]:
        image = None
        stored = []
        for position, face in enumerate(analysis.faces):
            name = analysis.item.subject if position == 0 else f"{analysis.item.subject}-face{position + 1}"
            subject = subjects.get(name) or _subject(session, gallery, name, now)
            subjects[name] = subject
            if image is None:
                image = ImageRecord(
                    gallery_id=gallery.id, subject_id=subject.id, sha256=analysis.item.sha256,
                    name=analysis.item.path, width=analysis.width, height=analysis.height,
                    source=provenance["source"], legal_basis=provenance["legal_basis"],
                    enrolled_by=provenance["by"], enrolled_at=now, retain_until=retain_until)
                session.add(image)
                session.flush()
            record = FaceRecord(
                image_id=image.id, subject_id=subject.id, gallery_id=gallery.id, box=list(face.box),
                landmarks=[list(p) for p in face.landmarks], detector_score=face.detector_score,
                quality=face.quality, embedding=face.embedding.tobytes(), model_id=self.ctx.model_id,
                template_id=self.ctx.pipeline.embedder.template_id)
            session.add(record)
            session.flush()
            if face.crop:
                session.add(FaceCrop(face_id=record.id, jpeg=face.crop))
            stored.append((record.id, face.embedding))
        return stored


UPLOAD_NAME_LIMIT = 255


def upload_name(filename: str | None) -> str:
    """The recorded name of an uploaded image: ``upload:`` and the name the client gave (a browser's
    relative path, e.g. ``person/photo.jpg``), NFKC, control and invisible characters replaced by ``_``,
    ``\\`` as ``/``, no leading ``/`` and no ``..`` parts, at most the last 255 characters. It names the
    upload in the store, the ledger and results; it is never opened as a path."""
    text = unicodedata.normalize("NFKC", str(filename or "")).replace("\\", "/")
    text = "".join("_" if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text)
    parts = [part.strip() for part in text.split("/") if part.strip() not in ("", ".", "..")]
    name = "/".join(parts)[-UPLOAD_NAME_LIMIT:].lstrip("/")
    return f"upload:{name or 'image'}"


def _subject(session: Session, gallery: Gallery, name: str, now: datetime) -> Subject:
    """The gallery's subject of that name, made when new."""
    subject = session.execute(select(Subject).where(
        Subject.gallery_id == gallery.id, Subject.name == name)).scalar_one_or_none()
    if subject is None:
        subject = Subject(gallery_id=gallery.id, name=name, created_at=now)
        session.add(subject)
        session.flush()
    return subject
