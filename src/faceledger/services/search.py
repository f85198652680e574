"""1:N search and 1:1 verification: probe → index → subjects → calibrated threshold → ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..calibration import Threshold, fpir_at
from ..enrollment import face_crop_jpeg
from ..errors import FaceledgerError, PolicyViolation
from ..faces import Face
from ..imaging import LoadedImage
from ..index.faiss_index import FaissIndex
from ..policy import Principal, check_investigative, check_purpose, gallery_policy
from ..results import CANDIDATE_LABEL, LEAD_LABEL, Candidate, SearchResult, SubjectHit, VerifyResult
from ..store import FaceRecord, Gallery, Probe
from ..store.open_reviews import queue_search
from ..store.queries import face_subjects
from .access import Access
from .calibrations import Calibrations
from .context import Context, ImageSource, iso, optional_text, require_text, utcnow
from .indexes import IndexCache

EVIDENCE_SUBJECTS = 30
"""Subjects ranked for a search's own evidence (its top score against the next ones)."""


def probe_evidence(ranked: list[SubjectHit]) -> dict | None:
    """How the best subject's score stands out from this probe's next-best subjects (mostly non-mates):
    the margin over the second, and a z-score against ranks 2..K. Reported beside the calibrated FMR;
    not a gate (its error rates are not calibrated)."""
    if len(ranked) < 6:
        return None
    rest = np.array([h.score for h in ranked[1:]], dtype=np.float64)
    spread = float(rest.std()) or 1e-6
    return {"top_score": round(ranked[0].score, 6), "second_score": round(ranked[1].score, 6),
            "margin": round(ranked[0].score - ranked[1].score, 6),
            "z_against_next": round((ranked[0].score - float(rest.mean())) / spread, 3),
            "subjects_compared": len(ranked)}


@dataclass(frozen=True)
class Match:
    """One probe vector's open-set answer against one gallery (see Searching.match)."""

    threshold: Threshold
    candidates: list[Candidate]
    gallery_size: int
    calibration_id: str
    evidence: dict | None = None
    """The probe's own evidence: its top score against its next-best subjects (see probe_evidence)."""


