"""Second-person review of search candidates: the probe kept for the reviewer (and deleted once the search
is reviewed), blind review, the review queue, and reading past searches back from the ledger.

A search is *reviewed* (closed) when every candidate it showed has a confirm or a reject from a reviewer;
an "inconclusive" leaves it open for another reviewer. On a blind-review gallery a reviewer sees the
probe and the candidates' faces in a shuffled-but-stable order, without rank, score, false-match rate or
other reviewers' decisions, until they have recorded a decision on every candidate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from sqlalchemy import JSON, cast, func, literal, select
from sqlalchemy.orm import Session

from ..errors import AlreadyExists, Conflict, FaceledgerError, Gone, NotFound
from ..ledger import entry_as_dict
from ..policy import Principal, candidate_status, check_decision
from ..store import Gallery, LedgerEntry, Probe, Review
from ..store.open_reviews import QueueFilter, close_review, queue_page
from .access import Access
from .context import Context, iso, optional_text, utcnow

CLOSING = frozenset({"confirm", "reject"})
"""Decisions that settle a candidate; a search is reviewed when each of its candidates has one."""

BLIND_FIELDS = ("key", "subject", "subject_id", "face_id", "gallery", "label")
"""What a blind reviewer sees of a candidate before deciding: whom, and the face; no rank, no score."""



def candidate_key(entry_id: str, rank: int, subject_id) -> str:
    """A candidate's name in a blind review: stable, and says nothing of its rank."""
    return hashlib.sha256(f"{entry_id}:{rank}:{subject_id}".encode()).hexdigest()[:12]


