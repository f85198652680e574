"""Video jobs: a video search (or a redaction) run in the background of the process that accepted it.

An upload is streamed to `<home>/video/jobs/<id>/` in chunks (never held in memory) and checked against
the video byte limit as it arrives; a bounded worker (WORKERS threads, at most MAX_WAITING jobs waiting)
runs it. The job's state lives in `<id>/job.json`, replaced atomically at each change, so any process on
the same data directory (a second server, the CLI, a restarted server) reads the same state.

The process running a job holds an exclusive `flock` on its runner file; a job that is queued or
running while no process holds that lock belonged to a process that stopped, and is reported failed
(nothing was recorded: the video search ledgers its entry only when it ends). The uploaded video is
deleted when the job ends, whatever the outcome (the bystander rule); a redaction's output stays, for
download, until the job's files expire with the gallery's probe retention.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from ..errors import Conflict, FaceledgerError, NotFound
from ..policy import PERMISSIONS, Principal
from ..video.decode import VideoError, VideoTooLarge, probe, sha256_file
from .access import Access
from .context import Context, utcnow
from .video import VideoSearch, check_every_ms

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

log = logging.getLogger("faceledger.video")

WORKERS = 1
"""Video jobs run at the same time in one process (each uses the models, which run one call at a time)."""
MAX_WAITING = 8
"""Jobs waiting in one process beyond which a new one is refused (409): uploads stay bounded on disk."""
CHUNK = 1 << 20
PROGRESS_EVERY_S = 0.5
DIED = "the server stopped during the search; nothing was recorded"
DIED_QUEUED = "the server stopped before the job ran; nothing was recorded"
VIDEO_DELETED = "the uploaded video was deleted when the job ended"
_JOB_ID = re.compile(r"[0-9a-f]{32}")
SEE_ALL = ("admin", "auditor")
"""Roles that may see every user's jobs; others see their own."""


class JobsBusy(Conflict):
    """Too many video jobs are waiting in this server; retry when one has finished."""


