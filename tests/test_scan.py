"""Point-and-scan (services/scan.py, video/scan_gate.py, api/routes_scan.py).

Frames are made in the test from committed stills (tests/data/open-faces, see CREDITS.md): a face that
approaches the camera (small, then large and steady). In process, with the engine and a hand-moved
clock: feedback order, one search with the best shot, the ledger entry, expiry, the time limit, memory
bounds, the gate's words for blur, motion and pose. Over HTTP against a real `faceledger serve`: the
bad input (non-image, oversize, unknown, expired, someone else's scan, too fast, a second search).
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import httpx
import numpy as np
import pytest

from faceledger.errors import Conflict, ImageError, NotFound, PermissionDenied, PolicyViolation
from faceledger.policy import Principal
from faceledger.services.scan import FRAME_MAX_BYTES, FRAMES_PER_SECOND, ScanBusy
from faceledger.video.scan_gate import GateConfig, ScanGate

from .conftest import OPEN_FACES, gallery_files, open_test_engine
from .servers import running_serve
from .video_scenes import FACE_A, FACE_C, face_still

ENROLLED, STRANGER = FACE_A, FACE_C  # Macron 2014 is scanned; Macron 2025 is enrolled. Sunak is not.
W, H = 400, 300


def scene_frame(who: str | None, side: int, *, cx: float = W / 2, cy: float = H / 2, others=()) -> np.ndarray:
    """An RGB frame: the still's face crop scaled to side × side, centred at (cx, cy), on grey."""
    frame = np.full((H, W, 3), 128, np.uint8)
    for name, s, x, y in ([(who, side, cx, cy)] if who else []) + list(others):
        face = cv2.resize(face_still(name), (s, s), interpolation=cv2.INTER_AREA)
        x0, y0 = round(x - s / 2), round(y - s / 2)
        frame[max(0, y0):y0 + s, max(0, x0):x0 + s] = face[max(0, -y0):H - y0, max(0, -x0):W - x0]
    return frame


def approach_sides(fps: int = 10) -> list[int]:
    """The face's side per frame: 2 s small (too small to search), 1.5 s coming closer, 5 s steady."""
    return [60] * (2 * fps) + list(np.linspace(60, 230, int(1.5 * fps)).astype(int)) + [230] * (5 * fps)


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buffer.tobytes()


def approach_jpegs(who: str, step: int = 3) -> list[bytes]:
    """Every `step`-th frame of the approach, as a browser sending ~3 frames a second of a 10 fps camera."""
    return [jpeg(scene_frame(who, side)) for side in approach_sides()[::step]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    """An engine with gallery "g" (a few LFW people and Macron's 2025 portrait), its scans on a test clock."""
    engine = open_test_engine(tmp_path_factory.mktemp("scan") / "home")
    engine.create_gallery("g", purposes=["fraud"])
    engine.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="Emmanuel Macron", source="CC BY",
                  legal_basis="public record")
    engine.add_user("scan-analyst", role="analyst")
    analyst = Principal("scan-analyst", "analyst")
    clock = Clock()
    engine.scans.clock = clock
    yield engine, analyst, clock
    engine.close()


def run_scan(engine, analyst, clock, frames: list[bytes], case: str) -> tuple[list[dict], dict]:
    started = engine.start_scan(gallery="g", purpose="fraud", case=case, by=analyst)
    answers = []
    for data in frames:
        answers.append(engine.scan_frame(started["scan"], data, by=analyst))
        clock.now += 0.3
        if answers[-1]["status"] != "scanning":
            break
    return answers, started


def searches_for(engine, case: str) -> list[dict]:
    return engine.audit_entries(action="search", case=case)