class Reviews:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access

    # -- deciding ------------------------------------------------------------------------------------

    def review(self, entry_id: str, *, candidate: int | None = None, key: str | None = None, decision: str,
               note: str | None = None, by: Principal | None = None) -> dict:
        """A reviewer's decision on one candidate of a search (by rank, or by its blind-review `key`);
        never the searcher's own. When it closes the search, the probe crop kept for review is deleted
        in the same transaction (ledgered as `probe.image.delete`, reason "reviewed")."""
        ctx = self.ctx
        principal = self.access.authorize(by, "review", search=entry_id, candidate=candidate or key)
        decision = check_decision(decision)
        with self.access.refusals(principal, "review", {"search": entry_id, "candidate": candidate or key}):
            note = optional_text(note, "the review note", "--note")
        search = self.search_entry(entry_id)
        candidates = search["payload"].get("candidates", [])
        chosen = self._candidate(entry_id, candidates, candidate, key)
        rank = chosen["rank"]
        if search["actor"] == principal.name:
            self.access.record_denial(principal, "review", "the searcher may not review their own search",
                                      {"search": entry_id, "candidate": rank})
            raise Conflict("you made this search; a second person must review it")
        with ctx.sessions() as session:
            blind = self._blind(session, search)
        if blind and key is None:  # a rank would tell a blind reviewer which candidate the engine ranked first
            raise FaceledgerError("this gallery reviews blind: name the candidate by its key, not its rank "
                                  "(rank and score are shown once you have decided on every candidate)")
        with ctx.writing() as session:
            if session.execute(select(Review.id).where(
                    Review.search_entry_id == entry_id, Review.candidate_rank == rank,
                    Review.reviewer == principal.name)).first():
                raise AlreadyExists(f"you already reviewed candidate {rank} of search {entry_id}")
            entry = ctx.ledger.append(session, actor=principal.name, action="review", payload={
                "search": entry_id, "candidate": rank, "subject": chosen["subject"],
                "subject_id": chosen["subject_id"], "score": chosen["score"], "decision": decision, "note": note,
                "mode": search["payload"].get("mode"), "searched_by": search["actor"], "blind": blind})
            session.add(Review(search_entry_id=entry_id, candidate_rank=rank, subject=chosen["subject"],
                               decision=decision, reviewer=principal.name, note=note, created_at=utcnow(),
                               ledger_entry=entry.entry_id, blind=blind))
            session.flush()
            last = entry
            if _settled(session, search):  # the search leaves the queue with the decision that settles it
                close_review(session, entry_id)
                last = self._delete_crop(session, principal, search) or entry
            session.commit()
        ctx.ledger.note_committed(last)
        status = self.review_status(entry_id, by=principal)
        revealed = all("score" in c for c in status)
        return {"ledger_entry": entry.entry_id, "search": entry_id, "candidate": rank if revealed else None,
                "key": candidate_key(entry_id, rank, chosen["subject_id"]), "subject": chosen["subject"],
                "decision": decision, "blind": blind, "status": status}

    def _candidate(self, entry_id: str, candidates: list[dict], rank: int | None, key: str | None) -> dict:
        if (rank is None) == (key is None):
            raise FaceledgerError("name the candidate by its rank or by its key (one of them)")
        if key is not None:
            for c in candidates:
                if candidate_key(entry_id, c["rank"], c["subject_id"]) == key:
                    return c
            raise NotFound(f"search {entry_id} has no candidate with key {key!r}")
        if not 1 <= rank <= len(candidates):
            raise NotFound(f"search {entry_id} has no candidate {rank} (it has {len(candidates)})")
        return candidates[rank - 1]

    def _blind(self, session: Session, search: dict) -> bool:
        """Whether any gallery the search covered now asks for blind review."""
        return bool(session.execute(select(Gallery.id).where(
            Gallery.id.in_(_gallery_ids(search["payload"])), Gallery.blind_review.is_(True))).first())

    def _delete_crop(self, session: Session, principal: Principal, search: dict):
        """Delete the probe crop kept for review of a search now reviewed (every candidate has a confirm or
        reject), unless the galleries keep probe images anyway; the ledger entry, or None."""
        entry_id = search["entry_id"]
        probe = session.execute(select(Probe).where(Probe.entry_id == entry_id)).scalar_one_or_none()
        if probe is None or probe.review_image is None:
            return None
        keep_all = session.execute(select(Gallery.keep_probe_images).where(
            Gallery.id.in_(_gallery_ids(search["payload"])))).scalars().all()
        if keep_all and all(keep_all):
            return None  # the gallery keeps probe images until retention: the crop goes with them
        probe.review_image = None
        return self.ctx.ledger.append(session, actor=principal.name, action="probe.image.delete", payload={
            "reason": "reviewed", "search": entry_id, "searches": [entry_id], "probe_sha256": probe.sha256})

    # -- reading -------------------------------------------------------------------------------------

    def review_status(self, entry_id: str, *, by: Principal | None = None) -> list[dict]:
        """Each candidate of a search with its reviewers' decisions and the resulting status. A reviewer
        of a blind-review gallery who has not decided on every candidate gets them without rank, score
        or others' decisions, in a shuffled-but-stable order."""
        principal = self.access.authorize(by, "search.read", search=entry_id)
        search = self.search_entry(entry_id)
        with self.ctx.sessions() as session:
            reviews = session.execute(select(Review).where(Review.search_entry_id == entry_id)
                                      .order_by(Review.id)).scalars().all()
            blind = self._blind(session, search)
        status = []
        for candidate in search["payload"].get("candidates", []):
            decisions = [{"reviewer": r.reviewer, "decision": r.decision, "note": r.note, "at": iso(r.created_at),
                          "blind": bool(r.blind)} for r in reviews if r.candidate_rank == candidate["rank"]]
            status.append({**candidate, "key": candidate_key(entry_id, candidate["rank"], candidate["subject_id"]),
                           "reviews": decisions, "status": candidate_status(decisions)})
        if blind and principal.role == "reviewer":
            mine = {r.candidate_rank for r in reviews if r.reviewer == principal.name}
            if any(c["rank"] not in mine for c in status):
                return sorted(({**{k: c.get(k) for k in BLIND_FIELDS},
                                "reviews": [d for d in c["reviews"] if d["reviewer"] == principal.name]}
                               for c in status), key=lambda c: c["key"])
        return status

    def search_record(self, entry_id: str, *, by: Principal | None = None) -> dict:
        """A past search as ledgered (who, when, why, gallery, threshold, outcome) with each candidate's
        reviews and status, whether the review is blind (and, for this reader, still hidden), and what
        became of the probe image."""
        candidates = self.review_status(entry_id, by=by)
        search = self.search_entry(entry_id)
        payload = search["payload"]
        fields = ("gallery", "purpose", "case", "authorisation", "mode", "decision", "threshold", "target_fpir",
                  "threshold_supported", "gallery_size", "probe_sha256", "probe_quality", "model_id",
                  "calibration_id", "probe_expires", "galleries", "refused", "calibration_source",
                  "threshold_extrapolated", "extrapolation_factor", "predicted_fpir", "threshold_explanation",
                  "meaning")
        with self.ctx.sessions() as session:
            blind = self._blind(session, search)
            probe = self._probe_state(session, search)
        hidden = any("score" not in c for c in candidates)
        return {"ledger_entry": entry_id, "searched_by": search["actor"], "searched_at": search["created_at"],
                **{key: payload.get(key) for key in fields}, "blind_review": blind, "scores_hidden": hidden,
                "probe_image": probe, "candidates": candidates}

    def recent_searches(self, *, limit: int = 50, before: str | None = None,
                        by: Principal | None = None) -> list[dict]:
        """The newest searches that returned candidates, newest first, with how many still await review; one
        page of `limit`, older than the search `before` (its ledger entry id) for the next page. Read newest
        first from the ledger's search entries by SQL, so a page costs a page, not the ledger."""
        self.access.authorize(by, "search.read")
        if not 1 <= limit <= 500:
            raise FaceledgerError("the page size must be between 1 and 500")
        with self.ctx.sessions() as session:
            query = (select(LedgerEntry).where(LedgerEntry.action == "search", _candidate_count(session) > 0)
                     .order_by(LedgerEntry.seq.desc()).limit(limit))
            if before is not None:
                seq = session.execute(select(LedgerEntry.seq).where(
                    LedgerEntry.entry_id == before, LedgerEntry.action == "search")).scalar()
                if seq is None:
                    raise NotFound(f"no search with ledger entry {before!r} to page from")
                query = query.where(LedgerEntry.seq < seq)
            entries = [entry_as_dict(row) for row in session.execute(query).scalars()]
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

    # -- the probe image -----------------------------------------------------------------------------

    def review_probe(self, entry_id: str, *, by: Principal | None = None) -> bytes:
        """The JPEG of the probe's face kept for review; Gone (HTTP 410) saying plainly why when it is not there."""
        self.access.authorize(by, "face.view", search=entry_id)
        search = self.search_entry(entry_id)
        with self.ctx.sessions() as session:
            image = session.execute(select(Probe.review_image).where(Probe.entry_id == entry_id)).scalar()
            if image is not None:
                return image
            state = self._probe_state(session, search)
        raise Gone(state["reason"])

    def _probe_state(self, session: Session, search: dict) -> dict:
        """{"kept": bool, "reason": why not (plain words), "deleted_at": when, if it was deleted}."""
        entry_id, payload = search["entry_id"], search["payload"]
        row = session.execute(select(Probe.id, Probe.review_image.is_not(None)).where(
            Probe.entry_id == entry_id)).first()
        if row is not None and row[1]:
            return {"kept": True, "reason": None, "deleted_at": None, "until": payload.get("probe_expires")}
        deleted = _deletion(session, entry_id)
        if row is not None:
            if deleted is not None:
                return {"kept": False, "deleted_at": deleted["created_at"], "reason":
                        f"the probe image was deleted on {_day(deleted['created_at'])} after the search was "
                        "reviewed (every candidate has a reviewer's confirm or reject)"}
            if not payload.get("candidates"):
                return {"kept": False, "deleted_at": None, "reason":
                        "not kept: the search returned no candidate, so there is nothing to review"}
            return {"kept": False, "deleted_at": None, "reason":
                    "not kept: this gallery keeps only a hash and an embedding of each probe, not its image"}
        expires = payload.get("probe_expires")
        if deleted is not None or (expires and datetime.fromisoformat(expires) <= utcnow()):
            when = deleted["created_at"] if deleted else expires
            return {"kept": False, "deleted_at": when, "reason":
                    f"the probe was deleted on {_day(when)} when its retention ended: its image, hash and "
                    "embedding are gone; the ledger keeps the search's record"}
        return {"kept": False, "deleted_at": None, "reason":
                "the probe was deleted by an erasure: its image, hash and embedding are gone"}

    # -- the queue -----------------------------------------------------------------------------------

    def review_queue(self, *, gallery: str | None = None, case: str | None = None,
                     older_than_hours: float | None = None, limit: int = 20, offset: int = 0,
                     by: Principal | None = None) -> dict:
        """Searches with candidates awaiting a decision (a candidate without a confirm or reject), oldest
        first, filtered by gallery, case (case-insensitive, part of it) and age; one page of them and the
        total. Read from the table of open reviews (store/open_reviews.py), so the time follows the
        searches still open, not every search ever made."""
        self.access.authorize(by, "search.read")
        if limit < 1 or limit > 500 or offset < 0:
            raise FaceledgerError("the page size must be between 1 and 500 and the offset not negative")
        if older_than_hours is not None and older_than_hours < 0:
            raise FaceledgerError("the age must be zero or more hours")
        cutoff = (utcnow() - timedelta(hours=older_than_hours)).isoformat(timespec="microseconds") \
            if older_than_hours else None
        with self.ctx.sessions() as session:
            total, rows = queue_page(session, QueueFilter(gallery=gallery, case=case, created_before=cutoff),
                                     limit=limit, offset=offset)
            ids = [row.entry_id for row in rows]
            settled: dict[str, set[int]] = {}
            touched: set[str] = set()
            for entry_id, rank, decision in session.execute(select(
                    Review.search_entry_id, Review.candidate_rank, Review.decision).where(Review.search_entry_id.in_(ids))):
                touched.add(entry_id)
                if decision in CLOSING:
                    settled.setdefault(entry_id, set()).add(rank)
            probes = dict(session.execute(select(Probe.entry_id, Probe.review_image.is_not(None)).where(
                Probe.entry_id.in_(ids))).all())
        page = []
        for row in rows:
            done = len({rank for rank in settled.get(row.entry_id, ()) if 1 <= rank <= row.candidates})
            page.append({
                "ledger_entry": row.entry_id, "searched_by": row.searched_by, "searched_at": row.created_at,
                "gallery": row.gallery, "purpose": row.purpose, "case": row.case_ref, "mode": row.mode,
                "candidates": row.candidates, "settled": done, "awaiting": row.candidates - done,
                "status": "in review" if row.entry_id in touched else "unreviewed",
                "probe_image": ("kept" if probes.get(row.entry_id) else "not kept" if row.entry_id in probes
                                else "deleted (retention or erasure)")})
        return {"total": total, "limit": limit, "offset": offset, "searches": page,
                "filters": {"gallery": gallery, "case": case, "older_than_hours": older_than_hours}}