class Searching:
    def __init__(self, ctx: Context, access: Access, indexes: IndexCache, calibrations: Calibrations) -> None:
        self.ctx = ctx
        self.access = access
        self.indexes = indexes
        self.calibrations = calibrations

    def search(self, image: ImageSource, *, gallery: str | Sequence[str], purpose: str | None, case: str | None,
               top_k: int = 10, investigative: bool = False, authorisation: str | None = None,
               image_name: str | None = None, on_multiple: str = "refuse",
               by: Principal | None = None) -> SearchResult:
        """1:N search. Open-set: only candidates above the threshold that holds the target FPIR over every face
        compared. Investigative (where every gallery allows it): the top-k as leads, not identifications.

        `gallery` may name several galleries: each checks its own purpose policy (a refusing gallery is
        left out and named in the result), the threshold holds the strictest target FPIR over all the faces
        compared, and one ledger entry names every gallery searched and every gallery that refused."""
        ctx = self.ctx
        names = [gallery] if isinstance(gallery, str) else list(dict.fromkeys(gallery))
        if not names:
            raise FaceledgerError("name at least one gallery to search (--gallery)")
        label = ", ".join(names)
        principal = self.access.authorize(by, "search", gallery=label)
        request = {"gallery": label, "purpose": purpose, "case": case, "investigative": investigative}
        purpose, case, authorisation, searched, refused = self._admitted(
            principal, request, names, purpose, case, authorisation, investigative)
        if top_k < 1:
            raise FaceledgerError("--top-k must be at least 1")
        request.update(top_k=top_k, authorisation=authorisation)
        with self.access.failures(principal, "search", request):  # an undecodable upload is ledgered too
            loaded = ctx.load(image, image_name)
            request.update(probe_sha256=loaded.sha256)
            probe = ctx.probe_face(loaded, on_multiple=on_multiple)
        return self._search_probe(principal, searched, refused, loaded, probe, purpose=purpose, case=case,
                                  top_k=top_k, investigative=investigative, authorisation=authorisation)

    def _admitted(self, principal: Principal, request: dict, names: list[str], purpose: str | None,
                  case: str | None, authorisation: str | None, investigative: bool):
        """The stated purpose, case and authorisation, checked, and the galleries whose policy admits the
        search (and those that refuse it); a refusal of the whole search is ledgered."""
        with self.access.refusals(principal, "search", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            authorisation = optional_text(authorisation, "the authorisation id", "--authorisation")
            searched, refused = self._allowed(names, purpose, investigative)
        return purpose, case, authorisation, searched, refused

    def search_face(self, loaded: LoadedImage, probe: Face, *, gallery: str, purpose: str | None, case: str | None,
                    top_k: int = 10, authorisation: str | None = None, capture: dict | None = None,
                    by: Principal | None = None) -> SearchResult:
        """`search` with a face found and embedded elsewhere (a camera scan's best shots fused into one
        template: services/scan.py): the same checks, open-set answer, probe record and ledger entry.
        `loaded` is the image recorded as the probe; `capture` (ledgered) says how the face was taken."""
        principal = self.access.authorize(by, "search", gallery=gallery)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "investigative": False}
        purpose, case, authorisation, searched, refused = self._admitted(
            principal, request, [gallery], purpose, case, authorisation, False)
        return self._search_probe(principal, searched, refused, loaded, probe, purpose=purpose, case=case, top_k=top_k,
                                  investigative=False, authorisation=authorisation, capture=capture)

    def _allowed(self, names: list[str], purpose: str, investigative: bool) -> tuple[list[str], list[dict]]:
        """The galleries whose policy allows this search, and those that refused it with the reason.
        All refusing is a refusal of the search (PolicyViolation)."""
        searched, refused = [], []
        with self.ctx.sessions() as session:
            for name in names:
                policy = gallery_policy(self.ctx.gallery(session, name))
                try:
                    check_purpose(purpose, policy["purposes"], name)
                    check_investigative(investigative, policy["allow_investigative"], name)
                except PolicyViolation as exc:
                    if len(names) == 1:
                        raise
                    refused.append({"gallery": name, "reason": str(exc)})
                    continue
                searched.append(name)
        if not searched:
            raise PolicyViolation("every gallery named refused this search: "
                                  + "; ".join(r["reason"] for r in refused))
        return searched, refused

    def _search_probe(self, principal: Principal, names: list[str], refused: list[dict], loaded: LoadedImage,
                      probe: Face, *, purpose: str, case: str, top_k: int, investigative: bool,
                      authorisation: str | None, capture: dict | None = None) -> SearchResult:
        """Rank, threshold, and ledger the search together with its probe record, in one transaction."""
        ctx = self.ctx
        mode = "investigative" if investigative else "open-set"
        # The ranking (index, subjects, calibration) reads a snapshot of the store without the database's
        # write lock, so other searches, in this process or another, rank at the same time; the write
        # transaction holds the lock only to append the ledger entry and the probe row. It first reads the
        # galleries again: if one changed meanwhile (faces added or removed: its generation; or its target
        # FPIR), the search is ranked again inside the transaction, so what is ledgered is always the
        # answer over the galleries as they are when the entry is written.
        with ctx.sessions() as session:  # a read snapshot, no write lock (stale indexes are rebuilt here)
            seen = [ctx.gallery(session, name) for name in names]
            ranked = self.match_many(session, seen, probe.embedding, top_k=top_k, investigative=investigative)
            ranked_state = _ranked_state(seen)
        now = utcnow()
        with ctx.writing() as session:
            rows = [ctx.gallery(session, name) for name in names]
            answer = ranked if _ranked_state(rows) == ranked_state else self.match_many(
                session, rows, probe.embedding, top_k=top_k, investigative=investigative)  # changed meanwhile
            threshold, candidates, size = answer.threshold, answer.candidates, answer.gallery_size
            target = min(g.target_fpir for g in rows)
            probe_expires = now + timedelta(days=min(g.probe_retain_days for g in rows))
            keep_image = all(g.keep_probe_images for g in rows)
            decision = "match" if any(c.above_threshold for c in candidates) else "no_match"
            result_fields = {
                "decision": decision, "mode": mode, "threshold": threshold.score, "target_fpir": target,
                "threshold_supported": threshold.supported, "gallery": ", ".join(names), "gallery_size": size,
                "probe_sha256": loaded.sha256, "probe_quality": probe.quality.as_dict(), "model_id": ctx.model_id,
                "calibration_id": answer.calibration_id, "galleries": tuple(names), "refused": tuple(refused),
                "calibration_source": getattr(threshold, "source", "packaged"),
                "threshold_extrapolated": bool(getattr(threshold, "extrapolated", False)),
                "extrapolation_factor": float(getattr(threshold, "extrapolation_factor", 1.0)),
                "predicted_fpir": getattr(threshold, "predicted_fpir", None),
                "threshold_explanation": getattr(threshold, "explanation", ""),
                "meaning": meaning(decision, mode, target, size, threshold.score),
                "probe_evidence": answer.evidence,
            }
            entry = ctx.ledger.append(session, actor=principal.name, action="search", payload={
                **{k: v for k, v in result_fields.items() if k not in ("galleries", "refused")},
                "galleries": names, "refused": refused, "purpose": purpose, "case": case,
                "authorisation": authorisation, "gallery_id": rows[0].id, "gallery_ids": [g.id for g in rows],
                "top_k": top_k, "candidates": [c.as_json() for c in candidates],
                "probe_expires": iso(probe_expires), "probe_image_kept": keep_image,
                **({"capture": capture} if capture else {})})
            session.add(Probe(
                entry_id=entry.entry_id, gallery_id=rows[0].id, searched_by=principal.name, sha256=loaded.sha256,
                embedding=probe.embedding.tobytes(), quality=probe.quality.as_dict(), mode=mode,
                candidates=[c.as_json() for c in candidates], created_at=now, expires_at=probe_expires,
                image=loaded.data if keep_image else None, review_image=review_crop(loaded, probe, rows, candidates)))
            queue_search(session, entry)  # awaiting review, when it shows candidates
            session.commit()
        ctx.ledger.note_committed(entry)
        return SearchResult(candidates=tuple(candidates), ledger_entry=entry.entry_id,
                            probe_box=tuple(float(v) for v in probe.box), **result_fields)

    def warm(self, names: list[str]) -> None:
        """Bring the galleries' indexes and calibrations up to date before the write transaction, so a
        rebuild (seconds on a large gallery) does not hold the database's write lock for every process."""
        with self.ctx.sessions() as session:
            for name in names:
                gallery = self.ctx.gallery(session, name)
                self.indexes.get(session, gallery)
                self.calibrations.for_gallery(session, gallery)

    def match(self, session: Session, gallery: Gallery, vector: np.ndarray, *, top_k: int,
              investigative: bool = False) -> Match:
        """The open-set answer for one probe vector against one gallery, without ledgering it: the
        threshold at the gallery's size and the candidates (above it, or the top-k leads when
        investigative). Callers ledger the search (still images here; a video search ledgers its tracks)."""
        return self.match_many(session, [gallery], vector, top_k=top_k, investigative=investigative)

    def match_many(self, session: Session, galleries: list[Gallery], vector: np.ndarray, *, top_k: int,
                   investigative: bool = False) -> Match:
        """The open-set answer over several galleries searched as one: N is every face compared, the target
        the strictest of theirs, and the threshold the highest any gallery's calibration asks for at N."""
        indexes = [self.indexes.get(session, g) for g in galleries]
        size = sum(len(index) for index in indexes)
        target = min(g.target_fpir for g in galleries)
        calibrations = [self.calibrations.for_gallery(session, g) for g in galleries]
        threshold = max((c.threshold_for_fpir(target, max(size, 1)) for c in calibrations), key=lambda t: t.score)
        candidates: list[Candidate] = []
        evidence = None
        for gallery, index, calibration in zip(galleries, indexes, calibrations):
            found, seen = self._candidates(session, index, vector, None if investigative else threshold.score,
                                           top_k, size, threshold.score, investigative, calibration,
                                           gallery.name if len(galleries) > 1 else None)
            candidates += found
            if seen is not None and (evidence is None or seen["top_score"] > evidence["top_score"]):
                evidence = {**seen, "gallery": gallery.name}
        candidates.sort(key=lambda c: c.score, reverse=True)
        candidates = [replace(c, rank=rank) for rank, c in enumerate(candidates[:top_k], start=1)]
        return Match(threshold=threshold, candidates=candidates, gallery_size=size,
                     calibration_id="; ".join(dict.fromkeys(c.calibration_id for c in calibrations)),
                     evidence=evidence)

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
                    top_k: int, compared: int, threshold: float, investigative: bool, calibration,
                    gallery: str | None = None) -> tuple[list[Candidate], dict | None]:
        """Best face per subject (at or above `minimum` when given), ranked, each with its error rates."""
        ranked = self.rank_subjects(session, index, vector, max(top_k, EVIDENCE_SUBJECTS))[0]
        hits = ranked[:top_k]
        if minimum is not None:
            hits = [h for h in hits if h.score >= minimum]
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            estimate = calibration.fmr(hit.score)
            candidates.append(Candidate(
                rank=rank, subject=hit.subject, subject_id=hit.subject_id, score=hit.score,
                false_match_rate=estimate.fmr, false_match_rate_upper=estimate.upper,
                gallery_false_positive_chance=fpir_at(estimate.fmr, compared),
                image=hit.image, face_id=hit.face_id, above_threshold=hit.score >= threshold,
                label=LEAD_LABEL if investigative else CANDIDATE_LABEL, gallery=gallery))
        return candidates, probe_evidence(ranked)

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
        return loaded, self.ctx.pipeline.faces(loaded, embed=False)

    def operating_points(self) -> list[dict]:
        """Each gallery's open-set threshold at its current size, and what it predicts."""
        points = []
        with self.ctx.sessions() as session:
            for gallery in session.execute(select(Gallery).where(Gallery.model_id == self.ctx.model_id)
                                           .order_by(Gallery.name)).scalars():
                size = session.execute(select(func.count()).select_from(FaceRecord).where(
                    FaceRecord.gallery_id == gallery.id)).scalar_one()
                gallery_calibration = self.calibrations.for_gallery(session, gallery)
                threshold = gallery_calibration.threshold_for_fpir(gallery.target_fpir, max(size, 1))
                points.append({"gallery": gallery.name, "gallery_size": size, "target_fpir": gallery.target_fpir,
                               "threshold": threshold.score, "predicted_fmr": threshold.predicted_fmr,
                               "per_comparison_fmr": threshold.per_comparison_fmr, "supported": threshold.supported,
                               "calibration_id": gallery_calibration.calibration_id,
                               "calibration_source": getattr(threshold, "source", "packaged"),
                               "extrapolated": bool(getattr(threshold, "extrapolated", False))})
        return points