def test_an_approaching_face_is_told_closer_then_searched_once_with_the_best_shot(scanner):
    engine, analyst, clock = scanner
    answers, started = run_scan(engine, analyst, clock, approach_jpegs(ENROLLED), "SCAN-1")
    codes = [a["feedback"]["code"] for a in answers]
    assert codes[0] == "closer" and "good" in codes
    assert codes.index("good") > codes.index("closer")
    progress = [a["feedback"]["progress"] for a in answers]
    assert progress == sorted(progress) and progress[-1] == 1.0
    final = answers[-1]
    assert final["status"] == "searched" and final["decision"] == "match"
    assert [a["status"] for a in answers].count("searched") == 1
    assert final["result_url"] == f"/searches/{final['ledger_entry']}"
    record = engine.search_record(final["ledger_entry"], by=analyst)
    assert record["candidates"][0]["subject"] == "Emmanuel Macron" and record["candidates"][0]["above_threshold"]
    (entry,) = searches_for(engine, "SCAN-1")
    assert entry["entry_id"] == final["ledger_entry"] and entry["actor"] == "scan-analyst"
    capture = entry["payload"]["capture"]
    assert capture["mode"] == "scan" and capture["scan"] == started["scan"]
    assert capture["good_frames"] == GateConfig().good_frames and capture["ended_by"] == "enough good frames"
    assert entry["payload"]["purpose"] == "fraud" and entry["payload"]["decision"] == "match"
    # nothing of the scan is held after its search, and it does not search twice
    assert engine.scans._scans[started["scan"]].gate is None
    with pytest.raises(Conflict, match="already searched"):
        engine.scan_frame(started["scan"], approach_jpegs(ENROLLED)[-1], by=analyst)
    assert len(searches_for(engine, "SCAN-1")) == 1


def test_a_stranger_gets_no_match(scanner):
    engine, analyst, clock = scanner
    answers, _ = run_scan(engine, analyst, clock, approach_jpegs(STRANGER), "SCAN-2")
    assert answers[-1]["status"] == "searched" and answers[-1]["decision"] == "no_match"
    (entry,) = searches_for(engine, "SCAN-2")
    assert entry["payload"]["candidates"] == []


def test_a_scan_expires_when_idle_and_its_frames_go_with_it(scanner):
    engine, analyst, clock = scanner
    started = engine.start_scan(gallery="g", purpose="fraud", case="SCAN-3", by=analyst)
    engine.scan_frame(started["scan"], jpeg(scene_frame(ENROLLED, 230)), by=analyst)
    scan = engine.scans._scans[started["scan"]]
    assert scan.gate.kept  # one good frame held while the scan runs
    gate = scan.gate
    clock.now += engine.scans.idle_seconds + 1
    with pytest.raises(NotFound, match="expired"):
        engine.scan_frame(started["scan"], jpeg(scene_frame(ENROLLED, 230)), by=analyst)
    assert started["scan"] not in engine.scans._scans and not gate.kept
    assert searches_for(engine, "SCAN-3") == []


def test_an_abandoned_scan_is_dropped_without_another_request(scanner):
    engine, analyst, clock = scanner
    engine.scans.sweep_every = 0.05
    started = engine.start_scan(gallery="g", purpose="fraud", case="SCAN-9", by=analyst)
    engine.scan_frame(started["scan"], jpeg(scene_frame(ENROLLED, 230)), by=analyst)
    gate = engine.scans._scans[started["scan"]].gate
    assert gate.kept
    clock.now += engine.scans.idle_seconds + 1
    deadline = time.monotonic() + 30  # the sweeper's next round, however loaded the machine
    while started["scan"] in engine.scans._scans and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.scans.sweep_every = 5.0
    assert started["scan"] not in engine.scans._scans and not gate.kept


def test_the_time_limit_without_a_usable_face_is_a_failed_search(scanner):
    engine, analyst, clock = scanner
    started = engine.start_scan(gallery="g", purpose="fraud", case="SCAN-4", by=analyst)
    small = jpeg(scene_frame(ENROLLED, 60))
    answer = engine.scan_frame(started["scan"], small, by=analyst)
    assert answer["feedback"]["code"] == "closer"
    clock.now += engine.scans.max_seconds
    answer = engine.scan_frame(started["scan"], small, by=analyst)
    assert answer["status"] == "ended" and "no usable face" in answer["reason"]
    (entry,) = searches_for(engine, "SCAN-4")
    assert entry["payload"]["decision"] == "failed" and entry["payload"]["capture"]["ended_by"] == "time limit"