def _candidate_count(session: Session):
    """How many candidates a search entry's payload lists, read by the database (NULL without a list)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.json_array_length(cast(LedgerEntry.payload, JSON).op("->", return_type=JSON)(literal("candidates")))
    return func.json_array_length(LedgerEntry.payload, "$.candidates")


def _settled(session: Session, search: dict) -> bool:
    """Whether every candidate of the search (ranks 1..n) has a reviewer's confirm or reject."""
    done = set(session.execute(select(Review.candidate_rank).where(
        Review.search_entry_id == search["entry_id"], Review.decision.in_(CLOSING))).scalars())
    return all(c["rank"] in done for c in search["payload"].get("candidates", []))


def _gallery_ids(payload: dict) -> list[int]:
    return list(payload.get("gallery_ids") or [payload.get("gallery_id")])


def _day(when: str) -> str:
    return when[:16].replace("T", " ") + " UTC"


def _deletion(session: Session, entry_id: str) -> dict | None:
    """The newest `probe.image.delete` entry naming this search (after its review, or at its retention)."""
    rows = session.execute(select(LedgerEntry).where(
        LedgerEntry.action == "probe.image.delete", LedgerEntry.payload.contains(entry_id))
        .order_by(LedgerEntry.seq.desc())).scalars()
    for row in rows:
        if entry_id in json.loads(row.payload).get("searches", []):
            return {"created_at": row.created_at, "entry_id": row.entry_id}
    return None
