"""Point-and-scan field capture: a camera sends frames, the server follows the face it points at, says
what would make the shot better, and searches ONCE with the best shots when enough good frames came.

A scan is started with its gallery, purpose and case (checked then, as a search checks them; a refusal
is ledgered). Each frame (one small JPEG) goes through the same detector and quality stages as a video
frame (video/shots.py) and the scan's gate (video/scan_gate.py) answers with plain-words feedback and
progress. When the followed face has had enough good frames — or the scan's time is up and it has at
least one — its best shots are fused into one template and searched through `Searching.search_face`:
the same role and purpose checks, open-set answer, probe record and "search" ledger entry as a photo
search, marked with how it was captured. A scan whose time runs out without a usable face is ledgered
as a failed search, as a photo without a face is.

Memory is bounded: a scan holds its tracker and at most `GateConfig.keep` frames (each at most
FRAME_MAX_BYTES), only while it runs; after its search, or when it is cancelled or idle for
IDLE_SECONDS (a sweeper thread runs while scans are held), every frame, crop and embedding is dropped. At most MAX_SCANS run at once (MAX_PER_USER
per user: starting another ends the oldest). Frames of a scan are rate limited (FRAMES_PER_SECOND),
and a frame sent while the previous one is still being processed is refused, not queued.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import Conflict, FaceledgerError, ImageError, NotFound, PermissionDenied
from ..faces import Detection, Face
from ..imaging import load_image
from ..policy import Principal, check_purpose, gallery_policy
from ..video.scan_gate import Feedback, GateConfig, ScanGate
from ..video.shots import embedder, observe
from .access import Access
from .context import Context, optional_text, require_text
from .search import Searching

FRAME_MAX_BYTES = 1_000_000
"""Largest frame accepted (a 640-px JPEG is 30-120 kB)."""
FRAME_MAX_SIDE = 1280
"""Longest side of a frame, checked from the JPEG header before decoding."""
IDLE_SECONDS = 30.0
"""A scan that receives no frame for this long is dropped (its frames with it)."""
MAX_SECONDS = 30.0
"""A scan searches (or gives up) this long after it started, whatever its frames look like."""
MAX_FRAMES = 300
FRAMES_PER_SECOND = 6.0
"""Frames a scan may send per second (a burst of as many is allowed); faster ones get 429."""
MAX_SCANS = 32
MAX_PER_USER = 2


class ScanBusy(FaceledgerError):
    """Frames come faster than a scan takes them: wait `retry_after` seconds and send the next one."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Scan:
    scan_id: str
    owner: str
    principal: Principal
    gallery: str
    purpose: str
    case: str
    authorisation: str | None
    top_k: int
    started: float
    gate: ScanGate | None
    last_seen: float
    frames: int = 0
    tokens: float = FRAMES_PER_SECOND
    refilled: float = 0.0
    result: dict | None = None
    """Once searched (or given up): what every later frame is answered with (409)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Scans:
    def __init__(self, ctx: Context, access: Access, searching: Searching, *,
                 clock: Callable[[], float] = time.monotonic, config: GateConfig | None = None) -> None:
        self.ctx = ctx
        self.access = access
        self.searching = searching
        self.clock = clock
        self.config = config or GateConfig()
        self.idle_seconds, self.max_seconds = IDLE_SECONDS, MAX_SECONDS
        self.sweep_every = 5.0
        """Seconds between the sweeper's checks for idle scans (it runs only while scans are held)."""
        self._scans: dict[str, Scan] = {}
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None

    # -- start, cancel --------------------------------------------------------------------------------

    def start(self, *, gallery: str, purpose: str | None, case: str | None, authorisation: str | None = None,
              top_k: int = 10, by: Principal | None = None) -> dict:
        """Start a scan for one gallery, purpose and case (checked now, and again when it searches)."""
        ctx = self.ctx
        principal = self.access.authorize(by, "search", gallery=gallery)
        request = {"gallery": gallery, "purpose": purpose, "case": case, "capture": "scan"}
        with self.access.refusals(principal, "search", request):
            purpose = require_text(purpose, "a purpose", "--purpose")
            case = require_text(case, "a case reference", "--case")
            authorisation = optional_text(authorisation, "the authorisation id", "--authorisation")
            with ctx.sessions() as session:
                policy = gallery_policy(ctx.gallery(session, gallery))
            check_purpose(purpose, policy["purposes"], gallery)
        if not 1 <= top_k <= 100:
            raise FaceledgerError("top_k must be between 1 and 100")
        ctx.pipeline.load()
        now = self.clock()
        scan = Scan(scan_id=uuid.uuid4().hex, owner=principal.name, principal=principal, gallery=gallery,
                    purpose=purpose, case=case, authorisation=authorisation, top_k=top_k, started=now,
                    gate=ScanGate(embedder(ctx.pipeline), self.config), last_seen=now, refilled=now)
        with self._lock:
            self._sweep(now)
            mine = sorted((s for s in self._scans.values() if s.owner == principal.name), key=lambda s: s.started)
            for old in mine[:max(0, len(mine) - MAX_PER_USER + 1)]:
                self._drop(old)
            if len(self._scans) >= MAX_SCANS:
                raise ScanBusy(f"{MAX_SCANS} scans are running on this server; try again in a few seconds",
                               retry_after=5.0)
            self._scans[scan.scan_id] = scan
            if self._sweeper is None:  # an abandoned scan's frames must not wait for the next request
                self._sweeper = threading.Thread(target=self._sweep_while_held, name="faceledger-scans",
                                                 daemon=True)
                self._sweeper.start()
        return {"scan": scan.scan_id, "gallery": gallery, "purpose": purpose, "case": case,
                "needed": self.config.good_frames, "max_seconds": self.max_seconds,
                "idle_seconds": self.idle_seconds, "frame_max_bytes": FRAME_MAX_BYTES,
                "frame_max_side": FRAME_MAX_SIDE, "frames_per_second": FRAMES_PER_SECOND}

    def cancel(self, scan_id: str, *, by: Principal | None = None) -> dict:
        """End a scan without searching; its frames are dropped. Nothing was compared: nothing is ledgered."""
        scan = self._own(scan_id, by)
        with self._lock:
            self._drop(scan)
        return {"scan": scan_id, "status": "cancelled"}

    # -- frames ---------------------------------------------------------------------------------------

    def frame(self, scan_id: str, data: bytes, *, by: Principal | None = None) -> dict:
        """One frame: the feedback for it, and once the scan has searched, the result's ledger entry."""
        scan = self._own(scan_id, by)
        if scan.result is not None:
            raise Conflict(f"scan {scan_id} has already {scan.result['status']} "
                           f"({scan.result.get('ledger_entry') or 'no search'}); start a new scan")
        if not scan.lock.acquire(blocking=False):
            raise ScanBusy("the previous frame of this scan is still being processed; send the next one when "
                           "its answer has come", retry_after=0.2)
        gate = None
        try:
            now = self.clock()
            self._take_token(scan, now)
            gate = scan.gate
            if scan.result is not None or gate is None:
                raise Conflict(f"scan {scan_id} has ended; start a new scan")
            scan.last_seen = now
            image = _frame_image(data, scan.frames)
            scan.frames += 1
            rgb = image.rgb
            observations = observe(self.ctx.pipeline, now - scan.started, scan.frames, rgb)
            feedback = gate.feed(now - scan.started, scan.frames, observations, rgb, image.data)
            elapsed = now - scan.started
            if gate.ready or elapsed >= self.max_seconds or scan.frames >= MAX_FRAMES:
                return self._finish(scan, gate, feedback, timed_out=not gate.ready)
            return {"scan": scan_id, "status": "scanning", "frame": scan.frames, "feedback": feedback.as_json(),
                    "seconds_left": round(max(0.0, self.max_seconds - elapsed), 1)}
        finally:
            if scan.gate is None and gate is not None:  # dropped (cancelled, replaced) while this frame ran
                gate.forget()
            scan.lock.release()

    def _finish(self, scan: Scan, gate: ScanGate, feedback: Feedback, *, timed_out: bool) -> dict:
        """Search once with the best shots (or, with none, ledger the scan as a failed search); then drop
        every frame of the scan."""
        best = gate.best_shot()
        capture = {"mode": "scan", "scan": scan.scan_id, "frames": scan.frames, "good_frames": gate.good,
                   "shots": best.shots if best else 0, "seconds": round(self.clock() - scan.started, 1),
                   "ended_by": "time limit" if timed_out else "enough good frames"}
        try:
            if best is None:
                reason = (f"no usable face in {capture['seconds']:g} s of scanning ({scan.frames} frames); "
                          "start a new scan closer to the person, facing the camera")
                self.ctx.ledger.record(actor=scan.owner, action="search", payload={
                    "gallery": scan.gallery, "purpose": scan.purpose, "case": scan.case,
                    "authorisation": scan.authorisation, "investigative": False, "decision": "failed",
                    "error": reason, "capture": capture, "model_id": self.ctx.model_id})
                scan.result = {"status": "ended", "reason": reason}
                return {"scan": scan.scan_id, "status": "ended", "frame": scan.frames, "reason": reason,
                        "feedback": feedback.as_json()}
            obs = best.observation
            loaded = load_image(best.jpeg, name=f"scan-{scan.scan_id[:8]}.jpg", max_bytes=FRAME_MAX_BYTES,
                                max_side=FRAME_MAX_SIDE)
            probe = Face(detection=Detection(box=obs.box, landmarks=obs.landmarks, score=obs.score),
                         quality=obs.quality, embedding=best.vector)
            scan.result = {"status": "searching"}
            result = self.searching.search_face(loaded, probe, gallery=scan.gallery, purpose=scan.purpose,
                                                case=scan.case, top_k=scan.top_k, authorisation=scan.authorisation,
                                                capture=capture, by=scan.principal)
            scan.result = {"status": "searched", "ledger_entry": result.ledger_entry}
            return {"scan": scan.scan_id, "status": "searched", "frame": scan.frames, "feedback": feedback.as_json(),
                    "capture": capture, "decision": result.decision, "ledger_entry": result.ledger_entry,
                    "candidates": len(result.candidates), "result_url": f"/searches/{result.ledger_entry}",
                    "api_url": f"/api/v1/searches/{result.ledger_entry}"}
        except BaseException as exc:
            if scan.result is None or scan.result.get("status") == "searching":
                scan.result = {"status": "failed", "reason": str(exc)[:300]}
            raise
        finally:
            gate.forget()
            scan.gate = None

    # -- the scans held ---------------------------------------------------------------------------------

    def active(self) -> int:
        """Scans held in memory now (after dropping the idle ones)."""
        with self._lock:
            self._sweep(self.clock())
            return len(self._scans)

    def _own(self, scan_id: str, by: Principal | None) -> Scan:
        principal = self.access.authorize(by, "search")
        with self._lock:
            self._sweep(self.clock())
            scan = self._scans.get(scan_id)
        if scan is None:
            raise NotFound(f"no scan {scan_id[:64]!r}: it ended, expired after {self.idle_seconds:g} s without "
                           "frames, or never existed; start a new scan")
        if scan.owner != principal.name:
            reason = f"scan {scan_id} belongs to another user"
            self.access.record_denial(principal, "scan.frame", reason, {"scan": scan_id})
            raise PermissionDenied(reason)
        return scan

    def _take_token(self, scan: Scan, now: float) -> None:
        scan.tokens = min(FRAMES_PER_SECOND, scan.tokens + (now - scan.refilled) * FRAMES_PER_SECOND)
        scan.refilled = now
        if scan.tokens < 1.0:
            raise ScanBusy(f"a scan takes at most {FRAMES_PER_SECOND:g} frames a second",
                           retry_after=(1.0 - scan.tokens) / FRAMES_PER_SECOND)
        scan.tokens -= 1.0

    def _sweep_while_held(self) -> None:
        while True:
            time.sleep(self.sweep_every)
            with self._lock:
                self._sweep(self.clock())
                if not self._scans:
                    self._sweeper = None
                    return

    def _sweep(self, now: float) -> None:
        for scan in [s for s in self._scans.values() if now - s.last_seen > self.idle_seconds]:
            self._drop(scan)

    def _drop(self, scan: Scan) -> None:
        self._scans.pop(scan.scan_id, None)
        gate, scan.gate = scan.gate, None
        if gate is not None and scan.lock.acquire(blocking=False):  # a frame in progress drops it itself
            try:
                gate.forget()
            finally:
                scan.lock.release()


def _frame_image(data: bytes, number: int):
    """A scan frame: one JPEG within the frame limits (checked from the header before decoding)."""
    name = f"frame {number + 1}"
    if len(data) > FRAME_MAX_BYTES:
        raise ImageError(f"{name}: {len(data):,} bytes is over a scan frame's limit of {FRAME_MAX_BYTES:,} bytes; "
                         f"send frames scaled to at most {FRAME_MAX_SIDE} px")
    if not data.startswith(b"\xff\xd8\xff"):
        raise ImageError(f"{name} is not a JPEG image; a scan frame must be one JPEG")
    return load_image(data, name=name, max_bytes=FRAME_MAX_BYTES, max_side=FRAME_MAX_SIDE,
                      work_side=FRAME_MAX_SIDE, decode_side=FRAME_MAX_SIDE)
