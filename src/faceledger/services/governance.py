"""Retention and erasure: expired records purged on schedule; a person erased by face or by subject."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import delete, select

from ..errors import NotFound, PolicyViolation
from ..policy import Principal
from ..retention import Removal, delete_images, images_of_subjects, purge_expired
from ..store import FaceRecord, Gallery, Maintenance, Probe, Subject
from ..store.queries import face_subjects
from .access import Access
from .calibrations import Calibrations
from .context import Context, ImageSource, require_text, utcnow
from .indexes import IndexCache


class Governance:
    def __init__(self, ctx: Context, access: Access, indexes: IndexCache, calibrations: Calibrations) -> None:
        self.ctx = ctx
        self.access = access
        self.indexes = indexes
        self.calibrations = calibrations

    # -- retention -------------------------------------------------------------------------------

    def purge(self, *, by: Principal | None = None, now: datetime | None = None) -> dict:
        """Delete expired images, faces, embeddings and probes; update the index; ledger a summary."""
        principal = self.access.authorize(by, "purge")
        return self._purge(principal.name, now or utcnow())

    def _purge(self, actor: str, now: datetime) -> dict:
        ctx = self.ctx
        with ctx.writing() as session:
            removal = purge_expired(session, now)
            session.merge(Maintenance(key="last_purge_at", value=now.isoformat()))
            entry = ctx.ledger.append(session, actor=actor, action="purge", payload={
                "at": now.isoformat(), **removal.summary(),
                "galleries": {str(g): len(ids) for g, ids in removal.face_ids_by_gallery.items()}})
            last = entry
            for start in range(0, len(removal.probe_images), 1000):  # kept probe images went with their probes
                last = ctx.ledger.append(session, actor=actor, action="probe.image.delete", payload={
                    "reason": "retention", "searches": removal.probe_images[start:start + 1000],
                    "at": now.isoformat()})
            self.indexes.discard_files(removal)  # a kill after the commit must not leave them on disk
            session.commit()
        ctx.ledger.note_committed(last)
        self.indexes.refresh(removal)
        self.calibrations.forget(list(removal.face_ids_by_gallery))
        return {"ledger_entry": entry.entry_id, **removal.summary()}

    def purge_if_overdue(self) -> None:
        """The scheduled purge: runs when the last one is older than FACELEDGER_PURGE_INTERVAL_HOURS."""
        with self.ctx.sessions() as session:
            last = session.get(Maintenance, "last_purge_at")
        now = utcnow()
        if last is not None and now - datetime.fromisoformat(last.value) < timedelta(
                hours=self.ctx.settings.purge_interval_hours):
            return
        self._purge("system (scheduled retention)", now)

    # -- erasure ---------------------------------------------------------------------------------

    def erase(self, *, reason: str | None, face: ImageSource | None = None, subject: str | None = None,
              gallery: str | None = None, image_name: str | None = None, dry_run: bool = False,
              by: Principal | None = None) -> dict:
        """Remove a person: every enrolled subject whose face matches `face` above a strict threshold (or
        the named subject), with all their images, faces, embeddings and matching probes. Returns a receipt.
        With dry_run, only lists what would be removed (the look-up is ledgered all the same)."""
        ctx = self.ctx
        principal = self.access.authorize(by, "erase", gallery=gallery)
        with self.access.refusals(principal, "erase", {"gallery": gallery, "subject": subject}):
            reason = require_text(reason, "a reason", "--reason")
            if (face is None) == (subject is None):
                raise PolicyViolation("erase needs exactly one of --face IMAGE or --subject NAME")
            if subject is not None and gallery is None:
                raise PolicyViolation("erasing by subject needs --gallery")
        with ctx.sessions() as session:
            names = [gallery] if gallery else list(session.execute(select(Gallery.name).where(
                Gallery.model_id == ctx.model_id).order_by(Gallery.name)).scalars())
            galleries = [ctx.gallery(session, name) for name in names]
        request = {"reason": reason, "galleries": names, "method": "face" if face is not None else "subject",
                   "dry_run": dry_run}
        if face is not None:
            with self.access.failures(principal, "erase", request):
                loaded = ctx.load(face, image_name)
                request["probe_sha256"] = loaded.sha256
                vector = ctx.probe_face(loaded).embedding
            matches, probe_ids = self._matches_for_erasure(galleries, vector)
        else:
            matches = self._subject_for_erasure(galleries[0], subject)
            probe_ids = self._probes_of_subject(galleries[0], matches[0]["subject_id"])
        if dry_run and (matches or probe_ids):
            entry = ctx.ledger.record(actor=principal.name, action="erase", payload={
                **request, "outcome": "preview", "probes": len(probe_ids),
                "subjects": [{k: m[k] for k in ("gallery", "subject_id", "score", "threshold")} for m in matches]})
            # A preview is not a search: it says which records would go, never who they are, so that
            # erasure cannot serve as an identification without a purpose.
            withheld = [{k: m[k] for k in ("gallery", "subject_id", "score", "threshold")} for m in matches]
            return {"receipt": entry.entry_id, "reason": reason, "dry_run": True, "images": 0, "faces": 0,
                    "probes": 0, "probes_matching": len(probe_ids), "subjects": withheld,
                    "names": "withheld: a preview is not a search"}
        return self._erase_matches(principal, request, matches, probe_ids)

    def _matches_for_erasure(self, galleries: list[Gallery], vector: np.ndarray) -> tuple[list[dict], list[int]]:
        """Subjects with any face at or above the strict threshold, per gallery; and matching probes."""
        matches, probe_ids = [], []
        threshold = self.calibrations.current.threshold_for_fmr(self.ctx.settings.erase_target_fmr)
        with self.ctx.writing() as session:
            for gallery in galleries:
                gallery = session.get(Gallery, gallery.id)
                index = self.indexes.get(session, gallery)
                if len(index):
                    scores, ids = index.search(vector[None, :], min(len(index), 4096))
                    hits = {int(i): float(sc) for sc, i in zip(scores[0], ids[0]) if i >= 0 and sc >= threshold.score}
                    owners = face_subjects(session, set(hits))
                    best: dict[int, dict] = {}
                    for fid, score in hits.items():
                        sid, name, _ = owners[fid]
                        if sid not in best or score > best[sid]["score"]:
                            best[sid] = {"gallery": gallery.name, "subject_id": sid, "subject": name,
                                         "score": round(score, 6), "threshold": threshold.score}
                    matches.extend(best.values())
                probe_ids.extend(matching_probes(session, vector[None, :], threshold.score,
                                                 where=Probe.gallery_id == gallery.id))
        return matches, probe_ids

    def _subject_for_erasure(self, gallery: Gallery, subject: str) -> list[dict]:
        with self.ctx.sessions() as session:
            query = select(Subject).where(Subject.gallery_id == gallery.id)
            query = query.where(Subject.id == int(subject)) if str(subject).isdigit() else query.where(
                Subject.name == subject)
            row = session.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFound(f"gallery {gallery.name!r} has no subject {subject!r}; nothing was removed")
        return [{"gallery": gallery.name, "subject_id": row.id, "subject": row.name, "score": None, "threshold": None}]

    def _probes_of_subject(self, gallery: Gallery, subject_id: int) -> list[int]:
        """The gallery's probes that name the subject among their candidates, or whose face matches one of
        the subject's faces above the strict erasure threshold: the person's searches go with them."""
        threshold = self.calibrations.current.threshold_for_fmr(self.ctx.settings.erase_target_fmr).score
        with self.ctx.sessions() as session:
            faces = [np.frombuffer(blob, np.float32) for blob in session.execute(
                select(FaceRecord.embedding).where(FaceRecord.subject_id == subject_id)).scalars()]
            own = np.stack(faces) if faces else np.empty((0, self.ctx.pipeline.embedder.dim), np.float32)
            # Every gallery's probes: a search of several galleries names a subject of any of them.
            return matching_probes(session, own, threshold, naming=subject_id)

    def _erase_matches(self, principal: Principal, request: dict, matches: list[dict], probe_ids: list[int]) -> dict:
        ctx = self.ctx
        if not matches and not probe_ids:
            ctx.ledger.record(actor=principal.name, action="erase", payload={**request, "outcome": "no match"})
            raise NotFound("no enrolled face matches this person above the strict erasure threshold; "
                           "nothing was removed")
        removal = Removal()
        with ctx.writing() as session:
            delete_images(session, images_of_subjects(session, [m["subject_id"] for m in matches]), removal)
            if probe_ids:
                removal.probes = session.execute(delete(Probe).where(Probe.id.in_(probe_ids))).rowcount
            # The ledger keeps ids and counts, not the erased person's name.
            entry = ctx.ledger.append(session, actor=principal.name, action="erase", payload={
                **request, "outcome": "erased", **removal.summary(),
                "subjects": [{k: m[k] for k in ("gallery", "subject_id", "score", "threshold")} for m in matches]})
            self.indexes.discard_files(removal)  # a kill after the commit must not leave them on disk
            session.commit()
        ctx.ledger.note_committed(entry)
        self.indexes.refresh(removal)
        self.calibrations.forget(list(removal.face_ids_by_gallery))
        counts = removal.summary()
        return {"receipt": entry.entry_id, "reason": request["reason"], "dry_run": False, "images": counts["images"],
                "faces": counts["faces"], "probes": counts["probes"], "subjects": matches}


PROBE_BATCH = 2048
"""Probes read and compared per step of an erasure's scan: memory stays bounded however many are kept."""


def matching_probes(session, faces: np.ndarray, threshold: float, *, where=None, naming: int | None = None) -> list[int]:
    """Ids of kept probes whose embedding scores at or above `threshold` against any of `faces` (rows), or
    that list subject `naming` among their candidates. Reads only id, embedding and candidates (never a
    kept image), in batches, each compared in one matrix product."""
    query = select(Probe.id, Probe.embedding, Probe.candidates).order_by(Probe.id)
    if where is not None:
        query = query.where(where)
    found: list[int] = []
    rows = session.execute(query.execution_options(yield_per=PROBE_BATCH))
    for batch in rows.partitions():
        ids = [row.id for row in batch]
        named = [naming is not None and any(c.get("subject_id") == naming for c in row.candidates or [])
                 for row in batch]
        close = np.zeros(len(batch), bool)
        if len(faces):
            vectors = np.stack([np.frombuffer(row.embedding, np.float32) for row in batch])
            close = (vectors @ faces.T).max(axis=1) >= threshold
        found.extend(pid for pid, by_name, by_face in zip(ids, named, close) if by_name or by_face)
    return found
