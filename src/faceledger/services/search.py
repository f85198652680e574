"""1:N search and 1:1 verification: probe → index → subjects → calibrated threshold → ledger."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import FaceledgerError, PolicyViolation
from ..faces import Face
from ..imaging import LoadedImage
from ..index.faiss_index import FaissIndex
from ..matching import Match, match_galleries, rank_subjects, ranked_state
from ..policy import Principal, check_investigative, check_purpose, gallery_policy
from ..results import SearchResult, SubjectHit, VerifyResult
from ..search_record import review_crop, search_record
from ..store import FaceRecord, Gallery, Probe
from ..store.open_reviews import queue_search
from ..store.queries import face_subjects
from .access import Access
from .calibrations import Calibrations
from .context import Context, ImageSource, optional_text, require_text, utcnow
from .indexes import IndexCache

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
                policy = gallery_policy(self.ctx.gallery_values(session, name))
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
        # The ranking (index, subjects, calibration) reads a snapshot of the store without the database's
        # write lock, so other searches, in this process or another, rank at the same time; the write
        # transaction holds the lock only to append the ledger entry and the probe row. It first reads the
        # galleries again: if one changed meanwhile (faces added or removed: its generation; or its target
        # FPIR), the search is ranked again inside the transaction, so what is ledgered is always the
        # answer over the galleries as they are when the entry is written.
        with ctx.sessions() as session:  # a read snapshot, no write lock (stale indexes are rebuilt here)
            seen = [ctx.gallery_values(session, name) for name in names]
            ranked = self.match_many(session, seen, probe.embedding, top_k=top_k, investigative=investigative)
            seen_state = ranked_state(seen)
        crop = review_crop(loaded, probe, seen, ranked.candidates)  # a JPEG encode: not under the write lock
        now = utcnow()
        with ctx.writing() as session:
            rows = [ctx.gallery_values(session, name) for name in names]
            answer = ranked if ranked_state(rows) == seen_state else self.match_many(
                session, rows, probe.embedding, top_k=top_k, investigative=investigative)  # changed meanwhile
            record = search_record(principal=principal, galleries=rows, refused=refused, answer=answer,
                                   loaded=loaded, probe=probe, purpose=purpose, case=case, top_k=top_k,
                                   investigative=investigative, authorisation=authorisation,
                                   model_id=ctx.model_id, now=now, capture=capture, crop=crop)
            entry = ctx.ledger.append(session, actor=principal.name, action="search", payload=record.payload)
            session.execute(Probe.__table__.insert(), [{"entry_id": entry.entry_id, **record.probe}])
            queue_search(session, entry)  # awaiting review, when it shows candidates
            session.commit()
        ctx.ledger.note_committed(entry)
        return SearchResult(candidates=tuple(answer.candidates), ledger_entry=entry.entry_id,
                            probe_box=tuple(float(v) for v in probe.box), **record.result_fields)

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
        """The open-set answer over several galleries searched as one (matching.match_galleries): their
        indexes and calibrations brought up to date from the store, the subjects read in this session."""
        indexes = [self.indexes.get(session, g) for g in galleries]
        calibrations = [self.calibrations.for_gallery(session, g) for g in galleries]
        return match_galleries(galleries, indexes, calibrations, vector, top_k=top_k, investigative=investigative,
                               subjects_of=self._subjects_in(session), lock=self.ctx.lock)

    def rank(self, gallery: str, vectors: np.ndarray, *, top_k: int = 10) -> list[list[SubjectHit]]:
        """Best face per subject for each query vector, top_k subjects, no threshold and no ledger entry.

        For evaluation and tools that apply their own decision rule; people are searched with `search`.
        """
        with self.ctx.sessions() as session:
            gallery_row = self.ctx.gallery(session, gallery)
            return self.rank_subjects(session, self.indexes.get(session, gallery_row), vectors, top_k)

    def rank_subjects(self, session: Session, index: FaissIndex, vectors: np.ndarray, top_k: int
                      ) -> list[list[SubjectHit]]:
        """Best face per subject for each query vector, best first (matching.rank_subjects)."""
        return rank_subjects(index, vectors, top_k, self._subjects_in(session), self.ctx.lock)

    @staticmethod
    def _subjects_in(session: Session):
        """face ids -> (subject id, subject name, image name) read in `session`, live faces only."""
        return lambda face_ids: face_subjects(session, face_ids, live_at=utcnow())

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