def test_start_checks_role_and_purpose_and_frames_belong_to_their_user(scanner):
    engine, analyst, _ = scanner
    engine.add_user("scan-reviewer", role="reviewer")
    reviewer = Principal("scan-reviewer", "reviewer")
    engine.add_user("scan-other", role="analyst")
    other = Principal("scan-other", "analyst")
    with pytest.raises(PermissionDenied):
        engine.start_scan(gallery="g", purpose="fraud", case="SCAN-5", by=reviewer)
    with pytest.raises(PolicyViolation, match="not allowed"):
        engine.start_scan(gallery="g", purpose="curiosity", case="SCAN-5", by=analyst)
    with pytest.raises(PolicyViolation):
        engine.start_scan(gallery="g", purpose="fraud", case=" ", by=analyst)
    denied = engine.audit_entries(action="denied", actor="scan-analyst")
    assert any("curiosity" in str(e["payload"]) for e in denied)
    started = engine.start_scan(gallery="g", purpose="fraud", case="SCAN-5", by=analyst)
    with pytest.raises(PermissionDenied, match="another user"):
        engine.scan_frame(started["scan"], jpeg(scene_frame(ENROLLED, 230)), by=other)
    assert engine.audit_entries(action="denied", actor="scan-other")
    with pytest.raises(ImageError, match="not a JPEG"):
        engine.scan_frame(started["scan"], b"GIF89a not a frame", by=analyst)
    with pytest.raises(ImageError, match="limit"):
        engine.scan_frame(started["scan"], b"\xff\xd8\xff" + bytes(FRAME_MAX_BYTES), by=analyst)
    with pytest.raises(ImageError):
        engine.scan_frame(started["scan"], b"\xff\xd8\xff\xe0 truncated", by=analyst)
    engine.cancel_scan(started["scan"], by=analyst)
    with pytest.raises(NotFound):
        engine.scan_frame(started["scan"], jpeg(scene_frame(ENROLLED, 230)), by=analyst)


def test_frames_faster_than_the_scan_takes_them_are_refused_not_queued(scanner):
    engine, analyst, clock = scanner
    started = engine.start_scan(gallery="g", purpose="fraud", case="SCAN-7", by=analyst)
    scan = engine.scans._scans[started["scan"]]
    frame = jpeg(np.full((H, W, 3), 128, np.uint8))  # nobody in view: the scan goes on
    with scan.lock, pytest.raises(ScanBusy, match="still being processed"):  # another frame is being processed
        engine.scan_frame(started["scan"], frame, by=analyst)
    for _ in range(int(FRAMES_PER_SECOND)):  # a burst of a second's worth, on a clock that does not move
        engine.scan_frame(started["scan"], frame, by=analyst)
    with pytest.raises(ScanBusy, match="frames a second") as refused:
        engine.scan_frame(started["scan"], frame, by=analyst)
    assert 0 < refused.value.retry_after <= 1 / FRAMES_PER_SECOND + 1e-9
    frames = scan.frames
    clock.now += 1 / FRAMES_PER_SECOND
    assert engine.scan_frame(started["scan"], frame, by=analyst)["frame"] == frames + 1


def test_a_busy_scan_is_429_with_retry_after(scanner):
    from fastapi.testclient import TestClient

    from faceledger.api import create_app

    engine = scanner[0]
    _, token = engine.add_user("scan-http", role="analyst")
    app = create_app(engine.settings.model_copy(update={"rate_limit_per_minute": 0}), engine=engine)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        scan = client.post("/api/v1/scans", json={"gallery": "g", "purpose": "fraud", "case": "SCAN-8"},
                           headers=headers).json()["scan"]
        with engine.scans._scans[scan].lock:
            busy = client.post(f"/api/v1/scans/{scan}/frames", content=b"\xff\xd8\xff",
                               headers={**headers, "Content-Type": "image/jpeg"})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert busy.json()["type"].endswith("scan-busy") and busy.json()["retry_after_s"] > 0


