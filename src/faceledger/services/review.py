"""Second-person review of search candidates, and reading past searches back from the ledger."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import AlreadyExists, Conflict, NotFound
from ..ledger import entry_as_dict
from ..policy import Principal, candidate_status, check_decision
from ..store import LedgerEntry, Review
from .access import Access
from .context import Context, iso, optional_text, utcnow


class Reviews:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access

    def review(self, entry_id: str, *, candidate: int, decision: str, note: str | None = None,
               by: Principal | None = None) -> dict:
        """A reviewer's decision on one candidate of a search; never the searcher's own."""
        ctx = self.ctx
        principal = self.access.authorize(by, "review", search=entry_id, candidate=candidate)
        decision = check_decision(decision)
        with self.access.refusals(principal, "review", {"search": entry_id, "candidate": candidate}):
            note = optional_text(note, "the review note", "--note")
        search = self.search_entry(entry_id)
        candidates = search["payload"].get("candidates", [])
        if not 1 <= candidate <= len(candidates):
            raise NotFound(f"search {entry_id} has no candidate {candidate} (it has {len(candidates)})")
        if search["actor"] == principal.name:
            self.access.record_denial(principal, "review", "the searcher may not review their own search",
                                      {"search": entry_id, "candidate": candidate})
            raise Conflict("you made this search; a second person must review it")
        chosen = candidates[candidate - 1]
        with ctx.writing() as session:
            if session.execute(select(Review.id).where(
                    Review.search_entry_id == entry_id, Review.candidate_rank == candidate,
                    Review.reviewer == principal.name)).first():
                raise AlreadyExists(f"you already reviewed candidate {candidate} of search {entry_id}")
            entry = ctx.ledger.append(session, actor=principal.name, action="review", payload={
                "search": entry_id, "candidate": candidate, "subject": chosen["subject"],
                "subject_id": chosen["subject_id"], "score": chosen["score"], "decision": decision, "note": note,
                "mode": search["payload"].get("mode"), "searched_by": search["actor"]})
            session.add(Review(search_entry_id=entry_id, candidate_rank=candidate, subject=chosen["subject"],
                               decision=decision, reviewer=principal.name, note=note, created_at=utcnow(),
                               ledger_entry=entry.entry_id))
            session.commit()
        ctx.ledger.note_committed(entry)
        return {"ledger_entry": entry.entry_id, "search": entry_id, "candidate": candidate,
                "subject": chosen["subject"], "decision": decision, "status": self.review_status(entry_id, by=by)}

    def review_status(self, entry_id: str, *, by: Principal | None = None) -> list[dict]:
        """Each candidate of a search with its reviewers' decisions and the resulting status."""
        self.access.authorize(by, "search.read", search=entry_id)
        search = self.search_entry(entry_id)
        with self.ctx.sessions() as session:
            reviews = session.execute(select(Review).where(Review.search_entry_id == entry_id)
                                      .order_by(Review.id)).scalars().all()
        status = []
        for candidate in search["payload"].get("candidates", []):
            decisions = [{"reviewer": r.reviewer, "decision": r.decision, "note": r.note, "at": iso(r.created_at)}
                         for r in reviews if r.candidate_rank == candidate["rank"]]
            status.append({**candidate, "reviews": decisions, "status": candidate_status(decisions)})
        return status

    def search_record(self, entry_id: str, *, by: Principal | None = None) -> dict:
        """A past search as ledgered (who, when, why, gallery, threshold, outcome) with each candidate's
        reviews and status. The probe image is not part of it: it is kept only where the policy says so."""
        candidates = self.review_status(entry_id, by=by)
        search = self.search_entry(entry_id)
        payload = search["payload"]
        fields = ("gallery", "purpose", "case", "authorisation", "mode", "decision", "threshold", "target_fpir",
                  "threshold_supported", "gallery_size", "probe_sha256", "probe_quality", "model_id",
                  "calibration_id", "probe_expires", "galleries", "refused", "calibration_source",
                  "threshold_extrapolated", "extrapolation_factor", "predicted_fpir", "threshold_explanation",
                  "meaning")
        return {"ledger_entry": entry_id, "searched_by": search["actor"], "searched_at": search["created_at"],
                **{key: payload.get(key) for key in fields}, "candidates": candidates}

    def recent_searches(self, *, limit: int = 50, by: Principal | None = None) -> list[dict]:
        """The newest searches that returned candidates, newest first, with how many still await review."""
        self.access.authorize(by, "search.read")
        entries = [e for e in self.ctx.ledger.entries(action="search") if e["payload"].get("candidates")]
        entries = entries[-limit:][::-1] if limit else entries[::-1]
        with self.ctx.sessions() as session:
            reviewed = {(r[0], r[1]) for r in session.execute(select(Review.search_entry_id, Review.candidate_rank)
                        .where(Review.search_entry_id.in_([e["entry_id"] for e in entries])))}
        return [{"ledger_entry": e["entry_id"], "searched_by": e["actor"], "searched_at": e["created_at"],
                 "gallery": e["payload"].get("gallery"), "purpose": e["payload"].get("purpose"),
                 "case": e["payload"].get("case"), "mode": e["payload"].get("mode"),
                 "decision": e["payload"].get("decision"), "candidates": len(e["payload"]["candidates"]),
                 "unreviewed": sum(1 for c in e["payload"]["candidates"]
                                   if (e["entry_id"], c["rank"]) not in reviewed)} for e in entries]

    def search_entry(self, entry_id: str) -> dict:
        """The ledger entry of a search that has candidates; NotFound otherwise."""
        with self.ctx.sessions() as session:
            row = session.execute(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).scalar_one_or_none()
        if row is None or row.action != "search":
            raise NotFound(f"no search with ledger entry {entry_id!r}")
        entry = entry_as_dict(row)
        if entry["payload"].get("decision") == "failed":
            raise NotFound(f"search {entry_id} failed on its probe and has no candidates")
        return entry
