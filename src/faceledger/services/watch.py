"""Live watch: a stream, a camera or a file played in real time, its tracks searched as they form.

Opt-in: only galleries an admin has allowed for live use (`faceledger video allow-live`) can be
watched, and only with an authorisation id. The start and the stop of every watch session are
ledgered ("watch.start", "watch.stop"); a track that clears the threshold raises an alert, ledgered
("watch.alert") in the transaction that searched it, printed, and posted to the webhook through the
spool (never lost while the webhook is down). Bystander tracks are counted, nothing more.

The opt-in is the gallery's `allow_live` column (schema revision 0003). A data directory of an earlier
release kept the list in `<home>/video/live-galleries.json`: on first use its galleries are carried into
the column once (ledgered as "video.allow_live.migrated") and the file is renamed `.migrated`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from ..errors import MissingField, PolicyViolation
from ..policy import Principal, check_purpose, gallery_policy
from ..store import Gallery
from ..video.decode import VideoError, frames, probe
from ..video.live import AlertSpool, check_webhook, redact_url
from ..video.shots import embedder, forget, observe, select_shots, template, thumbnail_jpeg
from ..video.track import Track, Tracker
from .access import Access
from .context import Context, require_text, utcnow
from .video import VideoSearch, check_every_ms

READY_SHOTS = 3
"""A live track is searched once it has this many usable observations (or when it ends, if sooner)."""
RETRY_SECONDS = 10.0
RECONNECTS = 5
"""Times in a row a live source that drops is opened again (after 1, 2, 4, 8, 16 s) before the watch ends."""


class Watching:
    def __init__(self, ctx: Context, access: Access, video: VideoSearch) -> None:
        self.ctx = ctx
        self.access = access
        self.video = video
        self.spool = AlertSpool(ctx.settings.home / "video" / "alert-spool.jsonl")
        self._carry_legacy_list()  # a data directory of an earlier release: its opt-in list, once

    # -- the opt-in list ----------------------------------------------------------------------------

    @property
    def _legacy_file(self) -> Path:
        return self.ctx.settings.home / "video" / "live-galleries.json"

    def live_galleries(self) -> list[str]:
        """The galleries allowed for live use (their `allow_live` column)."""
        self._carry_legacy_list()
        with self.ctx.sessions() as session:
            return list(session.execute(select(Gallery.name).where(Gallery.allow_live.is_(True))
                                        .order_by(Gallery.name)).scalars())

    def allow_live(self, gallery: str, *, allowed: bool = True, by: Principal | None = None) -> dict:
        """Allow (or stop allowing) live watching against a gallery (admin); ledgered with the change."""
        principal = self.access.authorize(by, "gallery.update", gallery=gallery)
        self._carry_legacy_list()
        with self.ctx.writing() as session:
            row = self.ctx.gallery(session, gallery)
            before, row.allow_live = bool(row.allow_live), bool(allowed)
            entry = self.ctx.ledger.append(session, actor=principal.name, action="video.allow_live",
                                           payload={"gallery": gallery, "allowed": bool(allowed), "before": before})
            session.commit()
        self.ctx.ledger.note_committed(entry)
        return {"gallery": gallery, "allow_live": bool(allowed), "before": before, "ledger_entry": entry.entry_id}

    def _carry_legacy_list(self) -> None:
        """Once per data directory: the legacy JSON list's galleries get `allow_live`, in one ledgered
        transaction, and the file is renamed `.migrated` before it commits (so no other process carries it
        again; a failed commit puts the file back)."""
        legacy = self._legacy_file
        if not legacy.is_file():
            return
        with self.ctx.writing() as session:  # the store's write lock orders processes doing this at once
            try:
                listed = json.loads(legacy.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return  # another process carried it while this one waited for the lock
            except (OSError, ValueError) as exc:
                raise PolicyViolation(f"{legacy} cannot be read ({exc}); fix or remove it (it lists the galleries "
                                      "allowed for live use)") from None
            rows = {g.name: g for g in session.execute(select(Gallery).where(Gallery.name.in_(list(listed)))).scalars()}
            for row in rows.values():
                row.allow_live = True
            entry = self.ctx.ledger.append(session, actor=self.ctx.settings.operator,
                                           action="video.allow_live.migrated", payload={
                                               "file": legacy.name, "galleries": sorted(rows),
                                               "not_found": sorted(set(listed) - set(rows)),
                                               "allowed_by": {k: v.get("by") for k, v in listed.items()
                                                              if isinstance(v, dict)}})
            done = legacy.with_suffix(".json.migrated")
            os.replace(legacy, done)
            try:
                session.commit()
            except BaseException:
                os.replace(done, legacy)
                raise
        self.ctx.ledger.note_committed(entry)

    # -- watching -----------------------------------------------------------------------------------

    def watch(self, source: str, *, gallery: str, purpose: str | None, case: str | None,
              authorisation: str | None, webhook: str | None = None, every_ms: float = 200, top_k: int = 5,
              realtime: bool | None = None, max_seconds: float | None = None,
              stop: threading.Event | None = None, on_alert: Callable[[dict], None] | None = None,
              reconnects: int = RECONNECTS, by: Principal | None = None) -> dict:
        """Watch until the source ends, `stop` is set or max_seconds of video have passed; returns a summary.

        A live source (not a file) that drops is opened again after 1, 2, 4, ... s, at most `reconnects`
        times in a row (the count starts again once frames arrive). A drop ends every track: a face still
        in view afterwards is a new track. The attempts are counted in the `watch.stop` entry (`reconnect_attempts`)."""
        ctx = self.ctx
        principal = self.access.authorize(by, "search", gallery=gallery)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "authorisation": authorisation,
                   "source": _source_label(source)}
        with self.access.refusals(principal, "watch", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            if authorisation is None or not str(authorisation).strip():
                raise MissingField("an authorisation id is required to watch live (--authorisation)")
            with ctx.sessions() as session:
                policy = gallery_policy(ctx.gallery(session, gallery))
            check_purpose(purpose, policy["purposes"], gallery)
            if not self._allowed_live(gallery):
                raise PolicyViolation(f"gallery {gallery!r} is not allowed for live use; an admin can allow it "
                                      f"with `faceledger video allow-live {gallery}`")
        every_ms = check_every_ms(every_ms)
        webhook = check_webhook(webhook)
        opened = _open_args(source)
        if opened["is_file"]:
            probe(source, limits=self.video.limits, hash_file=False)
            realtime = True if realtime is None else realtime
        ctx.pipeline.load()
        watch_id = str(uuid.uuid4())
        start = ctx.ledger.record(actor=principal.name, action="watch.start", payload={
            **request, "watch_id": watch_id, "every_ms": every_ms,
            "webhook": redact_url(webhook) if webhook else None, "model_id": ctx.model_id})
        state = {"frames": 0, "tracks": 0, "searches": 0, "alerts": 0, "bystander_tracks": 0, "reason": "ended"}
        tracker, searched, alerted = Tracker(embedder(ctx.pipeline)), set(), set()
        last_retry = time.monotonic()

        def consider(track: Track, ending: bool) -> None:
            if track.track_id in searched or not (track.usable_count >= READY_SHOTS or ending):
                return
            shots = select_shots(track)
            if not shots:
                return
            searched.add(track.track_id)
            alert = self._search_track(principal, track, shots, tracker.embed, gallery=gallery, top_k=top_k, watch_id=watch_id,
                                       purpose=purpose, case=case, authorisation=authorisation)
            state["searches"] += 1
            if alert is not None:
                alerted.add(track.track_id)
                state["alerts"] += 1
                if on_alert is not None:
                    on_alert(alert)
                if webhook:
                    self.spool.add(webhook, alert)
                    self.spool.flush()

        state["reconnect_attempts"] = 0
        live = not opened["is_file"]
        try:
            for frame in _frames_reconnecting(opened, every_ms=every_ms, realtime=bool(realtime),
                                              max_seconds=max_seconds, stop=stop,
                                              reconnects=reconnects if live else 0, state=state):
                if frame is None:  # the source dropped and was opened again: its tracks have ended
                    self._close(tracker.finish(), consider, alerted, state)
                    continue
                state["frames"] += 1
                ended = tracker.update(frame.t, observe(ctx.pipeline, frame.t, frame.index, frame.rgb,
                                                       detect_max_side=self.video.detect_max_side), frame.rgb)
                for track in tracker.live:
                    consider(track, ending=False)
                self._close(ended, consider, alerted, state)
                if webhook and time.monotonic() - last_retry > RETRY_SECONDS and self.spool.pending():
                    last_retry = time.monotonic()
                    self.spool.flush()
            if stop is not None and stop.is_set():
                state["reason"] = "stopped"
        except BaseException as exc:
            state["reason"] = f"error: {exc}"[:300]
            raise
        finally:
            self._close(tracker.finish(), consider, alerted, state)
            spool = self.spool.flush() if webhook else {"delivered": 0, "pending": len(self.spool.pending())}
            stop_entry = ctx.ledger.record(actor=principal.name, action="watch.stop", payload={
                "watch_id": watch_id, "start_entry": start.entry_id, "gallery": gallery, **state,
                "alerts_pending_delivery": spool["pending"]})
        return {"watch_id": watch_id, "start_entry": start.entry_id, "stop_entry": stop_entry.entry_id, **state,
                "alerts_pending_delivery": spool["pending"],
                "bystanders": {"tracks": state["bystander_tracks"], "kept": "counts only"}}

    def _allowed_live(self, gallery: str) -> bool:
        self._carry_legacy_list()
        with self.ctx.sessions() as session:
            return bool(self.ctx.gallery(session, gallery).allow_live)

    def retry_alerts(self, *, by: Principal | None = None) -> dict:
        """Post the alerts still in the spool (a webhook that was down); returns delivered/pending."""
        self.access.authorize(by, "search")
        return self.spool.flush()

    def _close(self, ended: list[Track], consider, alerted: set, state: dict) -> None:
        for track in ended:
            consider(track, ending=True)
            state["tracks"] += 1
            if track.track_id not in alerted:
                state["bystander_tracks"] += 1
            forget(track)

    def _search_track(self, principal: Principal, track: Track, shots, embed, *, gallery: str, top_k: int, watch_id: str,
                      purpose: str, case: str, authorisation: str) -> dict | None:
        """Search one track; when it has candidates, ledger the alert in the same transaction and return it."""
        ctx = self.ctx
        vector = template(shots, embed)  # the model runs before the write lock is taken
        with ctx.writing() as session:
            gallery_row = ctx.gallery(session, gallery)
            match = self.video.searching.match(session, gallery_row, vector, top_k=top_k)
            if not match.candidates:
                return None
            payload = {"watch_id": watch_id, "gallery": gallery, "track": track.track_id,
                       "first_s": round(track.first_t, 3), "last_s": round(track.last_t, 3),
                       "frames": len(track.observations), "purpose": purpose, "case": case,
                       "authorisation": authorisation, "threshold": match.threshold.score,
                       "gallery_size": match.gallery_size, "model_id": ctx.model_id,
                       "calibration_id": match.calibration_id, "quality": shots[0].quality.as_dict(),
                       "candidates": [c.as_json() for c in match.candidates]}
            entry = ctx.ledger.append(session, actor=principal.name, action="watch.alert", payload=payload)
            session.commit()
        ctx.ledger.note_committed(entry)
        thumb = thumbnail_jpeg(shots[0])
        return {**payload, "alert_id": entry.entry_id, "ledger_entry": entry.entry_id, "at": utcnow().isoformat(),
                "thumbnail_jpeg": base64.b64encode(thumb).decode() if thumb else None}


def _frames_reconnecting(opened: dict, *, every_ms: float, realtime: bool, max_seconds: float | None,
                         stop: threading.Event | None, reconnects: int, state: dict):
    """The source's frames, its times continuing across reconnections; None marks each reconnection."""
    started, failures = time.monotonic(), 0
    while True:
        offset, got = time.monotonic() - started, False
        left = None if max_seconds is None else max_seconds - offset
        try:
            for frame in frames(opened["url"], every_ms=every_ms, realtime=realtime, max_seconds=left,
                                fmt=opened["format"], stop=stop, wall_clock=not opened["is_file"]):
                got, failures = True, 0
                yield dataclasses.replace(frame, t=frame.t + offset)
        except VideoError as exc:
            if not reconnects or not state["frames"]:
                raise  # a source that never worked is an error, as before
            if failures >= reconnects:
                state["reason"] = f"source lost: not reopened after {failures} attempts ({exc})"[:300]
                return
        if (stop is not None and stop.is_set()) or failures >= reconnects or (
                max_seconds is not None and time.monotonic() - started >= max_seconds):
            return
        failures += 1
        if stop is not None:
            if stop.wait(min(2.0 ** (failures - 1), 30.0)):
                return
        else:
            time.sleep(min(2.0 ** (failures - 1), 30.0))
        state["reconnect_attempts"] += 1
        if got:
            yield None


def _source_label(source: str) -> str:
    return redact_url(source) if "://" in source else (Path(source).name if not source.isdigit() else f"camera {source}")


def _open_args(source: str) -> dict:
    """How to open a source: a file path, a camera (an index or /dev/videoN), or a stream URL."""
    if re.fullmatch(r"\d+", source):
        return {"url": f"/dev/video{source}", "format": "v4l2", "is_file": False}
    if source.startswith("/dev/video"):
        return {"url": source, "format": "v4l2", "is_file": False}
    if "://" in source:
        return {"url": source, "format": None, "is_file": False}
    return {"url": source, "format": None, "is_file": True}
