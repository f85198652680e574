"""The facade: the only place that wires the pipeline to storage, calibration, policy and the ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .calibration import Calibration, fpir_at, impostor_histogram, packaged_calibration
from .config import Settings
from .enrollment import (
    Analysis, PrecomputedFace, WorkItem, analyse_all, analyse_upload, expand_paths, face_crop_jpeg, file_sha256,
    identity_sample, subject_for,
)
from .accounts import add_user, authenticate, find_user, local_operator
from .errors import (
    AlreadyExists, Conflict, FaceledgerError, ImageError, IndexMismatch, MissingField, NotFound, PermissionDenied,
    PolicyViolation,
)
from .faces import Face
from .imaging import LoadedImage, load_image
from .index.faiss_index import FaissIndex, IndexFiles, IndexMeta, bulk
from .ledger import Ledger, LedgerCheck, entry_as_dict
from .pipeline import FacePipeline
from .policy import (
    Principal, candidate_status, check_decision, check_fpir, check_investigative, check_positive_days, check_purpose, check_role,
)
from .reporting import summarize, write_report
from .results import CANDIDATE_LABEL, LEAD_LABEL, Candidate, EnrollReport, FileOutcome, SearchResult, SubjectHit, VerifyResult
from .retention import Removal, delete_images, images_of_subjects, purge_expired
from .store import (
    FaceCrop, FaceRecord, Gallery, ImageRecord, LedgerEntry, Maintenance, Probe, Review, Subject, User, open_database,
)

Progress = Callable[[int, int], None]
ImageSource = Path | str | bytes


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def require_text(value: str | None, what: str, flag: str) -> str:
    if value is None or not str(value).strip():
        raise MissingField(f"{what} is required ({flag}); every search and verification must state it")
    return str(value).strip()


class Engine:
    """Open once per process and share it between threads (the HTTP server does).

    Thread safety: the models run one call at a time (FacePipeline's lock); every write transaction and
    every use or change of the in-memory index cache holds `_lock` (shared with the ledger), so a
    ledger sequence number is read and written under one lock and a FAISS index is never searched while
    another thread adds to it. Reads of the store need no lock (SQLite WAL, or PostgreSQL).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db, self.sessions = open_database(settings.database_url)
        self.ledger = Ledger(self.sessions, settings.home / "ledger.head")
        self._lock = self.ledger.lock  # one writer at a time in this process; see the class docstring
        self.pipeline = FacePipeline.from_settings(settings)
        self.index_files = IndexFiles(settings.index_dir, settings.index, dim=self.pipeline.embedder.dim)
        self._indexes: dict[int, tuple[int, FaissIndex]] = {}
        self._calibration: Calibration | None = None
        self._operator: Principal | None = None
        self._purge_if_overdue()

    # -- shared pieces ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            local = self.calibration_path
            self._calibration = Calibration.load(local) if local.is_file() else packaged_calibration(self.model_id)
        return self._calibration

    @property
    def operator(self) -> Principal:
        """The local operator: whoever runs the CLI on this data directory (an admin, made on first use)."""
        if self._operator is None:
            with self._writing() as session:
                self._operator = local_operator(session, self.settings.operator)
        return self._operator

    def authorize(self, by: Principal | None, action: str, **details) -> Principal:
        """The acting user, if their role allows the action; a refusal is ledgered, then raised."""
        principal = by or self.operator
        try:
            check_role(principal, action)
        except PermissionDenied as exc:
            self.record_denial(principal, action, str(exc), details)
            raise
        return principal

    def record_denial(self, principal: Principal, action: str, reason: str, details: dict) -> None:
        self.ledger.record(actor=principal.name, action="denied", payload={
            "attempted": action, "role": principal.role, "reason": reason, "request": details})

    @contextmanager
    def ledger_refusals(self, principal: Principal, action: str, details: dict) -> Iterator[None]:
        """A request refused by policy (missing purpose, purpose not allowed, ...) is ledgered as denied."""
        try:
            yield
        except PolicyViolation as exc:
            self.record_denial(principal, action, str(exc), details)
            raise

    def close(self) -> None:
        self.db.dispose()

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A session for a write transaction, holding the engine's write lock until it ends."""
        with self._lock, self.sessions() as session:
            yield session

    def _gallery(self, session: Session, name: str) -> Gallery:
        gallery = session.execute(select(Gallery).where(Gallery.name == name)).scalar_one_or_none()
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

    def _load(self, source: ImageSource, name: str | None = None) -> LoadedImage:
        return load_image(source, name=name, max_bytes=self.settings.max_image_bytes,
                          max_pixels=self.settings.max_image_pixels)

    def _probe_face(self, image: LoadedImage, *, on_multiple: str = "refuse") -> Face:
        return self.pipeline.single_face(image.rgb, name=image.name, on_multiple=on_multiple)

    # -- galleries -------------------------------------------------------------------------------

    def create_gallery(self, name: str, *, purposes: Sequence[str] = (), allow_investigative: bool = False,
                       target_fpir: float | None = None, retain_days: int | None = None,
                       probe_retain_days: int | None = None, keep_probe_images: bool = False,
                       by: Principal | None = None) -> dict:
        """A new gallery and its policy; the policy is ledgered."""
        principal = self.authorize(by, "gallery.create", gallery=name)
        name = require_text(name, "a gallery name", "NAME")
        policy = _policy_values(purposes=purposes, allow_investigative=allow_investigative,
                                target_fpir=target_fpir or self.settings.target_fpir, retain_days=retain_days,
                                probe_retain_days=self.settings.probe_retain_days if probe_retain_days is None
                                else probe_retain_days, keep_probe_images=keep_probe_images)
        with self._writing() as session:
            if session.execute(select(Gallery.id).where(Gallery.name == name)).first():
                raise AlreadyExists(f"gallery {name!r} already exists")
            gallery = Gallery(name=name, created_at=utcnow(), created_by=principal.name, model_id=self.model_id,
                              generation=0, **policy)
            session.add(gallery)
            session.flush()
            entry = self.ledger.append(session, actor=principal.name, action="gallery.create", payload={
                "gallery": name, "gallery_id": gallery.id, "model_id": self.model_id, "policy": policy})
            session.commit()
        self.ledger.note_committed(entry)
        return self.gallery_info(name, by=principal)

    def update_gallery(self, name: str, *, by: Principal | None = None, **changes) -> dict:
        """Change a gallery's policy (admin); the before and after are ledgered."""
        principal = self.authorize(by, "gallery.update", gallery=name)
        changes = {key: value for key, value in changes.items() if value is not None}
        if not changes:
            raise FaceledgerError("nothing to change: give at least one policy option")
        with self._writing() as session:
            gallery = self._gallery(session, name)
            before = _policy_of(gallery)
            after = _policy_values(**{**before, **changes})
            for key, value in after.items():
                setattr(gallery, key, value)
            entry = self.ledger.append(session, actor=principal.name, action="gallery.update", payload={
                "gallery": name, "gallery_id": gallery.id, "before": before, "after": after})
            session.commit()
        self.ledger.note_committed(entry)
        return self.gallery_info(name, by=principal)

    def gallery_info(self, name: str, *, by: Principal | None = None) -> dict:
        self.authorize(by, "gallery.read", gallery=name)
        with self.sessions() as session:
            gallery = self._gallery(session, name)
            return self._describe(session, gallery)

    def list_galleries(self, *, by: Principal | None = None) -> list[dict]:
        self.authorize(by, "gallery.read")
        with self.sessions() as session:
            galleries = session.execute(select(Gallery).order_by(Gallery.name)).scalars().all()
            return [self._describe(session, g) for g in galleries]

    def gallery_images(self, name: str, *, limit: int = 100, offset: int = 0,
                       by: Principal | None = None) -> dict:
        """A page of a gallery's enrolled images: subject, provenance, expiry and face ids."""
        self.authorize(by, "gallery.read", gallery=name)
        with self.sessions() as session:
            gallery = self._gallery(session, name)
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
                   "enrolled_at": _iso(image.enrolled_at), "retain_until": _iso(image.retain_until),
                   "face_ids": faces.get(image.id, [])} for image, subject in rows]
        return {"gallery": name, "total": total, "limit": limit, "offset": offset, "images": images}

    def face_crop(self, face_id: int, *, by: Principal | None = None) -> bytes:
        """A JPEG of one enrolled face (box plus a margin), for the roles that compare faces.

        From the crop stored at enrolment (uploads), else read from the enrolled image's stored path; a
        file that is gone or changed since enrolment gives NotFound rather than someone else's face."""
        self.authorize(by, "face.view", face=face_id)
        with self.sessions() as session:
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
            loaded = self._load(Path(path))
        except ImageError:
            raise NotFound(f"the image of face {face_id} is no longer readable at {path}") from None
        if loaded.sha256 != digest:
            raise NotFound(f"the file at {path} changed since face {face_id} was enrolled")
        return face_crop_jpeg(loaded.rgb, box)

    def _describe(self, session: Session, gallery: Gallery) -> dict:
        def count(model) -> int:
            return session.execute(select(func.count()).select_from(model).where(model.gallery_id == gallery.id)).scalar_one()

        return {
            "name": gallery.name, "id": gallery.id, "subjects": count(Subject), "images": count(ImageRecord),
            "faces": count(FaceRecord), "model_id": gallery.model_id, "created_at": _iso(gallery.created_at),
            "created_by": gallery.created_by, **_policy_of(gallery),
        }

    # -- enrolment -------------------------------------------------------------------------------

    def enroll(self, paths: Sequence[Path | str], *, gallery: str, subject: str | None = None,
               subject_from_folder: bool = False, source: str, legal_basis: str,
               retain_until: datetime | None = None, on_multiple: str = "refuse", workers: int = 1,
               progress: Progress | None = None, by: Principal | None = None) -> EnrollReport:
        """Enrol image files. Already-enrolled images (same sha256) are skipped, so a rerun resumes."""
        provenance, known = self._begin_enrolment(gallery, source, legal_basis, retain_until, "images", by)
        if bool(subject) == bool(subject_from_folder):
            raise FaceledgerError("give exactly one of --subject NAME or --subject-from-folder")
        report = EnrollReport(gallery=gallery)
        items = self._work_items(expand_paths(paths), subject, subject_from_folder, known, report)
        done, total = len(report.outcomes), len(report.outcomes) + len(items)
        if progress:
            progress(done, total)
        batch: list[Analysis] = []  # models load lazily, in this process only when workers == 1
        for analysis in analyse_all(items, pipeline=self.pipeline, settings=self.settings,
                                    on_multiple=on_multiple, workers=workers):
            batch.append(analysis)
            if len(batch) >= self.settings.enroll_batch:
                self._store_batch(gallery, batch, provenance, report)
                done += len(batch)
                batch = []
                if progress:
                    progress(done, total)
        if batch:
            self._store_batch(gallery, batch, provenance, report)
            if progress:
                progress(total, total)
        self._save_index(gallery)
        return report

    def enroll_embeddings(self, entries: Sequence[PrecomputedFace], *, gallery: str, source: str,
                          legal_basis: str, retain_until: datetime | None = None,
                          by: Principal | None = None) -> EnrollReport:
        """Enrol embeddings computed elsewhere by this engine's model, with the same provenance rules."""
        provenance, known = self._begin_enrolment(gallery, source, legal_basis, retain_until,
                                                  "precomputed embeddings", by)
        dim = self.pipeline.embedder.dim
        for entry in entries:
            if entry.model_id != self.model_id:
                raise IndexMismatch(f"{entry.name}: embedding from model {entry.model_id}, engine uses {self.model_id}")
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

    def enroll_uploads(self, uploads: Sequence[tuple[str, bytes]], *, gallery: str, subject: str | None,
                       source: str | None, legal_basis: str | None, retain_until: datetime | None = None,
                       on_multiple: str = "refuse", by: Principal | None = None) -> EnrollReport:
        """Enrol uploaded images, given as (file name, bytes): the HTTP API's enrolment.

        The same provenance rules, sha256 de-duplication, batches, ledger entries and store as `enroll`.
        The bytes are not kept; each enrolled face keeps a small JPEG crop instead (there is no file to
        show a reviewer later), deleted with the face. The image is recorded as ``upload:NAME``.
        """
        provenance, seen = self._begin_enrolment(gallery, source, legal_basis, retain_until, "upload", by)
        subject = require_text(subject, "the subject's name", "--subject")
        report = EnrollReport(gallery=gallery)
        analyses = []
        for filename, data in uploads:
            item = WorkItem(path=f"upload:{filename or 'image'}", subject=subject,
                            sha256=hashlib.sha256(data).hexdigest())
            if item.sha256 in seen:
                report.outcomes.append(FileOutcome(path=item.path, status="duplicate", subject=subject))
                continue
            seen.add(item.sha256)
            analyses.append(analyse_upload(self.pipeline, item, data, settings=self.settings,
                                           on_multiple=on_multiple))
        if analyses:
            self._store_in_batches(gallery, analyses, provenance, report)
        return report

    def _begin_enrolment(self, gallery: str, source: str | None, legal_basis: str | None,
                         retain_until: datetime | None, method: str, by: Principal | None) -> tuple[dict, set[str]]:
        """Check the role and the provenance; return the provenance record and the sha256s already held."""
        principal = self.authorize(by, "enroll", gallery=gallery)
        provenance = {
            "source": require_text(source, "the image source (provenance)", "--source"),
            "legal_basis": require_text(legal_basis, "the legal basis for holding these images", "--legal-basis"),
            "retain_until": retain_until, "method": method, "by": principal.name,
        }
        with self.sessions() as session:
            gallery_id = self._gallery(session, gallery).id
            known = set(session.execute(select(ImageRecord.sha256).where(
                ImageRecord.gallery_id == gallery_id)).scalars())
        return provenance, known

    def _store_in_batches(self, gallery: str, analyses: list[Analysis], provenance: dict,
                          report: EnrollReport) -> None:
        for start in range(0, len(analyses), self.settings.enroll_batch):
            self._store_batch(gallery, analyses[start:start + self.settings.enroll_batch], provenance, report)
        self._save_index(gallery)

    def _work_items(self, files: list[Path], subject: str | None, from_folder: bool, known: set[str],
                    report: EnrollReport) -> list[WorkItem]:
        items: list[WorkItem] = []
        seen = set(known)
        for path in files:
            try:
                name = subject_for(path, subject=subject, from_folder=from_folder)
                digest = file_sha256(path, max_bytes=self.settings.max_image_bytes)
            except FaceledgerError as exc:
                report.outcomes.append(FileOutcome(path=str(path), status="failed", error=str(exc)))
                continue
            if digest in seen:
                report.outcomes.append(FileOutcome(path=str(path), status="duplicate", subject=name))
                continue
            seen.add(digest)
            items.append(WorkItem(path=str(path), subject=name, sha256=digest))
        return items

    def _store_batch(self, gallery: str, batch: list[Analysis], provenance: dict, report: EnrollReport) -> None:
        """One transaction per batch: images, faces, generation bump and a ledger entry, or nothing."""
        now = utcnow()
        added: list[tuple[int, np.ndarray]] = []
        ledgered = []
        with self._writing() as session:
            gallery_row = self._gallery(session, gallery)
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
            entry = self.ledger.append(session, actor=provenance["by"], action="enroll", payload={
                "gallery": gallery, "gallery_id": gallery_row.id, "model_id": self.model_id,
                "source": provenance["source"], "legal_basis": provenance["legal_basis"],
                "method": provenance["method"], "retain_until": _iso(retain_until), "images": ledgered})
            session.commit()
            generation = gallery_row.generation
            gallery_id = gallery_row.id
        self.ledger.note_committed(entry)
        report.ledger_entries.append(entry.entry_id)
        self._index_add(gallery_id, generation, added)

    def _store_image(self, session: Session, gallery: Gallery, analysis: Analysis, provenance: dict,
                     retain_until: datetime | None, now: datetime, subjects: dict[str, Subject]
                     ) -> list[tuple[int, np.ndarray]]:
        image = None
        stored = []
        for position, face in enumerate(analysis.faces):
            name = analysis.item.subject if position == 0 else f"{analysis.item.subject}-face{position + 1}"
            subject = subjects.get(name) or self._subject(session, gallery, name, now)
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
                quality=face.quality, embedding=face.embedding.tobytes(), model_id=self.model_id,
                template_id=self.pipeline.embedder.template_id)
            session.add(record)
            session.flush()
            if face.crop:
                session.add(FaceCrop(face_id=record.id, jpeg=face.crop))
            stored.append((record.id, face.embedding))
        return stored

    def _subject(self, session: Session, gallery: Gallery, name: str, now: datetime) -> Subject:
        subject = session.execute(select(Subject).where(
            Subject.gallery_id == gallery.id, Subject.name == name)).scalar_one_or_none()
        if subject is None:
            subject = Subject(gallery_id=gallery.id, name=name, created_at=now)
            session.add(subject)
            session.flush()
        return subject

    # -- the index cache ---------------------------------------------------------------------------

    def _expected_meta(self, gallery: Gallery, count: int) -> IndexMeta:
        return IndexMeta(gallery_id=gallery.id, generation=gallery.generation, model_id=gallery.model_id,
                         dim=self.pipeline.embedder.dim, description=self.index_files.description_for(gallery.id),
                         count=count)

    def _index(self, session: Session, gallery: Gallery) -> FaissIndex:
        """The gallery's index at the store's current generation: memory, else disk, else rebuilt."""
        with self._lock:
            return self._index_locked(session, gallery)

    def _index_locked(self, session: Session, gallery: Gallery) -> FaissIndex:
        cached = self._indexes.get(gallery.id)
        if cached and cached[0] == gallery.generation:
            return cached[1]
        count = session.execute(select(func.count()).select_from(FaceRecord).where(
            FaceRecord.gallery_id == gallery.id)).scalar_one()
        expected = self._expected_meta(gallery, count)
        index = self.index_files.load(gallery.id, expected=expected)
        if index is None:
            index = self._build_index(session, gallery)
            self.index_files.save(index, self._expected_meta(gallery, len(index)))
        self._indexes[gallery.id] = (gallery.generation, index)
        return index

    def _build_index(self, session: Session, gallery: Gallery, description: str | None = None,
                     progress: Progress | None = None) -> FaissIndex:
        """Stream the gallery's embeddings from the store into a new index (trained once, at the end)."""
        count = session.execute(select(func.count()).select_from(FaceRecord).where(
            FaceRecord.gallery_id == gallery.id)).scalar_one()
        index = self.index_files.new_index(gallery.id, self.pipeline.embedder.dim, count, description)
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

    def _index_add(self, gallery_id: int, generation: int, faces: list[tuple[int, np.ndarray]]) -> None:
        with self._lock:
            self._index_add_locked(gallery_id, generation, faces)

    def _index_add_locked(self, gallery_id: int, generation: int, faces: list[tuple[int, np.ndarray]]) -> None:
        cached = self._indexes.get(gallery_id)
        if cached is None or cached[0] != generation - 1 or not faces:
            self._indexes.pop(gallery_id, None)  # rebuilt from the store on next use
            return
        index = cached[1]
        index.add(np.array([fid for fid, _ in faces], dtype=np.int64), np.stack([v for _, v in faces]))
        self._indexes[gallery_id] = (generation, index)

    def _save_index(self, gallery: str) -> None:
        with self._writing() as session:
            gallery_row = self._gallery(session, gallery)
            index = self._index(session, gallery_row)
            self.index_files.save(index, self._expected_meta(gallery_row, len(index)))

    def reindex(self, gallery: str | None = None, *, index: str | None = None,
                progress: Callable[[str, int, int], None] | None = None,
                by: Principal | None = None) -> list[dict]:
        """Rebuild index files from the store (all galleries, or one), optionally with another index string."""
        self.authorize(by, "reindex", gallery=gallery, index=index)
        with self._writing() as session:
            names = [gallery] if gallery else session.execute(select(Gallery.name)).scalars().all()
            rebuilt = []
            for name in names:
                gallery_row = self._gallery(session, name)
                report = (lambda done, total, name=name: progress(name, done, total)) if progress else None
                built = self._build_index(session, gallery_row, index, report)
                self.index_files.save(built, self._expected_meta(gallery_row, len(built)).with_description(
                    built.description))
                self._indexes[gallery_row.id] = (gallery_row.generation, built)
                rebuilt.append({"gallery": name, "faces": len(built), "index": built.description,
                                "kind": getattr(built, "kind", built.description)})
        return rebuilt

    # -- search and verify -----------------------------------------------------------------------

    def search(self, image: ImageSource, *, gallery: str, purpose: str | None, case: str | None,
               top_k: int = 10, investigative: bool = False, authorisation: str | None = None,
               image_name: str | None = None, on_multiple: str = "refuse",
               by: Principal | None = None) -> SearchResult:
        """1:N search. Open-set: only candidates above the threshold that holds the gallery's target FPIR at
        its current size. Investigative (where the gallery allows it): the top-k as leads, not identifications."""
        principal = self.authorize(by, "search", gallery=gallery)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "investigative": investigative}
        with self.ledger_refusals(principal, "search", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            with self.sessions() as session:
                policy = _policy_of(self._gallery(session, gallery))
            check_purpose(purpose, policy["purposes"], gallery)
            check_investigative(investigative, policy["allow_investigative"], gallery)
        if top_k < 1:
            raise FaceledgerError("--top-k must be at least 1")
        loaded = self._load(image, image_name)
        request.update(probe_sha256=loaded.sha256, top_k=top_k, authorisation=authorisation)
        with self.ledger_failures(principal, "search", request):
            probe = self._probe_face(loaded, on_multiple=on_multiple)
        mode = "investigative" if investigative else "open-set"
        now = utcnow()
        with self._writing() as session:
            gallery_row = self._gallery(session, gallery)
            index = self._index(session, gallery_row)
            size = len(index)
            threshold = self.calibration.threshold_for_fpir(gallery_row.target_fpir, size)
            candidates = self._candidates(session, index, probe.embedding, None if investigative else threshold.score,
                                          top_k, size, threshold.score, investigative)
            probe_expires = now + timedelta(days=gallery_row.probe_retain_days)
            result_fields = {
                "decision": "match" if any(c.above_threshold for c in candidates) else "no_match",
                "mode": mode, "threshold": threshold.score, "target_fpir": gallery_row.target_fpir,
                "threshold_supported": threshold.supported, "gallery": gallery, "gallery_size": size,
                "probe_sha256": loaded.sha256, "probe_quality": probe.quality.as_dict(), "model_id": self.model_id,
                "calibration_id": self.calibration.calibration_id,
            }
            entry = self.ledger.append(session, actor=principal.name, action="search", payload={
                **result_fields, "purpose": purpose, "case": case, "authorisation": authorisation,
                "gallery_id": gallery_row.id, "top_k": top_k, "candidates": [c.as_json() for c in candidates],
                "probe_expires": _iso(probe_expires), "probe_image_kept": gallery_row.keep_probe_images})
            session.add(Probe(
                entry_id=entry.entry_id, gallery_id=gallery_row.id, searched_by=principal.name, sha256=loaded.sha256,
                embedding=probe.embedding.tobytes(), quality=probe.quality.as_dict(), mode=mode,
                candidates=[c.as_json() for c in candidates], created_at=now, expires_at=probe_expires,
                image=loaded.data if gallery_row.keep_probe_images else None))
            session.commit()
        self.ledger.note_committed(entry)
        return SearchResult(candidates=tuple(candidates), ledger_entry=entry.entry_id,
                            probe_box=tuple(float(v) for v in probe.box), **result_fields)

    def rank(self, gallery: str, vectors: np.ndarray, *, top_k: int = 10) -> list[list[SubjectHit]]:
        """Best face per subject for each query vector, top_k subjects, no threshold and no ledger entry.

        For evaluation and tools that apply their own decision rule; people are searched with `search`.
        """
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            return self._rank_subjects(session, self._index(session, gallery_row), vectors, top_k)

    def _rank_subjects(self, session: Session, index: FaissIndex, vectors: np.ndarray, top_k: int
                       ) -> list[list[SubjectHit]]:
        """Shortlist faces from the index, keep each subject's best face, best first. The shortlist widens
        until every query has top_k subjects or covers the gallery, so a subject with many faces cannot
        crowd the others out."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(index) == 0:
            return [[] for _ in vectors]
        shortlist = min(len(index), top_k * 8 + 32)
        while True:
            with self._lock:  # not while another thread adds to or removes from this index
                scores, ids = index.search(vectors, shortlist)
            ranked = self._best_per_subject(session, scores, ids, top_k)
            if shortlist >= len(index) or all(len(row) >= top_k for row in ranked):
                return ranked
            shortlist = min(len(index), shortlist * 4)

    def _best_per_subject(self, session: Session, scores: np.ndarray, ids: np.ndarray, top_k: int
                          ) -> list[list[SubjectHit]]:
        subject_of = self._face_subjects(session, {int(i) for i in ids.ravel() if i >= 0})
        ranked = []
        for row_scores, row_ids in zip(scores, ids):
            best: dict[int, SubjectHit] = {}
            for score, fid in zip(row_scores, row_ids):
                info = subject_of.get(int(fid))
                if info is not None and info[0] not in best:
                    best[info[0]] = SubjectHit(subject_id=info[0], subject=info[1], score=float(score),
                                               face_id=int(fid), image=info[2])
            ranked.append(sorted(best.values(), key=lambda h: h.score, reverse=True)[:top_k])
        return ranked

    @staticmethod
    def _face_subjects(session: Session, face_ids: set[int]) -> dict[int, tuple[int, str, str]]:
        subject_of: dict[int, tuple[int, str, str]] = {}
        ordered = sorted(face_ids)
        for start in range(0, len(ordered), 900):  # stay under SQLite's bound-parameter limit
            rows = session.execute(
                select(FaceRecord.id, Subject.id, Subject.name, ImageRecord.name)
                .join(Subject, FaceRecord.subject_id == Subject.id)
                .join(ImageRecord, FaceRecord.image_id == ImageRecord.id)
                .where(FaceRecord.id.in_(ordered[start:start + 900]))).all()
            subject_of.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return subject_of

    def _candidates(self, session: Session, index: FaissIndex, vector: np.ndarray, minimum: float | None,
                    top_k: int, gallery_size: int, threshold: float, investigative: bool) -> list[Candidate]:
        """Best face per subject (at or above `minimum` when given), ranked, each with its error rates."""
        hits = self._rank_subjects(session, index, vector, top_k)[0]
        if minimum is not None:
            hits = [h for h in hits if h.score >= minimum]
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            estimate = self.calibration.fmr(hit.score)
            candidates.append(Candidate(
                rank=rank, subject=hit.subject, subject_id=hit.subject_id, score=hit.score,
                false_match_rate=estimate.fmr, false_match_rate_upper=estimate.upper,
                gallery_false_positive_chance=fpir_at(estimate.fmr, gallery_size),
                image=hit.image, face_id=hit.face_id, above_threshold=hit.score >= threshold,
                label=LEAD_LABEL if investigative else CANDIDATE_LABEL))
        return candidates

    def verify(self, image_a: ImageSource, image_b: ImageSource, *, purpose: str | None, case: str | None,
               authorisation: str | None = None, names: tuple[str | None, str | None] = (None, None),
               by: Principal | None = None) -> VerifyResult:
        """1:1: are these two faces the same person, at the threshold for the configured FMR?"""
        principal = self.authorize(by, "verify")
        request = {"purpose": purpose, "case": case}
        with self.ledger_refusals(principal, "verify", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
        loaded = (self._load(image_a, names[0]), self._load(image_b, names[1]))
        request.update(probe_sha256=[im.sha256 for im in loaded], authorisation=authorisation)
        with self.ledger_failures(principal, "verify", request):
            faces = [self._probe_face(im) for im in loaded]
        score = float(np.dot(faces[0].embedding, faces[1].embedding))
        threshold = self.calibration.threshold_for_fmr(self.settings.verify_target_fmr)
        estimate = self.calibration.fmr(score)
        fields = {
            "decision": "same" if score >= threshold.score else "different", "score": score,
            "false_match_rate": estimate.fmr, "false_match_rate_upper": estimate.upper,
            "threshold": threshold.score, "target_fmr": self.settings.verify_target_fmr,
            "probe_sha256": (loaded[0].sha256, loaded[1].sha256), "model_id": self.model_id,
            "calibration_id": self.calibration.calibration_id,
        }
        entry = self.ledger.record(actor=principal.name, action="verify", payload={
            **fields, "probe_sha256": list(fields["probe_sha256"]), "purpose": purpose, "case": case,
            "authorisation": authorisation, "probe_quality": [f.quality.as_dict() for f in faces]})
        return VerifyResult(ledger_entry=entry.entry_id, **fields)

    @contextmanager
    def ledger_failures(self, principal: Principal, action: str, request: dict) -> Iterator[None]:
        """A search or verify that fails on its probe (no face, several faces) is still ledgered."""
        try:
            yield
        except FaceledgerError as exc:
            self.ledger.record(actor=principal.name, action=action, payload={
                **request, "decision": "failed", "error": str(exc), "model_id": self.model_id})
            raise

    # -- review ----------------------------------------------------------------------------------

    def review(self, entry_id: str, *, candidate: int, decision: str, note: str | None = None,
               by: Principal | None = None) -> dict:
        """A reviewer's decision on one candidate of a search; never the searcher's own."""
        principal = self.authorize(by, "review", search=entry_id, candidate=candidate)
        decision = check_decision(decision)
        search = self._search_entry(entry_id)
        candidates = search["payload"].get("candidates", [])
        if not 1 <= candidate <= len(candidates):
            raise NotFound(f"search {entry_id} has no candidate {candidate} (it has {len(candidates)})")
        if search["actor"] == principal.name:
            self.record_denial(principal, "review", "the searcher may not review their own search",
                               {"search": entry_id, "candidate": candidate})
            raise Conflict("you made this search; a second person must review it")
        chosen = candidates[candidate - 1]
        with self._writing() as session:
            if session.execute(select(Review.id).where(
                    Review.search_entry_id == entry_id, Review.candidate_rank == candidate,
                    Review.reviewer == principal.name)).first():
                raise AlreadyExists(f"you already reviewed candidate {candidate} of search {entry_id}")
            entry = self.ledger.append(session, actor=principal.name, action="review", payload={
                "search": entry_id, "candidate": candidate, "subject": chosen["subject"],
                "subject_id": chosen["subject_id"], "score": chosen["score"], "decision": decision, "note": note,
                "mode": search["payload"].get("mode"), "searched_by": search["actor"]})
            session.add(Review(search_entry_id=entry_id, candidate_rank=candidate, subject=chosen["subject"],
                               decision=decision, reviewer=principal.name, note=note, created_at=utcnow(),
                               ledger_entry=entry.entry_id))
            session.commit()
        self.ledger.note_committed(entry)
        return {"ledger_entry": entry.entry_id, "search": entry_id, "candidate": candidate,
                "subject": chosen["subject"], "decision": decision, "status": self.review_status(entry_id, by=by)}

    def review_status(self, entry_id: str, *, by: Principal | None = None) -> list[dict]:
        """Each candidate of a search with its reviewers' decisions and the resulting status."""
        self.authorize(by, "search.read", search=entry_id)
        search = self._search_entry(entry_id)
        with self.sessions() as session:
            reviews = session.execute(select(Review).where(Review.search_entry_id == entry_id)
                                      .order_by(Review.id)).scalars().all()
        status = []
        for candidate in search["payload"].get("candidates", []):
            decisions = [{"reviewer": r.reviewer, "decision": r.decision, "note": r.note, "at": _iso(r.created_at)}
                         for r in reviews if r.candidate_rank == candidate["rank"]]
            status.append({**candidate, "reviews": decisions, "status": candidate_status(decisions)})
        return status

    def search_record(self, entry_id: str, *, by: Principal | None = None) -> dict:
        """A past search as ledgered (who, when, why, gallery, threshold, outcome) with each candidate's
        reviews and status. The probe image is not part of it: it is kept only where the policy says so."""
        candidates = self.review_status(entry_id, by=by)
        search = self._search_entry(entry_id)
        payload = search["payload"]
        fields = ("gallery", "purpose", "case", "authorisation", "mode", "decision", "threshold", "target_fpir",
                  "threshold_supported", "gallery_size", "probe_sha256", "probe_quality", "model_id",
                  "calibration_id", "probe_expires")
        return {"ledger_entry": entry_id, "searched_by": search["actor"], "searched_at": search["created_at"],
                **{key: payload.get(key) for key in fields}, "candidates": candidates}

    def recent_searches(self, *, limit: int = 50, by: Principal | None = None) -> list[dict]:
        """The newest searches that returned candidates, newest first, with how many still await review."""
        self.authorize(by, "search.read")
        entries = [e for e in self.ledger.entries(action="search") if e["payload"].get("candidates")]
        entries = entries[-limit:][::-1] if limit else entries[::-1]
        with self.sessions() as session:
            reviewed = {(r[0], r[1]) for r in session.execute(select(Review.search_entry_id, Review.candidate_rank)
                        .where(Review.search_entry_id.in_([e["entry_id"] for e in entries])))}
        return [{"ledger_entry": e["entry_id"], "searched_by": e["actor"], "searched_at": e["created_at"],
                 "gallery": e["payload"].get("gallery"), "purpose": e["payload"].get("purpose"),
                 "case": e["payload"].get("case"), "mode": e["payload"].get("mode"),
                 "decision": e["payload"].get("decision"), "candidates": len(e["payload"]["candidates"]),
                 "unreviewed": sum(1 for c in e["payload"]["candidates"]
                                   if (e["entry_id"], c["rank"]) not in reviewed)} for e in entries]

    def _search_entry(self, entry_id: str) -> dict:
        with self.sessions() as session:
            row = session.execute(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).scalar_one_or_none()
        if row is None or row.action != "search":
            raise NotFound(f"no search with ledger entry {entry_id!r}")
        entry = entry_as_dict(row)
        if entry["payload"].get("decision") == "failed":
            raise NotFound(f"search {entry_id} failed on its probe and has no candidates")
        return entry

    # -- users -----------------------------------------------------------------------------------

    def add_user(self, name: str, *, role: str, by: Principal | None = None) -> tuple[dict, str]:
        """Create a user; returns (user, token). The token is shown once; only its hash is stored."""
        principal = self.authorize(by, "user.manage", user=name, role=role)
        name = require_text(name, "a user name", "NAME")
        with self._writing() as session:
            user, token = add_user(session, name=name, role=role, created_by=principal.name)
            entry = self.ledger.append(session, actor=principal.name, action="user.add",
                                       payload={"user": name, "role": role})
            session.commit()
        self.ledger.note_committed(entry)
        return {"user": user.name, "role": user.role}, token

    def set_user_disabled(self, name: str, disabled: bool = True, *, by: Principal | None = None) -> dict:
        principal = self.authorize(by, "user.manage", user=name)
        with self._writing() as session:
            user = find_user(session, name)
            user.disabled = disabled
            entry = self.ledger.append(session, actor=principal.name, action="user.disable" if disabled
                                       else "user.enable", payload={"user": name})
            session.commit()
        self.ledger.note_committed(entry)
        return {"user": name, "disabled": disabled}

    def list_users(self, *, by: Principal | None = None) -> list[dict]:
        self.authorize(by, "user.manage")
        with self.sessions() as session:
            users = session.execute(select(User).order_by(User.name)).scalars().all()
            return [{"user": u.name, "role": u.role, "disabled": u.disabled, "has_token": bool(u.token_sha256),
                     "created_at": _iso(u.created_at), "created_by": u.created_by} for u in users]

    def authenticate(self, token: str | None) -> Principal:
        with self.sessions() as session:
            return authenticate(session, token)

    # -- retention and erasure -------------------------------------------------------------------

    def purge(self, *, by: Principal | None = None, now: datetime | None = None) -> dict:
        """Delete expired images, faces, embeddings and probes; update the index; ledger a summary."""
        principal = self.authorize(by, "purge")
        return self._purge(principal.name, now or utcnow())

    def _purge(self, actor: str, now: datetime) -> dict:
        with self._writing() as session:
            removal = purge_expired(session, now)
            session.merge(Maintenance(key="last_purge_at", value=now.isoformat()))
            entry = self.ledger.append(session, actor=actor, action="purge", payload={
                "at": now.isoformat(), **removal.summary(),
                "galleries": {str(g): len(ids) for g, ids in removal.face_ids_by_gallery.items()}})
            session.commit()
        self.ledger.note_committed(entry)
        self._refresh_indexes(removal)
        return {"ledger_entry": entry.entry_id, **removal.summary()}

    def _purge_if_overdue(self) -> None:
        with self.sessions() as session:
            last = session.get(Maintenance, "last_purge_at")
        now = utcnow()
        if last is not None and now - datetime.fromisoformat(last.value) < timedelta(
                hours=self.settings.purge_interval_hours):
            return
        self._purge("system (scheduled retention)", now)

    def erase(self, *, reason: str | None, face: ImageSource | None = None, subject: str | None = None,
              gallery: str | None = None, image_name: str | None = None, dry_run: bool = False,
              by: Principal | None = None) -> dict:
        """Remove a person: every enrolled subject whose face matches `face` above a strict threshold (or
        the named subject), with all their images, faces, embeddings and matching probes. Returns a receipt.
        With dry_run, only lists what would be removed (the look-up is ledgered all the same)."""
        principal = self.authorize(by, "erase", gallery=gallery)
        with self.ledger_refusals(principal, "erase", {"gallery": gallery, "subject": subject}):
            reason = require_text(reason, "a reason", "--reason")
            if (face is None) == (subject is None):
                raise PolicyViolation("erase needs exactly one of --face IMAGE or --subject NAME")
            if subject is not None and gallery is None:
                raise PolicyViolation("erasing by subject needs --gallery")
        with self.sessions() as session:
            names = [gallery] if gallery else list(session.execute(select(Gallery.name).where(
                Gallery.model_id == self.model_id).order_by(Gallery.name)).scalars())
            galleries = [self._gallery(session, name) for name in names]
        request = {"reason": reason, "galleries": names, "method": "face" if face is not None else "subject",
                   "dry_run": dry_run}
        if face is not None:
            loaded = self._load(face, image_name)
            request["probe_sha256"] = loaded.sha256
            with self.ledger_failures(principal, "erase", request):
                vector = self._probe_face(loaded).embedding
            matches, probe_ids = self._matches_for_erasure(galleries, vector)
        else:
            matches, probe_ids = self._subject_for_erasure(galleries[0], subject), []
        if dry_run and (matches or probe_ids):
            entry = self.ledger.record(actor=principal.name, action="erase", payload={
                **request, "outcome": "preview", "probes": len(probe_ids),
                "subjects": [{k: m[k] for k in ("gallery", "subject_id", "score", "threshold")} for m in matches]})
            return {"receipt": entry.entry_id, "reason": reason, "dry_run": True, "images": 0, "faces": 0,
                    "probes": 0, "probes_matching": len(probe_ids), "subjects": matches}
        return self._erase_matches(principal, request, matches, probe_ids)

    def _matches_for_erasure(self, galleries: list[Gallery], vector: np.ndarray) -> tuple[list[dict], list[int]]:
        """Subjects with any face at or above the strict threshold, per gallery; and matching probes."""
        matches, probe_ids = [], []
        threshold = self.calibration.threshold_for_fmr(self.settings.erase_target_fmr)
        with self._writing() as session:
            for gallery in galleries:
                gallery = session.get(Gallery, gallery.id)
                index = self._index(session, gallery)
                if len(index):
                    scores, ids = index.search(vector[None, :], min(len(index), 4096))
                    hits = {int(i): float(sc) for sc, i in zip(scores[0], ids[0]) if i >= 0 and sc >= threshold.score}
                    owners = self._face_subjects(session, set(hits))
                    best: dict[int, dict] = {}
                    for fid, score in hits.items():
                        sid, name, _ = owners[fid]
                        if sid not in best or score > best[sid]["score"]:
                            best[sid] = {"gallery": gallery.name, "subject_id": sid, "subject": name,
                                         "score": round(score, 6), "threshold": threshold.score}
                    matches.extend(best.values())
                for probe in session.execute(select(Probe).where(Probe.gallery_id == gallery.id)).scalars():
                    if float(np.frombuffer(probe.embedding, np.float32) @ vector) >= threshold.score:
                        probe_ids.append(probe.id)
        return matches, probe_ids

    def _subject_for_erasure(self, gallery: Gallery, subject: str) -> list[dict]:
        with self.sessions() as session:
            query = select(Subject).where(Subject.gallery_id == gallery.id)
            query = query.where(Subject.id == int(subject)) if str(subject).isdigit() else query.where(
                Subject.name == subject)
            row = session.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"gallery {gallery.name!r} has no subject {subject!r}; nothing was removed")
        return [{"gallery": gallery.name, "subject_id": row.id, "subject": row.name, "score": None, "threshold": None}]

    def _erase_matches(self, principal: Principal, request: dict, matches: list[dict], probe_ids: list[int]) -> dict:
        if not matches and not probe_ids:
            self.ledger.record(actor=principal.name, action="erase", payload={**request, "outcome": "no match"})
            raise NotFound("no enrolled face matches this person above the strict erasure threshold; "
                           "nothing was removed")
        removal = Removal()
        with self._writing() as session:
            delete_images(session, images_of_subjects(session, [m["subject_id"] for m in matches]), removal)
            if probe_ids:
                removal.probes = session.execute(delete(Probe).where(Probe.id.in_(probe_ids))).rowcount
            # The ledger keeps ids and counts, not the erased person's name.
            entry = self.ledger.append(session, actor=principal.name, action="erase", payload={
                **request, "outcome": "erased", **removal.summary(),
                "subjects": [{k: m[k] for k in ("gallery", "subject_id", "score", "threshold")} for m in matches]})
            session.commit()
        self.ledger.note_committed(entry)
        self._refresh_indexes(removal)
        counts = removal.summary()
        return {"receipt": entry.entry_id, "reason": request["reason"], "dry_run": False, "images": counts["images"],
                "faces": counts["faces"], "probes": counts["probes"], "subjects": matches}

    def _refresh_indexes(self, removal: Removal) -> None:
        """Take deleted vectors out of cached indexes and rewrite the index files, so none survive on disk."""
        if not removal.face_ids_by_gallery:
            return
        with self._writing() as session:
            for gallery_id, face_ids in removal.face_ids_by_gallery.items():
                gallery = session.get(Gallery, gallery_id)
                cached = self._indexes.get(gallery_id)
                if cached is not None and cached[0] == gallery.generation - 1:
                    cached[1].remove(np.asarray(face_ids, dtype=np.int64))
                    self._indexes[gallery_id] = (gallery.generation, cached[1])
                index = self._index(session, gallery)
                self.index_files.save(index, self._expected_meta(gallery, len(index)))

    # -- audit and reports -------------------------------------------------------------------------

    def audit_entries(self, *, by: Principal | None = None, **filters) -> list[dict]:
        """Ledger entries, filtered by since / action / actor / purpose / case / limit."""
        self.authorize(by, "audit")
        return self.ledger.entries(**filters)

    def audit_export(self, fmt: str, *, since: datetime | None = None, by: Principal | None = None) -> str:
        """The ledger as JSON lines or CSV; the export itself is ledgered (who took a copy, and when)."""
        principal = self.authorize(by, "audit")
        text = self.ledger.export(fmt, since=since)
        self.ledger.record(actor=principal.name, action="audit.export",
                           payload={"format": fmt, "since": _iso(since), "bytes": len(text.encode())})
        return text

    def operating_points(self) -> list[dict]:
        """Each gallery's open-set threshold at its current size, and what it predicts."""
        points = []
        with self.sessions() as session:
            for gallery in session.execute(select(Gallery).where(Gallery.model_id == self.model_id)
                                           .order_by(Gallery.name)).scalars():
                size = session.execute(select(func.count()).select_from(FaceRecord).where(
                    FaceRecord.gallery_id == gallery.id)).scalar_one()
                threshold = self.calibration.threshold_for_fpir(gallery.target_fpir, size)
                points.append({"gallery": gallery.name, "gallery_size": size, "target_fpir": gallery.target_fpir,
                               "threshold": threshold.score, "predicted_fmr": threshold.predicted_fmr,
                               "per_comparison_fmr": threshold.per_comparison_fmr, "supported": threshold.supported,
                               "calibration_id": self.calibration.calibration_id})
        return points

    def transparency_summary(self, *, since: datetime | None = None, by: Principal | None = None) -> dict:
        """The transparency report's figures only (no files), e.g. for the HTTP API; ledgered likewise."""
        principal = self.authorize(by, "report")
        summary = self._transparency_summary(since)
        self.ledger.record(actor=principal.name, action="report.transparency",
                           payload={"since": _iso(since), "searches": summary["searches"]["total"], "format": "json"})
        return summary

    def _transparency_summary(self, since: datetime | None) -> dict:
        return summarize(self.ledger.entries(since=since), self.operating_points(), since=_iso(since))

    def transparency_report(self, out_dir: Path, *, since: datetime | None = None,
                            by: Principal | None = None) -> dict:
        """Write the transparency report (JSON + HTML with charts) from the ledger; the report is ledgered."""
        principal = self.authorize(by, "report")
        summary = self._transparency_summary(since)
        curve = [(n, self.calibration.threshold_for_fpir(0.01, n).score)
                 for n in np.unique(np.logspace(0, 8, 60).astype(int))]
        written = write_report(summary, Path(out_dir), threshold_curve=curve)
        self.ledger.record(actor=principal.name, action="report.transparency",
                           payload={"since": _iso(since), "searches": summary["searches"]["total"]})
        return {"summary": summary, "files": written}

    # -- calibration -----------------------------------------------------------------------------

    def calibrate(self, dataset: Path, *, workers: int = 2, max_identities: int | None = None,
                  min_identities: int = 50, by: Principal | None = None) -> dict:
        """Fit this model's impostor-score calibration on a folder-per-identity dataset (one image each)."""
        principal = self.authorize(by, "calibrate")
        items = identity_sample(Path(dataset), max_identities=max_identities,
                                max_bytes=self.settings.max_image_bytes)
        self.pipeline.load()
        analyses = list(analyse_all(items, pipeline=self.pipeline, settings=self.settings, on_multiple="largest",
                                    workers=workers))
        vectors = np.stack([a.faces[0].embedding for a in analyses if not a.error]) if analyses else np.empty((0, 0))
        if len(vectors) < min_identities:
            raise FaceledgerError(f"{dataset}: only {len(vectors)} identities gave a usable face; "
                                  f"need at least {min_identities}")
        calibration = Calibration(
            calibration_id=f"{Path(dataset).name}-1perid-{self.model_id}-{utcnow():%Y%m%dT%H%M%SZ}",
            model_id=self.model_id, bin_width=0.0005, counts=impostor_histogram(vectors),
            description=f"{len(vectors)} identities of {dataset} (one image each), all cross-identity pairs",
            max_impostor_score=None)
        path = self.calibration_path
        path.parent.mkdir(parents=True, exist_ok=True)
        calibration.save(path)
        self._calibration = calibration
        thresholds = {f"{fmr:g}": calibration.threshold_for_fmr(fmr).score for fmr in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}
        failed = sum(1 for a in analyses if a.error)
        self.ledger.record(actor=principal.name, action="calibrate", payload={
            "calibration_id": calibration.calibration_id, "model_id": self.model_id, "dataset": str(dataset),
            "identities": len(vectors), "failed": failed, "impostor_pairs": calibration.total,
            "thresholds": thresholds})
        return {"calibration_id": calibration.calibration_id, "identities": len(vectors), "failed": failed,
                "impostor_pairs": calibration.total, "thresholds": thresholds, "path": str(path)}

    @property
    def calibration_path(self) -> Path:
        return self.settings.home / "calibrations" / f"calibration-{self.model_id}.json"

    # -- inspection ------------------------------------------------------------------------------

    def faces(self, image: ImageSource, *, name: str | None = None,
              by: Principal | None = None) -> tuple[LoadedImage, list[Face]]:
        """Every face in an image with its quality (no comparison is made, so nothing is ledgered)."""
        self.authorize(by, "faces")
        loaded = self._load(image, name)
        return loaded, self.pipeline.faces(loaded.rgb, embed=False)

    def audit_verify(self, *, by: Principal | None = None) -> LedgerCheck:
        self.authorize(by, "audit")
        return self.ledger.verify()

    def stats(self, *, by: Principal | None = None) -> dict:
        self.authorize(by, "stats")
        with self.sessions() as session:
            def total(model) -> int:
                return session.execute(select(func.count()).select_from(model)).scalar_one()

            return {
                "home": str(self.settings.home.resolve()), "database": _safe_url(self.db.url),
                "index": self.settings.index, "model_id": self.model_id,
                "galleries": total(Gallery), "subjects": total(Subject), "images": total(ImageRecord),
                "faces": total(FaceRecord), "ledger_entries": total(LedgerEntry),
            }


POLICY_FIELDS = ("purposes", "allow_investigative", "target_fpir", "retain_days", "probe_retain_days",
                 "keep_probe_images")


def _policy_of(gallery: Gallery) -> dict:
    return {key: getattr(gallery, key) for key in POLICY_FIELDS}


def _policy_values(*, purposes, allow_investigative, target_fpir, retain_days, probe_retain_days,
                   keep_probe_images) -> dict:
    """Validated gallery policy fields."""
    check_fpir(target_fpir)
    check_positive_days(retain_days, "--retain-days")
    check_positive_days(probe_retain_days, "--probe-retain-days", allow_zero=True)
    cleaned = sorted({str(p).strip() for p in purposes or () if str(p).strip()})
    return {"purposes": cleaned, "allow_investigative": bool(allow_investigative), "target_fpir": float(target_fpir),
            "retain_days": retain_days, "probe_retain_days": int(probe_retain_days),
            "keep_probe_images": bool(keep_probe_images)}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _safe_url(url) -> str:
    return url.render_as_string(hide_password=True)


def open_engine(settings: Settings | None = None, **overrides) -> Engine:
    """Open an engine on a data directory: `open_engine(home="data")`."""
    settings = settings or Settings(**overrides)
    return Engine(settings)