def test_a_user_holds_at_most_two_scans(scanner):
    engine, analyst, _ = scanner
    ids = [engine.start_scan(gallery="g", purpose="fraud", case="SCAN-6", by=analyst)["scan"] for _ in range(3)]
    held = [i for i in ids if i in engine.scans._scans]
    assert held == ids[1:]


# -- the gate alone -------------------------------------------------------------------------------------

def gate_feed(pipeline, gate: ScanGate, rgb: np.ndarray, t: float, index: int):
    from faceledger.video.shots import observe

    return gate.feed(t, index, observe(pipeline, t, index, rgb), rgb, jpeg(rgb))


def test_the_gate_says_hold_still_for_blur_and_motion_and_keeps_few_frames(pipeline):
    from faceledger.video.shots import embedder

    gate = ScanGate(embedder(pipeline), GateConfig(good_frames=100, keep=3))
    sharp = scene_frame(ENROLLED, 230)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    assert gate_feed(pipeline, gate, blurred, 0.0, 1).code == "hold_still"
    assert gate_feed(pipeline, gate, sharp, 0.3, 2).code == "good"
    moved = scene_frame(ENROLLED, 230, cx=W / 2 + 60)
    assert gate_feed(pipeline, gate, moved, 0.6, 3).code == "hold_still"
    for i in range(8):
        assert gate_feed(pipeline, gate, moved, 0.9 + 0.3 * i, 4 + i).code == "good"
    assert len(gate.kept) == 3 and gate.good == 9  # only the three best frames are held
    best = gate.best_shot()
    assert best is not None and best.jpeg in {data for _, data in gate.kept.values()}
    assert abs(float(np.linalg.norm(best.vector)) - 1.0) < 1e-4
    gate.forget()
    assert not gate.kept and gate.best_shot() is None


def test_the_gate_follows_the_largest_face_and_says_face_the_camera_when_turned(pipeline):
    from faceledger.video.shots import embedder, observe

    gate = ScanGate(embedder(pipeline))
    two = scene_frame(ENROLLED, 200, cx=150, others=[(STRANGER, 110, 340, 150)])
    feedback = gate_feed(pipeline, gate, two, 0.0, 1)
    assert feedback.faces == 2 and "following the largest" in feedback.note
    assert feedback.box[0] < 0.3  # the box is the left-hand (larger) face's
    # a face turned away: the same observation with the head turned 40 degrees
    rgb = scene_frame(ENROLLED, 230)
    turned = [replace(o, quality=replace(o.quality, yaw=40.0)) for o in observe(pipeline, 0.3, 2, rgb)]
    assert gate.feed(0.3, 2, turned, rgb, jpeg(rgb)).code == "face_camera"
    assert gate_feed(pipeline, gate, rgb, 0.6, 3).code in ("good", "hold_still")
    none = np.full((H, W, 3), 128, np.uint8)
    assert gate_feed(pipeline, gate, none, 0.9, 4).code == "no_face"