def _ranked_state(galleries: list[Gallery]) -> list[tuple]:
    """What a ranking depends on in the gallery rows: which galleries, their faces (generation) and the
    target FPIR that sets the threshold."""
    return [(g.id, g.generation, g.target_fpir, g.model_id) for g in galleries]


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


REVIEW_CROP_MARGIN = 0.5
REVIEW_CROP_MAX_SIDE = 320
"""The probe kept for its reviewers: the face box widened by half its size on each side (hair line, ears,
chin: what a reviewer compares), at most 320 px, JPEG. Never the rest of the photo."""


def review_crop(loaded: LoadedImage, probe: Face, galleries: list[Gallery], candidates: list[Candidate]
                ) -> bytes | None:
    """The probe's face crop kept until the search is reviewed, where every gallery searched keeps one
    (`keep_probe_for_review`, or `keep_probe_images`, which keeps more); nothing when there is no
    candidate to review. services/review.py deletes it once every candidate has a confirm or reject."""
    if not candidates or not all(g.keep_probe_for_review or g.keep_probe_images for g in galleries):
        return None
    return face_crop_jpeg(loaded, probe.box, margin=REVIEW_CROP_MARGIN, max_side=REVIEW_CROP_MAX_SIDE)


def meaning(decision: str, mode: str, target_fpir: float, compared: int, threshold: float) -> str:
    """What the answer means, in words, at this gallery size."""
    if mode == "investigative":
        return (f"Investigative search: the top candidates are leads, not identifications; any of them may be a "
                f"stranger. Scores at or above {threshold:.3f} would clear the open-set threshold.")
    rate = f"about 1 search in {round(1 / target_fpir):,}" if target_fpir > 0 else "rarely"
    if decision == "no_match":
        return (f"No enrolled face scored at or above {threshold:.3f}. The threshold is set so that a person who "
                f"is not among the {compared:,} faces compared gets a candidate in {rate} (target FPIR "
                f"{target_fpir:g}). No match does not prove the person is not enrolled: an enrolled person "
                "photographed badly can score below the threshold.")
    return (f"At least one candidate scored at or above {threshold:.3f}, the threshold that holds a target FPIR "
            f"of {target_fpir:g} over {compared:,} faces: a stranger would get a candidate in {rate}. A candidate "
            "is not an identification until a second person has reviewed it.")