class VideoJobs:
    def __init__(self, ctx: Context, access: Access, video: VideoSearch) -> None:
        self.ctx = ctx
        self.access = access
        self.video = video
        self.root = ctx.settings.home / "video" / "jobs"
        self._queue: queue.Queue[str] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._runner: str | None = None
        self._runner_handle = None
        self._start_lock = threading.Lock()
        self._waiting = 0

    # -- submitting -----------------------------------------------------------------------------------

    def submit_search(self, upload: BinaryIO, *, name: str, gallery: str, purpose: str | None,
                      case: str | None, every_ms: float = 200, top_k: int = 5, investigative: bool = False,
                      authorisation: str | None = None, by: Principal | None = None) -> dict:
        """Accept an uploaded video for search: checked like `video_search` (role, purpose, case, gallery
        policy: a refusal is ledgered and nothing is kept), streamed to disk, then queued. Returns the job."""
        principal = self.access.authorize(by, "search", gallery=gallery)
        purpose, case = self.video.check_request(principal, gallery=gallery, purpose=purpose, case=case,
                                                 investigative=investigative, video=name, every_ms=every_ms)
        every_ms = check_every_ms(every_ms)
        if not 1 <= int(top_k) <= 100:
            raise FaceledgerError("top_k must be between 1 and 100")
        params = {"gallery": gallery, "purpose": purpose, "case": case, "every_ms": every_ms, "top_k": int(top_k),
                  "investigative": bool(investigative), "authorisation": authorisation or None}
        with self.access.failures(principal, "video.search", {**params, "video": Path(name).name[:200]}):
            return self._accept("search", upload, name, params, principal)

    def submit_redact(self, upload: BinaryIO, *, name: str, search_job: str, keep_tracks: tuple[int, ...] = (),
                      by: Principal | None = None) -> dict:
        """Redact the video of a finished search job (uploaded again: the search deleted it), keeping the
        chosen tracks as that search numbered them. The upload must be the same file (sha256)."""
        principal = self.access.authorize(by, "search")
        search = self.get(search_job, by=principal)
        if search["kind"] != "search" or search["state"] != "done":
            raise Conflict(f"job {search_job} is not a finished video search")
        if search["owner"] != principal.name:
            raise NotFound(f"no video job {search_job}")
        params = {"search_job": search_job, "every_ms": search["params"]["every_ms"],
                  "purpose": search["params"]["purpose"], "case": search["params"]["case"],
                  "keep_tracks": sorted({int(t) for t in keep_tracks}),
                  "sha256": search["result"]["video"]["sha256"]}
        return self._accept("redact", upload, name, params, principal)

    def _accept(self, kind: str, upload: BinaryIO, name: str, params: dict, principal: Principal) -> dict:
        self._start()
        with self._start_lock:
            if self._waiting >= MAX_WAITING:
                raise JobsBusy(f"{MAX_WAITING} video jobs are already waiting on this server; retry when one "
                               "has finished")
            self._waiting += 1
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        try:
            folder.mkdir(parents=True, mode=0o700)
            (folder / "upload").mkdir(mode=0o700)
            size = self._stream(upload, folder / "upload" / _safe_name(name), name)
            stored = folder / "upload" / _safe_name(name)
            try:
                probe(stored, limits=self.video.limits, hash_file=False)  # not a video: 400, nothing kept
            except VideoError as exc:  # FFmpeg names the file it opened: say the upload's name, not the path
                raise type(exc)(str(exc).replace(f"'{stored}'", repr(Path(name).name)).replace(str(stored),
                                Path(name).name)) from None
            job = {"id": job_id, "kind": kind, "owner": principal.name, "role": principal.role,
                   "state": "queued", "progress": 0.0, "created_at": utcnow().isoformat(), "started_at": None,
                   "finished_at": None, "video": {"name": Path(name).name[:200], "size_bytes": size},
                   "params": params, "runner": self._runner, "result": None, "error": None,
                   "video_deleted": False}
            self._write(job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            with self._start_lock:
                self._waiting -= 1
            raise
        self._queue.put(job_id)
        return job

    def _stream(self, upload: BinaryIO, target: Path, name: str) -> int:
        """Copy the upload to disk in chunks, refusing it (VideoTooLarge, 413) as soon as it passes the limit."""
        limit = self.ctx.settings.video_max_bytes
        size = 0
        with open(target, "wb") as out:
            while block := upload.read(CHUNK):
                size += len(block)
                if size > limit:
                    raise VideoTooLarge(f"{Path(name).name}: the upload is over the video limit of "
                                        f"{limit / 1e6:.1f} MB (FACELEDGER_VIDEO_MAX_BYTES); nothing was kept")
                out.write(block)
        if size == 0:
            raise VideoError(f"{Path(name).name}: the upload is empty")
        return size

    # -- reading --------------------------------------------------------------------------------------

    def get(self, job_id: str, *, by: Principal | None = None) -> dict:
        """A job's state, progress and (when done) result or error. Its owner, admins and auditors see it;
        anyone else gets NotFound, as for a job that does not exist."""
        principal = self.access.authorize(by, "search.read")
        job = self._read(job_id)
        if job is None or not (job["owner"] == principal.name or principal.role in SEE_ALL):
            raise NotFound(f"no video job {job_id}")
        job = self._settle(job)
        if job.get("result") and principal.role not in PERMISSIONS["face.view"]:
            job = {**job, "result": _without_faces(job["result"])}
        return job

    def list_jobs(self, *, limit: int = 50, by: Principal | None = None) -> list[dict]:
        """The newest jobs this user may see (without their results)."""
        principal = self.access.authorize(by, "search.read")
        self.sweep()
        rows = []
        for path in self.root.glob("*/job.json") if self.root.is_dir() else ():
            job = self._read(path.parent.name)
            if job and (job["owner"] == principal.name or principal.role in SEE_ALL):
                rows.append({k: v for k, v in self._settle(job).items() if k != "result"})
        rows.sort(key=lambda j: j["created_at"], reverse=True)
        return rows[:limit]

    def shot(self, job_id: str, track: int, number: int = 1, *, by: Principal | None = None) -> bytes:
        """JPEG of best shot `number` (1 = the best) of a track that had candidates; bystanders have none."""
        principal = self.access.authorize(by, "face.view")
        job = self.get(job_id, by=principal)
        for row in (job.get("result") or {}).get("tracks", []):
            if row["track"] == track:
                shots = row.get("shots_jpeg") or []
                if not 1 <= number <= len(shots):
                    raise NotFound(f"track {track} of job {job_id} has no best shot {number} (only tracks with "
                                   "candidates keep their shots)")
                return base64.b64decode(shots[number - 1])
        raise NotFound(f"job {job_id} has no track {track} with a result")

    def redacted(self, job_id: str, *, by: Principal | None = None) -> tuple[Path, str]:
        """(path, download name) of a finished redaction's output."""
        job = self.get(job_id, by=by)
        path = self.root / job_id / "redacted.mp4"
        if job["kind"] != "redact" or job["state"] != "done" or not path.is_file():
            raise NotFound(f"job {job_id} has no redacted video")
        return path, f"redacted-{Path(job['video']['name']).stem}.mp4"

    # -- running --------------------------------------------------------------------------------------

    def _start(self) -> None:
        """Take this process's runner lock and start the workers (once)."""
        with self._start_lock:
            if self._threads:
                return
            runners = self.root / "runners"
            runners.mkdir(parents=True, exist_ok=True)
            self._runner = uuid.uuid4().hex
            self._runner_handle = open(runners / f"{self._runner}.lock", "w")  # noqa: SIM115 (held for life)
            if fcntl is not None:
                fcntl.flock(self._runner_handle, fcntl.LOCK_EX)
            for n in range(WORKERS):
                thread = threading.Thread(target=self._work, name=f"faceledger-video-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)
        self.sweep()

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            with self._start_lock:
                self._waiting -= 1
            try:
                self._run(job_id)
            except Exception:  # never let one job stop the worker
                log.exception("video job %s failed unexpectedly", job_id)

    def _run(self, job_id: str) -> None:
        job = self._read(job_id)
        if job is None:
            return
        job.update(state="running", started_at=utcnow().isoformat())
        self._write(job)
        folder = self.root / job_id
        principal = Principal(job["owner"], job["role"])
        last = [0.0]

        def progress(fraction: float) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                job["progress"] = round(fraction, 4)
                self._write(job)

        try:
            if job["kind"] == "search":
                p = job["params"]
                result = self.video.search(self._upload(job_id), gallery=p["gallery"], purpose=p["purpose"],
                                           case=p["case"], every_ms=p["every_ms"], top_k=p["top_k"],
                                           investigative=p["investigative"], authorisation=p["authorisation"],
                                           by=principal, progress=progress)
                job["result"] = {**result.as_json(), "uploaded_video": VIDEO_DELETED}
            else:
                job["result"] = self._redact(job, folder, principal, progress)
            job.update(state="done", progress=1.0)
        except FaceledgerError as exc:
            job.update(state="failed", error=str(exc))
        except Exception as exc:
            log.exception("video job %s failed", job_id)
            job.update(state="failed", error=f"unexpected error ({type(exc).__name__}); the server log has the "
                                             "details; nothing was recorded")
        finally:
            shutil.rmtree(folder / "upload", ignore_errors=True)
            job.update(finished_at=utcnow().isoformat(), video_deleted=True)
            self._write(job)

    def _redact(self, job: dict, folder: Path, principal: Principal, progress) -> dict:
        p = job["params"]
        video = self._upload(job["id"])
        if sha256_file(video) != p["sha256"]:
            raise FaceledgerError("this is not the video that search job searched (its sha256 differs); choose "
                                  "the same file")
        summary = self.video.redact(video, out=folder / "redacted.mp4", keep_tracks=tuple(p["keep_tracks"]),
                                    every_ms=p["every_ms"], purpose=p["purpose"], case=p["case"], by=principal,
                                    progress=progress)
        return {**summary, "uploaded_video": VIDEO_DELETED}

    # -- state on disk --------------------------------------------------------------------------------

    def _upload(self, job_id: str) -> Path:
        found = list((self.root / job_id / "upload").iterdir())
        if len(found) != 1:
            raise FaceledgerError(f"job {job_id}: its uploaded video is gone")
        return found[0]

    def _read(self, job_id: str) -> dict | None:
        if not _JOB_ID.fullmatch(job_id or ""):
            return None
        try:
            return json.loads((self.root / job_id / "job.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None

    def _write(self, job: dict) -> None:
        target = self.root / job["id"] / "job.json"
        temporary = target.with_name(f"job.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(job, sort_keys=True), encoding="utf-8")
        os.replace(temporary, target)

    def _settle(self, job: dict) -> dict:
        """A queued or running job whose process has stopped is failed (and its upload deleted) here."""
        if job["state"] in ("queued", "running") and not self._runner_alive(job.get("runner")):
            job.update(state="failed", error=DIED if job["state"] == "running" else DIED_QUEUED,
                       finished_at=utcnow().isoformat(), video_deleted=True)
            shutil.rmtree(self.root / job["id"] / "upload", ignore_errors=True)
            self._write(job)
        return job

    def _runner_alive(self, runner: str | None) -> bool:
        if runner is None or fcntl is None:
            return runner is not None
        if runner == self._runner:
            return True
        try:
            with open(self.root / "runners" / f"{runner}.lock") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
        except FileNotFoundError:
            pass
        return False

    def sweep(self) -> dict:
        """Fail the jobs of stopped processes and delete their uploads; remove finished jobs older than the
        default probe retention (their results hold candidates' shots) and stopped runners' lock files."""
        failed = removed = 0
        if not self.root.is_dir():
            return {"failed": 0, "removed": 0}
        cutoff = (utcnow() - timedelta(days=max(1, self.ctx.settings.probe_retain_days))).isoformat()
        for path in list(self.root.glob("*/job.json")):
            job = self._read(path.parent.name)
            if job is None:
                continue
            before = job["state"]
            job = self._settle(job)
            failed += before != job["state"]
            if job["state"] in ("done", "failed") and (job.get("finished_at") or "") < cutoff:
                shutil.rmtree(path.parent, ignore_errors=True)
                removed += 1
        for lock in (self.root / "runners").glob("*.lock") if (self.root / "runners").is_dir() else ():
            stale = time.time() - lock.stat().st_mtime > 60  # never one a starting process is about to lock
            if stale and not self._runner_alive(lock.stem):
                lock.unlink(missing_ok=True)
        return {"failed": failed, "removed": removed}


def _safe_name(name: str) -> str:
    """The upload's file name reduced to safe characters (it names the file in error messages)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").name).strip("._")[:100]
    return cleaned or "upload"


def _without_faces(result: dict) -> dict:
    """A result for a role that may not see faces: the shots' pixels left out."""
    tracks = [{k: v for k, v in t.items() if k not in ("thumbnail_jpeg", "shots_jpeg")} for t in result["tracks"]]
    return {**result, "tracks": tracks}
