"""The facade: the only place that wires the pipeline to storage, calibration, policy and the ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .calibration import Calibration, fpir_at, packaged_calibration
from .config import Settings
from .enrollment import (
    Analysis, PrecomputedFace, WorkItem, analyse_all, expand_paths, file_sha256, subject_for,
)
from .errors import AlreadyExists, FaceledgerError, IndexMismatch, NotFound, PolicyViolation
from .faces import Face
from .imaging import LoadedImage, load_image
from .index.faiss_index import FaissIndex, IndexFiles, IndexMeta, bulk
from .ledger import Ledger, LedgerCheck
from .pipeline import FacePipeline
from .results import Candidate, EnrollReport, FileOutcome, SearchResult, SubjectHit, VerifyResult
from .store import FaceRecord, Gallery, ImageRecord, LedgerEntry, Subject, open_database

Progress = Callable[[int, int], None]
ImageSource = Path | str | bytes


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def require_text(value: str | None, what: str, flag: str) -> str:
    if value is None or not str(value).strip():
        raise PolicyViolation(f"{what} is required ({flag}); every search and verification must state it")
    return str(value).strip()


class Engine:
    """Open once per process; safe to share between threads for reads, one writer at a time per gallery."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db, self.sessions = open_database(settings.database_url)
        self.ledger = Ledger(self.sessions, settings.home / "ledger.head")
        self.pipeline = FacePipeline.from_settings(settings)
        self.index_files = IndexFiles(settings.index_dir, settings.index, dim=self.pipeline.embedder.dim)
        self._indexes: dict[int, tuple[int, FaissIndex]] = {}
        self._calibration: Calibration | None = None

    # -- shared pieces ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = packaged_calibration(self.model_id)
        return self._calibration

    @property
    def actor(self) -> str:
        return self.settings.operator

    def close(self) -> None:
        self.db.dispose()

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

    def create_gallery(self, name: str, *, retain_days: int | None = None,
                       target_fpir: float | None = None) -> dict:
        name = require_text(name, "a gallery name", "NAME")
        if retain_days is not None and retain_days <= 0:
            raise FaceledgerError("--retain-days must be a positive number of days")
        with self.sessions() as session:
            if session.execute(select(Gallery.id).where(Gallery.name == name)).first():
                raise AlreadyExists(f"gallery {name!r} already exists")
            gallery = Gallery(name=name, created_at=utcnow(), created_by=self.actor, retain_days=retain_days,
                              target_fpir=target_fpir or self.settings.target_fpir, model_id=self.model_id,
                              generation=0)
            session.add(gallery)
            session.flush()
            entry = self.ledger.append(session, actor=self.actor, action="gallery.create", payload={
                "gallery": name, "gallery_id": gallery.id, "retain_days": retain_days,
                "target_fpir": gallery.target_fpir, "model_id": self.model_id})
            session.commit()
        self.ledger.note_committed(entry)
        return self.gallery_info(name)

    def gallery_info(self, name: str) -> dict:
        with self.sessions() as session:
            gallery = self._gallery(session, name)
            return self._describe(session, gallery)

    def list_galleries(self) -> list[dict]:
        with self.sessions() as session:
            galleries = session.execute(select(Gallery).order_by(Gallery.name)).scalars().all()
            return [self._describe(session, g) for g in galleries]

    def _describe(self, session: Session, gallery: Gallery) -> dict:
        def count(model) -> int:
            return session.execute(select(func.count()).select_from(model).where(model.gallery_id == gallery.id)).scalar_one()

        return {
            "name": gallery.name, "id": gallery.id, "subjects": count(Subject), "images": count(ImageRecord),
            "faces": count(FaceRecord), "retain_days": gallery.retain_days, "target_fpir": gallery.target_fpir,
            "model_id": gallery.model_id, "created_at": _iso(gallery.created_at), "created_by": gallery.created_by,
        }

    # -- enrolment -------------------------------------------------------------------------------

    def enroll(self, paths: Sequence[Path | str], *, gallery: str, subject: str | None = None,
               subject_from_folder: bool = False, source: str, legal_basis: str,
               retain_until: datetime | None = None, on_multiple: str = "refuse", workers: int = 1,
               progress: Progress | None = None) -> EnrollReport:
        """Enrol image files. Already-enrolled images (same sha256) are skipped, so a rerun resumes."""
        source = require_text(source, "the image source (provenance)", "--source")
        legal_basis = require_text(legal_basis, "the legal basis for holding these images", "--legal-basis")
        if bool(subject) == bool(subject_from_folder):
            raise FaceledgerError("give exactly one of --subject NAME or --subject-from-folder")
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            known = set(session.execute(select(ImageRecord.sha256).where(
                ImageRecord.gallery_id == gallery_row.id)).scalars())
        report = EnrollReport(gallery=gallery)
        items = self._work_items(expand_paths(paths), subject, subject_from_folder, known, report)
        done, total = len(report.outcomes), len(report.outcomes) + len(items)
        if progress:
            progress(done, total)
        if items:
            self.pipeline.load()
        batch: list[Analysis] = []
        provenance = {"source": source, "legal_basis": legal_basis, "retain_until": retain_until,
                      "method": "images"}
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
                          legal_basis: str, retain_until: datetime | None = None) -> EnrollReport:
        """Enrol embeddings computed elsewhere by this engine's model, with the same provenance rules."""
        source = require_text(source, "the image source (provenance)", "--source")
        legal_basis = require_text(legal_basis, "the legal basis for holding these images", "--legal-basis")
        for entry in entries:
            if entry.model_id != self.model_id:
                raise IndexMismatch(f"{entry.name}: embedding from model {entry.model_id}, engine uses {self.model_id}")
        with self.sessions() as session:
            gallery_id = self._gallery(session, gallery).id
            known = set(session.execute(select(ImageRecord.sha256).where(
                ImageRecord.gallery_id == gallery_id)).scalars())
        report = EnrollReport(gallery=gallery)
        provenance = {"source": source, "legal_basis": legal_basis, "retain_until": retain_until,
                      "method": "precomputed embeddings"}
        fresh = []
        for entry in entries:
            if entry.sha256 in known:
                report.outcomes.append(FileOutcome(path=entry.name, status="duplicate", subject=entry.subject))
            else:
                known.add(entry.sha256)
                fresh.append(entry.analysis())
        for start in range(0, len(fresh), self.settings.enroll_batch):
            self._store_batch(gallery, fresh[start:start + self.settings.enroll_batch], provenance, report)
        self._save_index(gallery)
        return report

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
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            retain_until = provenance["retain_until"] or (
                now + timedelta(days=gallery_row.retain_days) if gallery_row.retain_days else None)
            subjects: dict[str, Subject] = {}
            for analysis in batch:
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
            entry = self.ledger.append(session, actor=self.actor, action="enroll", payload={
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
                    enrolled_by=self.actor, enrolled_at=now, retain_until=retain_until)
                session.add(image)
                session.flush()
            record = FaceRecord(
                image_id=image.id, subject_id=subject.id, gallery_id=gallery.id, box=list(face.box),
                landmarks=[list(p) for p in face.landmarks], detector_score=face.detector_score,
                quality=face.quality, embedding=face.embedding.tobytes(), model_id=self.model_id,
                template_id=self.pipeline.embedder.template_id)
            session.add(record)
            session.flush()
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
        cached = self._indexes.get(gallery_id)
        if cached is None or cached[0] != generation - 1 or not faces:
            self._indexes.pop(gallery_id, None)  # rebuilt from the store on next use
            return
        index = cached[1]
        index.add(np.array([fid for fid, _ in faces], dtype=np.int64), np.stack([v for _, v in faces]))
        self._indexes[gallery_id] = (generation, index)

    def _save_index(self, gallery: str) -> None:
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            index = self._index(session, gallery_row)
            self.index_files.save(index, self._expected_meta(gallery_row, len(index)))

    def reindex(self, gallery: str | None = None, *, index: str | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
        """Rebuild index files from the store (all galleries, or one), optionally with another index string."""
        with self.sessions() as session:
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

    def search(self, image: ImageSource, *, gallery: str, purpose: str, case: str, top_k: int = 10,
               image_name: str | None = None, on_multiple: str = "refuse") -> SearchResult:
        """1:N open-set search: candidates above the threshold that holds the gallery's target FPIR."""
        purpose = require_text(purpose, "a purpose", "--purpose")
        case = require_text(case, "a case reference", "--case")
        if top_k < 1:
            raise FaceledgerError("--top-k must be at least 1")
        loaded = self._load(image, image_name)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "probe_sha256": loaded.sha256,
                   "top_k": top_k}
        with self.ledger_failures("search", request):
            probe = self._probe_face(loaded, on_multiple=on_multiple)
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            index = self._index(session, gallery_row)
            size = len(index)
            threshold = self.calibration.threshold_for_fpir(gallery_row.target_fpir, size)
            candidates = self._candidates(session, index, probe.embedding, threshold.score, top_k, size)
            result_fields = {
                "decision": "match" if candidates else "no_match", "threshold": threshold.score,
                "target_fpir": gallery_row.target_fpir, "threshold_supported": threshold.supported,
                "gallery": gallery, "gallery_size": size, "probe_sha256": loaded.sha256,
                "probe_quality": probe.quality.as_dict(), "model_id": self.model_id,
                "calibration_id": self.calibration.calibration_id,
            }
            entry = self.ledger.append(session, actor=self.actor, action="search", payload={
                **result_fields, "purpose": purpose, "case": case, "gallery_id": gallery_row.id, "top_k": top_k,
                "mode": "open-set", "candidates": [c.as_json() for c in candidates]})
            session.commit()
        self.ledger.note_committed(entry)
        return SearchResult(candidates=tuple(candidates), ledger_entry=entry.entry_id, **result_fields)

    def rank(self, gallery: str, vectors: np.ndarray, *, top_k: int = 10) -> list[list[SubjectHit]]:
        """Best face per subject for each query vector, top_k subjects, no threshold and no ledger entry.

        For evaluation and tools that apply their own decision rule; people are searched with `search`.
        """
        with self.sessions() as session:
            gallery_row = self._gallery(session, gallery)
            return self._rank_subjects(session, self._index(session, gallery_row), vectors, top_k)

    def _rank_subjects(self, session: Session, index: FaissIndex, vectors: np.ndarray, top_k: int
                       ) -> list[list[SubjectHit]]:
        """Shortlist faces from the index, then keep each subject's best face, best first."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(index) == 0:
            return [[] for _ in vectors]
        scores, ids = index.search(vectors, min(len(index), top_k * 8 + 32))
        face_ids = {int(i) for i in ids.ravel() if i >= 0}
        subject_of = self._face_subjects(session, face_ids)
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

    def _candidates(self, session: Session, index: FaissIndex, vector: np.ndarray, threshold: float,
                    top_k: int, gallery_size: int) -> list[Candidate]:
        """Best face per subject, above the threshold, ranked by score, each with its error rates."""
        hits = [h for h in self._rank_subjects(session, index, vector, top_k)[0] if h.score >= threshold]
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            estimate = self.calibration.fmr(hit.score)
            candidates.append(Candidate(
                rank=rank, subject=hit.subject, subject_id=hit.subject_id, score=hit.score,
                false_match_rate=estimate.fmr, false_match_rate_upper=estimate.upper,
                gallery_false_positive_chance=fpir_at(estimate.fmr, gallery_size),
                image=hit.image, face_id=hit.face_id))
        return candidates

    def verify(self, image_a: ImageSource, image_b: ImageSource, *, purpose: str, case: str,
               names: tuple[str | None, str | None] = (None, None)) -> VerifyResult:
        """1:1: are these two faces the same person, at the threshold for the configured FMR?"""
        purpose = require_text(purpose, "a purpose", "--purpose")
        case = require_text(case, "a case reference", "--case")
        loaded = (self._load(image_a, names[0]), self._load(image_b, names[1]))
        request = {"purpose": purpose, "case": case, "probe_sha256": [im.sha256 for im in loaded]}
        with self.ledger_failures("verify", request):
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
        entry = self.ledger.record(actor=self.actor, action="verify", payload={
            **fields, "probe_sha256": list(fields["probe_sha256"]), "purpose": purpose, "case": case,
            "probe_quality": [f.quality.as_dict() for f in faces]})
        return VerifyResult(ledger_entry=entry.entry_id, **fields)

    @contextmanager
    def ledger_failures(self, action: str, request: dict) -> Iterator[None]:
        """A search or verify that fails on its probe (no face, several faces) is still ledgered."""
        try:
            yield
        except FaceledgerError as exc:
            self.ledger.record(actor=self.actor, action=action, payload={
                **request, "decision": "failed", "error": str(exc), "model_id": self.model_id})
            raise

    # -- inspection ------------------------------------------------------------------------------

    def faces(self, image: ImageSource, *, name: str | None = None) -> tuple[LoadedImage, list[Face]]:
        """Every face in an image with its quality (no comparison is made, so nothing is ledgered)."""
        loaded = self._load(image, name)
        return loaded, self.pipeline.faces(loaded.rgb, embed=False)

    def audit_verify(self) -> LedgerCheck:
        return self.ledger.verify()

    def stats(self) -> dict:
        with self.sessions() as session:
            def total(model) -> int:
                return session.execute(select(func.count()).select_from(model)).scalar_one()

            return {
                "home": str(self.settings.home.resolve()), "database": _safe_url(self.db.url),
                "index": self.settings.index, "model_id": self.model_id,
                "galleries": total(Gallery), "subjects": total(Subject), "images": total(ImageRecord),
                "faces": total(FaceRecord), "ledger_entries": total(LedgerEntry),
            }


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
