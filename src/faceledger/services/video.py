"""Video search and redaction: a recorded video's faces followed as tracks, each track searched once.

A track is searched as a template (the mean of its best shots' embeddings) with `Searching.match`, and
the whole video is ONE ledger entry ("video.search") holding the file's hash, its sampling and every
track's time range and answer. Tracks without a candidate are bystanders: only their time range and
frame count are returned and ledgered; their embeddings and crops live in memory during the search
and are dropped when it ends (nothing of them is written anywhere).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FaceledgerError, NotFound
from ..policy import Principal, check_investigative, check_purpose, gallery_policy
from ..results import Candidate
from ..store.open_reviews import queue_search
from ..video.analyse import Analysis, analyse
from ..video.decode import VideoError, VideoInfo, VideoLimits, probe, sha256_file
from ..video.redact import write_redacted
from ..video.shots import forget, select_shots, template, thumbnail_jpeg
from ..video.track import Track
from .access import Access
from .context import Context, require_text
from .search import Searching

BYSTANDERS_KEPT = "time ranges only"


@dataclass
class TrackResult:
    track: int
    first_s: float
    last_s: float
    frames: int
    status: str
    """"candidates", "no_match" (searched, nobody cleared the threshold) or "no_usable_shot"."""
    shots: int = 0
    quality: dict | None = None
    candidates: list[Candidate] = field(default_factory=list)
    thumbnail_jpeg: bytes | None = field(default=None, repr=False)
    shot_jpegs: list[bytes] = field(default_factory=list, repr=False)
    """Every best shot of a track with candidates (the first is `thumbnail_jpeg`); none for bystanders."""
    review_entry: str | None = None
    """The "search" ledger entry of this track's candidates: reviews name it (as for a photo's search)."""

    def summary(self) -> dict:
        """What a bystander keeps (and what the ledger holds of every track, with its candidates)."""
        return {"track": self.track, "first_s": round(self.first_s, 3), "last_s": round(self.last_s, 3),
                "frames": self.frames, "status": self.status}

    def as_json(self) -> dict:
        data = self.summary()
        if self.status == "candidates":
            data.update(shots=self.shots, quality=self.quality, candidates=[c.as_json() for c in self.candidates],
                        thumbnail_jpeg=base64.b64encode(self.thumbnail_jpeg).decode() if self.thumbnail_jpeg else None,
                        shots_jpeg=[base64.b64encode(j).decode() for j in self.shot_jpegs],
                        review_entry=self.review_entry)
        return data


@dataclass
class VideoSearchResult:
    ledger_entry: str
    video: dict
    every_ms: float
    frames_sampled: int
    gallery: str
    gallery_size: int
    mode: str
    threshold: float | None
    threshold_supported: bool | None
    target_fpir: float
    model_id: str
    calibration_id: str
    searches: int
    tracks: list[TrackResult]

    @property
    def decision(self) -> str:
        return "match" if any(t.status == "candidates" for t in self.tracks) else "no_match"

    @property
    def bystanders(self) -> dict:
        return {"tracks": sum(1 for t in self.tracks if t.status != "candidates"), "kept": BYSTANDERS_KEPT}

    def as_json(self) -> dict:
        return {"decision": self.decision, "ledger_entry": self.ledger_entry, "video": self.video,
                "every_ms": self.every_ms, "frames_sampled": self.frames_sampled, "gallery": self.gallery,
                "gallery_size": self.gallery_size, "mode": self.mode, "threshold": self.threshold,
                "threshold_supported": self.threshold_supported, "target_fpir": self.target_fpir,
                "model_id": self.model_id, "calibration_id": self.calibration_id, "searches": self.searches,
                "fusion": "mean of the best shots' L2-normalised embeddings, renormalised",
                "tracks": [t.as_json() for t in self.tracks], "bystanders": self.bystanders}


def _fraction(progress: Callable[[float], None] | None, duration: float | None):
    """A per-frame time callback that reports the fraction of the duration analysed (never above 1)."""
    if progress is None:
        return None
    return lambda t: progress(min(1.0, t / duration) if duration else 0.0)


def check_every_ms(every_ms: float) -> float:
    if not 20 <= float(every_ms) <= 10_000:
        raise FaceledgerError(f"--every-ms must be between 20 and 10000 (got {every_ms})")
    return float(every_ms)


def check_complete(info: VideoInfo, analysis: Analysis, every_ms: float) -> None:
    """A file whose frames stop well before the duration it declares is truncated or corrupt: refuse it
    rather than answer for a part of it."""
    if info.duration_s and analysis.last_t + max(1.0, 2 * every_ms / 1000) < info.duration_s:
        raise VideoError(f"{info.name}: the frames stop at {analysis.last_t:.1f} s of the {info.duration_s:.1f} s "
                         "the file declares (truncated or corrupt); nothing was searched")


class VideoSearch:
    def __init__(self, ctx: Context, access: Access, searching: Searching) -> None:
        self.ctx = ctx
        self.access = access
        self.searching = searching

    @property
    def limits(self) -> VideoLimits:
        s = self.ctx.settings
        return VideoLimits(max_bytes=s.video_max_bytes, max_seconds=s.video_max_seconds, max_pixels=s.video_max_pixels)

    @property
    def detect_max_side(self) -> int:
        return self.ctx.settings.video_detect_max_side

    def search(self, video: Path | str, *, gallery: str, purpose: str | None, case: str | None,
               every_ms: float = 200, top_k: int = 5, investigative: bool = False,
               authorisation: str | None = None, max_shots: int = 3, by: Principal | None = None,
               progress: Callable[[float], None] | None = None) -> VideoSearchResult:
        """Search a recorded video: every face track searched once as a template, one ledger entry (and,
        for each track with candidates, a "search" entry its reviewers name, written in the same
        transaction). Nothing is ledgered before the analysis ends (a failure is ledgered as one).

        progress: called with the fraction (0..1) of the video's duration analysed so far."""
        ctx = self.ctx
        principal = self.access.authorize(by, "search", gallery=gallery)
        purpose, case = self.check_request(principal, gallery=gallery, purpose=purpose, case=case,
                                           investigative=investigative, video=Path(video).name, every_ms=every_ms)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "investigative": investigative,
                   "video": Path(video).name, "every_ms": every_ms}
        every_ms = check_every_ms(every_ms)
        if top_k < 1:
            raise FaceledgerError("--top-k must be at least 1")
        request.update(top_k=top_k, authorisation=authorisation)
        with self.access.failures(principal, "video.search", request):
            info = probe(video, limits=self.limits)
            ctx.pipeline.load()
            analysis = analyse(ctx.pipeline, video, every_ms=every_ms, detect_max_side=self.detect_max_side,
                               progress=_fraction(progress, info.duration_s))
            check_complete(info, analysis, every_ms)
        try:
            return self._search_tracks(principal, info, analysis, gallery=gallery, purpose=purpose, case=case,
                                       every_ms=every_ms, top_k=top_k, investigative=investigative,
                                       authorisation=authorisation, max_shots=max_shots)
        finally:
            for track in analysis.tracks:
                forget(track)

    def check_request(self, principal: Principal, *, gallery: str, purpose: str | None, case: str | None,
                      investigative: bool, video: str, every_ms: float) -> tuple[str, str]:
        """(purpose, case) of a video search the gallery's policy accepts; a refusal is ledgered as denied.
        The API checks this before it accepts an upload, and the search again when it runs."""
        request = {"gallery": gallery, "purpose": purpose, "case": case, "investigative": investigative,
                   "video": video, "every_ms": every_ms}
        with self.access.refusals(principal, "video.search", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            with self.ctx.sessions() as session:
                policy = gallery_policy(self.ctx.gallery(session, gallery))
            check_purpose(purpose, policy["purposes"], gallery)
            check_investigative(investigative, policy["allow_investigative"], gallery)
        return purpose, case

    def _search_tracks(self, principal: Principal, info: VideoInfo, analysis: Analysis, *, gallery: str,
                       purpose: str, case: str, every_ms: float, top_k: int, investigative: bool,
                       authorisation: str | None, max_shots: int) -> VideoSearchResult:
        ctx = self.ctx
        mode = "investigative" if investigative else "open-set"
        results: list[TrackResult] = []
        searches = 0
        threshold = None
        calibration_id = self.searching.calibrations.current.calibration_id  # until a track is matched
        # The models run before the write lock is taken: under it, only index look-ups and the ledger.
        chosen = {track.track_id: select_shots(track, max_shots=max_shots) for track in analysis.tracks}
        templates = {tid: template(shots, analysis.embed) for tid, shots in chosen.items() if shots}
        self.searching.warm([gallery])
        with ctx.writing() as session:
            gallery_row = ctx.gallery(session, gallery)
            size = len(self.searching.indexes.get(session, gallery_row))
            for track in analysis.tracks:
                row = TrackResult(track=track.track_id, first_s=track.first_t, last_s=track.last_t,
                                  frames=len(track.observations), status="no_usable_shot")
                shots = chosen[track.track_id]
                if shots:
                    match = self.searching.match(session, gallery_row, templates[track.track_id], top_k=top_k,
                                                 investigative=investigative)
                    searches += 1
                    threshold, size, calibration_id = match.threshold, match.gallery_size, match.calibration_id
                    row.status = "candidates" if match.candidates else "no_match"
                    if match.candidates:
                        row.candidates = list(match.candidates)
                        row.shots = len(shots)
                        row.quality = shots[0].quality.as_dict()
                        row.shot_jpegs = [j for j in map(thumbnail_jpeg, shots) if j]
                        row.thumbnail_jpeg = row.shot_jpegs[0] if row.shot_jpegs else None
                results.append(row)
            if threshold is None:  # no track was searched: state the threshold that would have applied
                threshold = self.searching.calibrations.current.threshold_for_fpir(gallery_row.target_fpir, size)
            video = {**info.as_dict(), "frames_sampled": analysis.frames_sampled}
            entry = ctx.ledger.append(session, actor=principal.name, action="video.search", payload={
                "gallery": gallery, "gallery_id": gallery_row.id, "gallery_size": size, "purpose": purpose,
                "case": case, "authorisation": authorisation, "mode": mode, "top_k": top_k,
                "video": video, "every_ms": every_ms, "model_id": ctx.model_id, "calibration_id": calibration_id,
                "threshold": threshold.score, "threshold_supported": threshold.supported,
                "target_fpir": gallery_row.target_fpir, "searches": searches,
                "decision": "match" if any(r.status == "candidates" for r in results) else "no_match",
                "tracks": [{**r.summary(), "candidates": [c.as_json() for c in r.candidates]} if r.candidates
                           else r.summary() for r in results],
                "bystanders": {"tracks": sum(1 for r in results if r.status != "candidates"),
                               "kept": BYSTANDERS_KEPT}})
            target_fpir = gallery_row.target_fpir
            last = entry
            for row in results:
                if row.candidates:  # reviewable as a photo's search is: by entry id and candidate rank
                    last = ctx.ledger.append(session, actor=principal.name, action="search", payload={
                        "source": "video", "video_search": entry.entry_id, "track": row.track,
                        "first_s": round(row.first_s, 3), "last_s": round(row.last_s, 3),
                        "video_sha256": info.sha256, "gallery": gallery, "gallery_id": gallery_row.id,
                        "gallery_size": size, "purpose": purpose, "case": case, "authorisation": authorisation,
                        "mode": mode, "top_k": top_k, "model_id": ctx.model_id, "calibration_id": calibration_id,
                        "threshold": threshold.score, "threshold_supported": threshold.supported,
                        "target_fpir": gallery_row.target_fpir, "decision": "match",
                        "probe_quality": row.quality, "candidates": [c.as_json() for c in row.candidates]})
                    row.review_entry = last.entry_id
                    queue_search(session, last)
            session.commit()
        ctx.ledger.note_committed(last)
        return VideoSearchResult(
            ledger_entry=entry.entry_id, video=video, every_ms=every_ms, frames_sampled=analysis.frames_sampled,
            gallery=gallery, gallery_size=size, mode=mode, threshold=threshold.score,
            threshold_supported=threshold.supported, target_fpir=target_fpir, model_id=ctx.model_id,
            calibration_id=calibration_id, searches=searches, tracks=results)

    def tracks(self, video: Path | str, *, every_ms: float = 200, by: Principal | None = None) -> list[dict]:
        """The face tracks of a video (ids, time ranges, frame counts), to choose what `redact` keeps.
        Nothing is compared with a gallery, so nothing is ledgered; no embedding leaves this call."""
        self.access.authorize(by, "faces")
        probe(video, limits=self.limits, hash_file=False)
        self.ctx.pipeline.load()
        analysis = analyse(self.ctx.pipeline, video, every_ms=check_every_ms(every_ms),
                           detect_max_side=self.detect_max_side)
        rows = [{"track": t.track_id, "first_s": round(t.first_t, 3), "last_s": round(t.last_t, 3),
                 "frames": len(t.observations)} for t in analysis.tracks]
        for track in analysis.tracks:
            forget(track)
        return rows

    def redact(self, video: Path | str, *, out: Path | str, keep_tracks: tuple[int, ...] = (),
               every_ms: float = 200, purpose: str | None = None, case: str | None = None,
               by: Principal | None = None, progress: Callable[[float], None] | None = None) -> dict:
        """Write a copy of the video with every face blurred except the kept tracks (numbered as `search`
        numbers them at the same --every-ms); ledgered as "video.redact"."""
        ctx = self.ctx
        principal = self.access.authorize(by, "search")
        video, out = Path(video), Path(out)
        every_ms = check_every_ms(every_ms)
        if out.resolve() == video.resolve():
            raise FaceledgerError("--out must be a new file, not the video being redacted")
        info = probe(video, limits=self.limits)
        ctx.pipeline.load()
        analysis = analyse(ctx.pipeline, video, every_ms=every_ms, detect_max_side=self.detect_max_side,
                           progress=_fraction(progress, info.duration_s))
        check_complete(info, analysis, every_ms)
        known = {t.track_id for t in analysis.tracks}
        unknown = sorted(set(keep_tracks) - known)
        if unknown:
            raise NotFound(f"no track {', '.join(map(str, unknown))} in {video.name} at --every-ms {every_ms:g} "
                           f"(tracks: {', '.join(map(str, sorted(known))) or 'none'})")
        for track in analysis.tracks:
            forget(track)  # boxes and times are all redaction needs
        blur: list[Track] = [t for t in analysis.tracks if t.track_id not in set(keep_tracks)]
        out.parent.mkdir(parents=True, exist_ok=True)
        counts = write_redacted(video, out, blur, every_ms=every_ms)
        summary = {"video": info.as_dict(), "out": out.name, "out_sha256": sha256_file(out), "every_ms": every_ms,
                   "kept_tracks": sorted(set(keep_tracks)), "blurred_tracks": len(blur),
                   "tracks": [{"track": t.track_id, "first_s": round(t.first_t, 3), "last_s": round(t.last_t, 3),
                               "frames": len(t.observations), "kept": t.track_id in set(keep_tracks)}
                              for t in analysis.tracks], **counts}
        entry = ctx.ledger.record(actor=principal.name, action="video.redact",
                                  payload={**summary, "purpose": purpose, "case": case})
        return {**summary, "ledger_entry": entry.entry_id}

