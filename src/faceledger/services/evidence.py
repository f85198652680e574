"""Evidence packages: everything about one search in one self-contained HTML file, ledgered when exported.

The record is the review service's (`search_record`: who, when, why, threshold, candidates, reviews);
this adds the probe photo when the store still holds it, each candidate's face crop, what an erasure
withheld since, and a segment of the hash chain from the search to the first anchor after it
(evidence/proof.py), then renders it (evidence/render.py) and ledgers the export with the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import select

from ..errors import FaceledgerError, NotFound
from ..evidence.proof import ERASED, build_proof, segment_end
from ..evidence.render import render
from ..policy import PERMISSIONS, Principal
from ..store import LedgerEntry, Probe, Review
from .access import Access
from .context import Context, iso, utcnow
from .galleries import Galleries
from .review import Reviews

READABLE = ("search", "review", "audit.anchor", "evidence.export")
"""Ledger records every exporting role may read (searches and their reviews through `search.read`)."""
IMAGE_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"))


class Evidence:
    def __init__(self, ctx: Context, access: Access, reviews: Reviews, galleries: Galleries) -> None:
        self.ctx = ctx
        self.access = access
        self.reviews = reviews
        self.galleries = galleries

    def export_evidence(self, entry_id: str, *, by: Principal | None = None) -> dict:
        """The evidence package of a search: {"html", "sha256", "bytes", "filename", "ledger_entry"}. The
        export is ledgered (`evidence.export`: who, which search, the file's sha256) before it is returned."""
        principal = self.access.authorize(by, "evidence", search=entry_id)
        record = self.reviews.search_record(entry_id, by=principal)
        search = self.reviews.search_entry(entry_id)
        erasures = self._erasures()
        may_see_faces = principal.role in PERMISSIONS["face.view"]
        candidates = [self._candidate(c, search, erasures, principal, may_see_faces) for c in record["candidates"]]
        rows, reason = self._segment(search["seq"])
        withheld = self._withheld(rows, erasures, principal)
        own = {entry_id, *self._review_entries(entry_id)}
        exported_at = utcnow().isoformat(timespec="seconds")
        package = {
            "record": record, "candidates": candidates, "probe": self._probe(search, principal, may_see_faces),
            "exported_by": principal.name, "exported_role": principal.role, "exported_at": exported_at,
            "version": _version(), "own_entries": own,
            "proof": build_proof(entry_id, rows, reason=reason, withheld=withheld, exported_at=exported_at)}
        data = render(package).encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        entry = self.ctx.ledger.record(actor=principal.name, action="evidence.export", payload={
            "search": entry_id, "sha256": digest, "bytes": len(data), "segment": [rows[0].seq, rows[-1].seq],
            "segment_ends_at": reason, "withheld_entries": sorted(withheld),
            "probe_included": bool(package["probe"].get("data")),
            "erased_candidates": sum(1 for c in candidates if c.get("erased"))})
        return {"html": data, "sha256": digest, "bytes": len(data), "ledger_entry": entry.entry_id,
                "search": entry_id, "filename": f"evidence-{entry_id}.html"}

    # -- the parts ---------------------------------------------------------------------------------

    def _erasures(self) -> dict[int, dict]:
        """subject id -> {"on": date, "receipt": entry id, "at": time} for every subject erased so far."""
        found: dict[int, dict] = {}
        for entry in self.ctx.ledger.entries(action="erase"):
            if entry["payload"].get("outcome") != "erased":
                continue
            for subject in entry["payload"].get("subjects") or []:
                found.setdefault(subject.get("subject_id"), {
                    "on": entry["created_at"][:10], "receipt": entry["entry_id"], "at": entry["created_at"]})
        return found

    def _candidate(self, candidate: dict, search: dict, erasures: dict[int, dict], principal: Principal,
                   may_see_faces: bool) -> dict:
        erased = erasures.get(candidate.get("subject_id"))
        if erased and erased["at"] > search["created_at"]:
            kept = ("rank", "gallery", "subject_id", "score", "false_match_rate", "false_match_rate_upper",
                    "gallery_false_positive_chance", "above_threshold", "label", "status")
            reviews = [{k: r.get(k) for k in ("reviewer", "decision", "at")} for r in candidate.get("reviews", [])]
            return {**{k: candidate.get(k) for k in kept}, "subject": None, "erased": erased, "reviews": reviews}
        shown = dict(candidate)
        if not may_see_faces:
            shown["crop_reason"] = f"the {principal.role} role may not view faces"
        else:
            try:
                shown["crop"] = self.galleries.face_crop(int(candidate["face_id"]), by=principal)
            except NotFound as exc:
                shown["crop_reason"] = f"the store no longer holds it ({exc})"
        return shown

    def _probe(self, search: dict, principal: Principal, may_see_faces: bool) -> dict:
        """The probe photo when the store still has it, else why not."""
        with self.ctx.sessions() as session:
            probe = session.execute(select(Probe).where(Probe.entry_id == search["entry_id"])).scalar_one_or_none()
            image = getattr(probe, "image", None) if probe is not None else None
        sha = search["payload"].get("probe_sha256") or ""
        if probe is None:
            expires = search["payload"].get("probe_expires")
            past = expires and expires < iso(utcnow())
            return {"reason": f"its record was deleted when its retention ended ({expires})" if past else
                    "its record was deleted (an erasure, or a purge)"}
        if image is None:
            crop = probe.review_image if may_see_faces else None
            return {"reason": "the gallery's policy keeps no probe photos" + (
                "; only the face crop kept until the search is reviewed" if crop else ""), "review_crop": crop}
        if not may_see_faces:
            return {"reason": f"it is kept, but the {principal.role} role may not view faces"}
        mime = next((m for magic, m in IMAGE_TYPES if image.startswith(magic)), None)
        if mime is None and image[:4] == b"RIFF" and image[8:12] == b"WEBP":
            mime = "image/webp"
        if mime is None:
            return {"reason": f"it is kept, in a format a browser cannot show (sha256 {sha})"}
        return {"data": image, "mime": mime, "sha256": hashlib.sha256(image).hexdigest()}

    def _withheld(self, rows: list[LedgerEntry], erasures: dict[int, dict], principal: Principal) -> dict[int, str]:
        """seq -> why, for the segment's entries whose content the package leaves out: those naming a person
        erased since, and (for a role that may not read the audit log) records other than searches,
        reviews, anchors and exports. Their hashes stay, but do not bind what comes before them."""
        may_read_ledger = principal.role in PERMISSIONS["audit"]
        withheld = {}
        for row in rows:
            if _names_erased(row, erasures):
                withheld[row.seq] = ERASED
            elif not may_read_ledger and row.action not in READABLE:
                withheld[row.seq] = f"the {principal.role} role may not read the audit log"
        return withheld

    def _review_entries(self, entry_id: str) -> set[str]:
        with self.ctx.sessions() as session:
            return set(session.execute(select(Review.ledger_entry).where(Review.search_entry_id == entry_id))
                       .scalars())

    def _segment(self, search_seq: int) -> tuple[list[LedgerEntry], str]:
        """The chain entries from the search to the first anchor after it (or the head), oldest first."""
        head = self.ctx.ledger.last()
        anchors = [e["seq"] for e in self.ctx.ledger.entries(action="audit.anchor")]
        end, reason = segment_end(search_seq, anchors, head[0] if head else search_seq)
        with self.ctx.sessions() as session:
            rows = list(session.execute(select(LedgerEntry).where(LedgerEntry.seq >= search_seq,
                                                                   LedgerEntry.seq <= end)
                                        .order_by(LedgerEntry.seq)).scalars())
            session.expunge_all()
        if not rows or rows[0].seq != search_seq:
            raise FaceledgerError(f"the ledger has no entry {search_seq}; run `faceledger audit verify`")
        return rows, reason


def _names_erased(row: LedgerEntry, erasures: dict[int, dict]) -> bool:
    """Whether a ledger entry made before an erasure names (subject and id) a person erased since."""
    if not erasures or row.action in ("erase", "audit.anchor"):
        return False
    try:
        payload = json.loads(row.payload)
    except ValueError:
        return False

    def walk(value) -> bool:
        if isinstance(value, dict):
            erased = erasures.get(value.get("subject_id")) if "subject" in value else None
            if erased and erased["at"] > row.created_at:
                return True
            return any(walk(v) for v in value.values())
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return False

    return walk(payload)


def _version() -> str:
    try:
        return version("faceledger")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "(version unknown)"
