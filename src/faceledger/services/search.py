"""1:N search and 1:1 verification: probe → index → subjects → calibrated threshold → ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..calibration import Threshold, fpir_at
from ..errors import FaceledgerError
from ..faces import Face
from ..imaging import LoadedImage
from ..index.faiss_index import FaissIndex
from ..policy import Principal, check_investigative, check_purpose, gallery_policy
from ..results import CANDIDATE_LABEL, LEAD_LABEL, Candidate, SearchResult, SubjectHit, VerifyResult
from ..store import FaceRecord, Gallery, Probe
from ..store.queries import face_subjects
from .access import Access
from .calibrations import Calibrations
from .context import Context, ImageSource, iso, optional_text, require_text, utcnow
from .indexes import IndexCache


@dataclass(frozen=True)
class Match:
    """One probe vector's open-set answer against one gallery (see Searching.match)."""

    threshold: Threshold
    candidates: list[Candidate]
    gallery_size: int
    calibration_id: str


class Searching:
    def __init__(self, ctx: Context, access: Access, indexes: IndexCache, calibrations: Calibrations) -> None:
        self.ctx = ctx
        self.access = access
        self.indexes = indexes
        self.calibrations = calibrations

    def search(self, image: ImageSource, *, gallery: str, purpose: str | None, case: str | None,
               top_k: int = 10, investigative: bool = False, authorisation: str | None = None,
               image_name: str | None = None, on_multiple: str = "refuse",
               by: Principal | None = None) -> SearchResult:
        """1:N search. Open-set: only candidates above the threshold that holds the gallery's target FPIR at
        its current size. Investigative (where the gallery allows it): the top-k as leads, not identifications."""
        ctx = self.ctx
        principal = self.access.authorize(by, "search", gallery=gallery)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "investigative": investigative}
        with self.access.refusals(principal, "search", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            authorisation = optional_text(authorisation, "the authorisation id", "--authorisation")
            with ctx.sessions() as session:
                policy = gallery_policy(ctx.gallery(session, gallery))
            check_purpose(purpose, policy["purposes"], gallery)
            check_investigative(investigative, policy["allow_investigative"], gallery)
        if top_k < 1:
            raise FaceledgerError("--top-k must be at least 1")
        request.update(top_k=top_k, authorisation=authorisation)
        with self.access.failures(principal, "search", request):  # an undecodable upload is ledgered too
            loaded = ctx.load(image, image_name)
            request.update(probe_sha256=loaded.sha256)
            probe = ctx.probe_face(loaded, on_multiple=on_multiple)
        return self._search_probe(principal, gallery, loaded, probe, purpose=purpose, case=case, top_k=top_k,
                                  investigative=investigative, authorisation=authorisation)

    def _search_probe(self, principal: Principal, gallery: str, loaded: LoadedImage, probe: Face, *,
                      purpose: str, case: str, top_k: int, investigative: bool,
                      authorisation: str | None) -> SearchResult:
        """Rank, threshold, and ledger the search together with its probe record, in one transaction."""
        ctx = self.ctx
        calibration = self.calibrations.current
        mode = "investigative" if investigative else "open-set"
        now = utcnow()
        with ctx.writing() as session:
            gallery_row = ctx.gallery(session, gallery)
            match = self.match(session, gallery_row, probe.embedding, top_k=top_k, investigative=investigative)
            threshold, candidates, size = match.threshold, match.candidates, match.gallery_size
            probe_expires = now + timedelta(days=gallery_row.probe_retain_days)
            result_fields = {
                "decision": "match" if any(c.above_threshold for c in candidates) else "no_match",
                "mode": mode, "threshold": threshold.score, "target_fpir": gallery_row.target_fpir,
                "threshold_supported": threshold.supported, "gallery": gallery, "gallery_size": size,
                "probe_sha256": loaded.sha256, "probe_quality": probe.quality.as_dict(), "model_id": ctx.model_id,
                "calibration_id": calibration.calibration_id,
            }
            entry = ctx.ledger.append(session, actor=principal.name, action="search", payload={
                **result_fields, "purpose": purpose, "case": case, "authorisation": authorisation,
                "gallery_id": gallery_row.id, "top_k": top_k, "candidates": [c.as_json() for c in candidates],
                "probe_expires": iso(probe_expires), "probe_image_kept": gallery_row.keep_probe_images})
            session.add(Probe(
                entry_id=entry.entry_id, gallery_id=gallery_row.id, searched_by=principal.name, sha256=loaded.sha256,
                embedding=probe.embedding.tobytes(), quality=probe.quality.as_dict(), mode=mode,
                candidates=[c.as_json() for c in candidates], created_at=now, expires_at=probe_expires,
                image=loaded.data if gallery_row.keep_probe_images else None))
            session.commit()
        ctx.ledger.note_committed(entry)
        return SearchResult(candidates=tuple(candidates), ledger_entry=entry.entry_id,
                            probe_box=tuple(float(v) for v in probe.box), **result_fields)

    def match(self, session: Session, gallery: Gallery, vector: np.ndarray, *, top_k: int,
              investigative: bool = False) -> Match:
        """The open-set answer for one probe vector against one gallery, without ledgering it: the
        threshold at the gallery's size and the candidates (above it, or the top-k leads when
        investigative). Callers ledger the search (still images here; a video search ledgers its tracks)."""
        index = self.indexes.get(session, gallery)
        size = len(index)
        threshold = self.calibrations.current.threshold_for_fpir(gallery.target_fpir, size)
        candidates = self._candidates(session, index, vector, None if investigative else threshold.score,
                                      top_k, size, threshold.score, investigative)
        return Match(threshold=threshold, candidates=candidates, gallery_size=size,
                     calibration_id=self.calibrations.current.calibration_id)

    def rank(self, gallery: str, vectors: np.ndarray, *, top_k: int = 10) -> list[list[SubjectHit]]:
        """Best face per subject for each query vector, top_k subjects, no threshold and no ledger entry.

        For evaluation and tools that apply their own decision rule; people are searched with `search`.
        """
        with self.ctx.sessions() as session:
            gallery_row = self.ctx.gallery(session, gallery)
            return self.rank_subjects(session, self.indexes.get(session, gallery_row), vectors, top_k)

    def rank_subjects(self, session: Session, index: FaissIndex, vectors: np.ndarray, top_k: int
                      ) -> list[list[SubjectHit]]:
        """Shortlist faces from the index, keep each subject's best face, best first. The shortlist widens
        until every query has top_k subjects or covers the gallery, so a subject with many faces cannot
        crowd the others out."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(index) == 0:
            return [[] for _ in vectors]
        shortlist = min(len(index), top_k * 8 + 32)
        while True:
            with self.ctx.lock:  # not while another thread adds to or removes from this index
                scores, ids = index.search(vectors, shortlist)
            ranked = _best_per_subject(session, scores, ids, top_k)
            if shortlist >= len(index) or all(len(row) >= top_k for row in ranked):
                return ranked
            shortlist = min(len(index), shortlist * 4)

    def _candidates(self, session: Session, index: FaissIndex, vector: np.ndarray, minimum: float | None,
                    top_k: int, gallery_size: int, threshold: float, investigative: bool) -> list[Candidate]:
        """Best face per subject (at or above `minimum` when given), ranked, each with its error rates."""
        calibration = self.calibrations.current
        hits = self.rank_subjects(session, index, vector, top_k)[0]
        if minimum is not None:
            hits = [h for h in hits if h.score >= minimum]
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            estimate = calibration.fmr(hit.score)
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
        ctx = self.ctx
        principal = self.access.authorize(by, "verify")
        request = {"purpose": purpose, "case": case}
        with self.access.refusals(principal, "verify", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            authorisation = optional_text(authorisation, "the authorisation id", "--authorisation")
        request.update(authorisation=authorisation)
        with self.access.failures(principal, "verify", request):  # an undecodable upload is ledgered too
            loaded = (ctx.load(image_a, names[0]), ctx.load(image_b, names[1]))
            request.update(probe_sha256=[im.sha256 for im in loaded])
            faces = [ctx.probe_face(im) for im in loaded]
        calibration = self.calibrations.current
        score = float(np.dot(faces[0].embedding, faces[1].embedding))
        threshold = calibration.threshold_for_fmr(ctx.settings.verify_target_fmr)
        estimate = calibration.fmr(score)
        fields = {
            "decision": "same" if score >= threshold.score else "different", "score": score,
            "false_match_rate": estimate.fmr, "false_match_rate_upper": estimate.upper,
            "threshold": threshold.score, "target_fmr": ctx.settings.verify_target_fmr,
            "probe_sha256": (loaded[0].sha256, loaded[1].sha256), "model_id": ctx.model_id,
            "calibration_id": calibration.calibration_id,
        }
        entry = ctx.ledger.record(actor=principal.name, action="verify", payload={
            **fields, "probe_sha256": list(fields["probe_sha256"]), "purpose": purpose, "case": case,
            "authorisation": authorisation, "probe_quality": [f.quality.as_dict() for f in faces]})
        return VerifyResult(ledger_entry=entry.entry_id, **fields)

    def faces(self, image: ImageSource, *, name: str | None = None,
              by: Principal | None = None) -> tuple[LoadedImage, list[Face]]:
        """Every face in an image with its quality (no comparison is made, so nothing is ledgered)."""
        self.access.authorize(by, "faces")
        loaded = self.ctx.load(image, name)
        return loaded, self.ctx.pipeline.faces(loaded.rgb, embed=False)

    def operating_points(self) -> list[dict]:
        """Each gallery's open-set threshold at its current size, and what it predicts."""
        calibration = self.calibrations.current
        points = []
        with self.ctx.sessions() as session:
            for gallery in session.execute(select(Gallery).where(Gallery.model_id == self.ctx.model_id)
                                           .order_by(Gallery.name)).scalars():
                size = session.execute(select(func.count()).select_from(FaceRecord).where(
                    FaceRecord.gallery_id == gallery.id)).scalar_one()
                threshold = calibration.threshold_for_fpir(gallery.target_fpir, size)
                points.append({"gallery": gallery.name, "gallery_size": size, "target_fpir": gallery.target_fpir,
                               "threshold": threshold.score, "predicted_fmr": threshold.predicted_fmr,
                               "per_comparison_fmr": threshold.per_comparison_fmr, "supported": threshold.supported,
                               "calibration_id": calibration.calibration_id})
        return points


def _best_per_subject(session: Session, scores: np.ndarray, ids: np.ndarray, top_k: int) -> list[list[SubjectHit]]:
    subject_of = face_subjects(session, {int(i) for i in ids.ravel() if i >= 0}, live_at=utcnow())
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