# -- over HTTP, against a real server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("scan-api") / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["fraud"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="Emmanuel Macron", source="CC BY",
                  legal_basis="public record")
    tokens = {name: engine.add_user(name, role=role)[1]
              for name, role in (("api-analyst", "analyst"), ("api-other", "analyst"), ("api-auditor", "auditor"))}
    engine.close()
    with running_serve(home, home.parent / "server.log", env={"FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}) as (base, _):
        yield base, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}, home


def post_frame(base, headers, scan, data: bytes):
    return httpx.post(f"{base}/api/v1/scans/{scan}/frames", content=data,
                      headers={**headers, "Content-Type": "image/jpeg"}, timeout=60)


def start(base, headers, case: str, **body):
    return httpx.post(f"{base}/api/v1/scans", json={"gallery": "g", "purpose": "fraud", "case": case, **body},
                      headers=headers, timeout=60)


def test_api_scan_searches_once_and_refuses_a_second_search(served):
    base, h, _ = served
    response = start(base, h["api-analyst"], "API-1")
    assert response.status_code == 201
    scan = response.json()["scan"]
    answers = []
    for data in approach_jpegs(ENROLLED):
        time.sleep(0.17)  # a browser sends a few frames a second
        response = post_frame(base, h["api-analyst"], scan, data)
        if response.status_code == 429:  # faster than 6 frames a second: wait as told, then go on
            continue
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if answers[-1]["status"] != "scanning":
            break
    assert answers[0]["feedback"]["code"] == "closer"
    assert answers[-1]["status"] == "searched" and answers[-1]["decision"] == "match"
    again = post_frame(base, h["api-analyst"], scan, approach_jpegs(ENROLLED)[-1])
    assert again.status_code == 409 and "start a new scan" in again.json()["detail"]
    record = httpx.get(base + answers[-1]["api_url"], headers=h["api-analyst"], timeout=30).json()
    assert record["candidates"][0]["subject"] == "Emmanuel Macron"
    entries = httpx.get(f"{base}/api/v1/audit", params={"action": "search", "case": "API-1"},
                        headers=h["api-auditor"], timeout=30).json()
    assert len(entries) == 1 and entries[0]["payload"]["capture"]["mode"] == "scan"


def test_api_bad_frames_and_scans(served):
    base, h, _ = served
    assert start(base, h["api-auditor"], "API-2").status_code == 403
    assert start(base, h["api-analyst"], "API-2", purpose=None).status_code == 422
    assert start(base, h["api-analyst"], "API-2", purpose="curiosity").status_code == 403
    assert start(base, h["api-analyst"], "API-2", gallery="nope").status_code == 404
    scan = start(base, h["api-analyst"], "API-2").json()["scan"]
    not_image = post_frame(base, h["api-analyst"], scan, b"hello, not a picture")
    assert not_image.status_code == 400 and "JPEG" in not_image.json()["detail"]
    big = post_frame(base, h["api-analyst"], scan, b"\xff\xd8\xff" + bytes(FRAME_MAX_BYTES + 10))
    assert big.status_code == 413
    assert post_frame(base, h["api-other"], scan, jpeg(scene_frame(ENROLLED, 230))).status_code == 403
    assert post_frame(base, h["api-analyst"], "0123abcd", jpeg(scene_frame(ENROLLED, 230))).status_code == 404
    assert post_frame(base, h["api-analyst"], "not-hex!", b"x").status_code == 422
    assert httpx.delete(f"{base}/api/v1/scans/{scan}", headers=h["api-analyst"], timeout=30).status_code == 200
    gone = post_frame(base, h["api-analyst"], scan, jpeg(scene_frame(ENROLLED, 230)))
    assert gone.status_code == 404 and "new scan" in gone.json()["detail"]
    assert httpx.post(f"{base}/api/v1/scans", json={"gallery": "g"}, timeout=30).status_code == 401


def test_a_scan_lives_in_its_process_and_its_search_is_in_the_shared_ledger(served):
    """Two `faceledger serve` processes on one data directory: a scan started on one is unknown to the
    other (404, nothing searched there); its search is ledgered in the store both read."""
    base, h, home = served
    with running_serve(home, home.parent / "server-2.log") as (other, _):
        scan = start(base, h["api-analyst"], "API-3").json()["scan"]
        elsewhere = post_frame(other, h["api-analyst"], scan, jpeg(scene_frame(ENROLLED, 230)))
        assert elsewhere.status_code == 404 and "new scan" in elsewhere.json()["detail"]
        for data in approach_jpegs(ENROLLED)[-6:]:  # close and steady: searches after a few frames
            time.sleep(0.17)
            response = post_frame(base, h["api-analyst"], scan, data)
            if response.status_code == 429:  # faster than 6 a second: skip this frame
                continue
            answer = response.json()
            if answer["status"] != "scanning":
                break
        assert answer["status"] == "searched"
        seen = httpx.get(f"{other}/api/v1/audit", params={"action": "search", "case": "API-3"},
                         headers=h["api-auditor"], timeout=30).json()
        assert [e["entry_id"] for e in seen] == [answer["ledger_entry"]]
