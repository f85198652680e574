"""Video search through the HTTP API: a real `faceledger serve` (one start for the module) runs the
background jobs; this test process reads the same jobs through its own engine (cross-process), sends the
bad uploads, and finally kills the server during a search to see the job reported failed with nothing
ledgered. The tests run in file order: the last one stops the server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("av")

from faceledger.errors import NotFound
from faceledger.policy import Principal
from faceledger.services.video_jobs import DIED, VIDEO_DELETED

from .conftest import OPEN_FACES, open_test_engine
from .servers import running_serve
from .video_scenes import crossing, moving, still_frames, write

PROBLEM = "application/problem+json"
LIMIT = 600_000  # FACELEDGER_VIDEO_MAX_BYTES for this server: the test videos are far smaller
FORM = {"gallery": "g", "purpose": "investigation", "case": "V-1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, tokens, home, videos): gallery "g" holds Macron (a photo eleven years from the videos')."""
    folder = tmp_path_factory.mktemp("video-api")
    home = folder / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["investigation"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="macron", source="test", legal_basis="b")
    tokens = {name: engine.add_user(name, role=role)[1] for name, role in
              (("analyst-1", "analyst"), ("analyst-2", "analyst"), ("auditor-1", "auditor"), ("reviewer-1", "reviewer"))}
    engine.close()
    videos = {"crossing": write(crossing(), folder / "crossing.mp4"),
              "moving": write(moving(), folder / "moving.mp4", options={"movflags": "faststart"}),
              # long enough to be caught running: 12 s took 0.6 s to search on round 5's machine, shorter than
              # the poll could see (60 s: 42 KB, still far under LIMIT)
              "long": write(still_frames(60.0), folder / "long.mp4")}
    env = {"FACELEDGER_VIDEO_MAX_BYTES": str(LIMIT), "FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}
    with running_serve(home, folder / "server.log", env=env, start_within=180) as (base, process):
        yield {"base": base, "tokens": tokens, "home": home, "videos": videos, "process": process}


def _client(served, user: str) -> httpx.Client:
    return httpx.Client(base_url=served["base"], timeout=60,
                        headers={"Authorization": f"Bearer {served['tokens'][user]}"})


def _upload(client: httpx.Client, path: Path | None = None, *, data: bytes | None = None, name: str = "clip.mp4",
            **form) -> httpx.Response:
    body = data if data is not None else path.read_bytes()
    return client.post("/api/v1/video/search", data={**FORM, **form}, files={"video": (name, body, "video/mp4")})


def _wait(client: httpx.Client, job: str, until=("done", "failed"), within: float = 180, partly: bool = False) -> dict:
    """Poll the job until its state is one of `until` (and, with `partly`, some progress is reported);
    the bound only keeps a broken server from hanging the suite."""
    deadline = time.monotonic() + within
    seen = []
    while time.monotonic() < deadline:
        state = client.get(f"/api/v1/video/jobs/{job}").json()
        seen.append(state["progress"])
        if state["state"] in until and (not partly or state["progress"] > 0 or state["state"] != "running"):
            state["seen_progress"] = seen
            return state
        time.sleep(0.2)
    pytest.fail(f"job {job} still {state['state']} after {within} s")


def _jobs_on_disk(home: Path) -> set[str]:
    root = home / "video" / "jobs"
    return {p.name for p in root.iterdir() if p.name != "runners"} if root.is_dir() else set()


def test_a_video_search_job_runs_in_the_server_and_is_visible_to_its_owner_elsewhere(served):
    with _client(served, "analyst-1") as client:
        answer = _upload(client, served["videos"]["crossing"], name="crossing.mp4")
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert answer.headers["location"] == job["status_url"] == f"/api/v1/video/jobs/{job['job']}"
        assert job["state"] in ("queued", "running") and job["owner"] == "analyst-1"
        done = _wait(client, job["job"])
        assert done["state"] == "done", done["error"]
        progress = done["seen_progress"]
        assert progress == sorted(progress) and done["progress"] == 1.0
        result = done["result"]
        assert result["decision"] == "match" and result["uploaded_video"] == VIDEO_DELETED
        assert done["video_deleted"] is True
        assert not (served["home"] / "video" / "jobs" / job["job"] / "upload").exists()
        matched = [t for t in result["tracks"] if t["status"] == "candidates"]
        others = [t for t in result["tracks"] if t["status"] != "candidates"]
        assert len(matched) == 1 and matched[0]["candidates"][0]["subject"] == "macron" and len(others) == 1
        assert set(others[0]) == {"track", "first_s", "last_s", "frames", "status"}
        shot = client.get(f"/api/v1/video/jobs/{job['job']}/tracks/{matched[0]['track']}/shot")
        assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
        assert shot.content[:3] == b"\xff\xd8\xff"
        bystander = client.get(f"/api/v1/video/jobs/{job['job']}/tracks/{others[0]['track']}/shot")
        assert bystander.status_code == 404 and bystander.headers["content-type"].startswith(PROBLEM)

    # another analyst cannot see it (as if it did not exist); an auditor can, without the faces' pixels
    with _client(served, "analyst-2") as other:
        assert other.get(f"/api/v1/video/jobs/{job['job']}").status_code == 404
        assert job["job"] not in {j["job"] for j in other.get("/api/v1/video/jobs").json()}
    with _client(served, "auditor-1") as auditor:
        seen = auditor.get(f"/api/v1/video/jobs/{job['job']}").json()
        assert seen["state"] == "done" and "thumbnail_jpeg" not in seen["result"]["tracks"][0]

    # a reviewer reviews the matched track's candidate through the ordinary review route
    with _client(served, "reviewer-1") as reviewer:
        queued = {s["ledger_entry"]: s for s in reviewer.get("/api/v1/reviews/queue?limit=500").json()["searches"]}
        assert queued[matched[0]["review_entry"]]["candidates"] == len(matched[0]["candidates"])  # the track awaits review
        review = reviewer.post("/api/v1/reviews", json={"search": matched[0]["review_entry"], "candidate": 1,
                                                         "decision": "confirm"})
        assert review.status_code == 201, review.text

    # a second process on the same data directory reads the same job
    engine = open_test_engine(served["home"])
    try:
        again = engine.video_job(job["job"], by=Principal("analyst-1", "analyst"))
        assert again["state"] == "done" and again["result"]["ledger_entry"] == result["ledger_entry"]
        with pytest.raises(NotFound):
            engine.video_job(job["job"], by=Principal("analyst-2", "analyst"))
        entry = engine.audit_entries(action="video.search")[-1]
        assert entry["entry_id"] == result["ledger_entry"] and entry["actor"] == "analyst-1"
    finally:
        engine.close()
    served["search_job"] = job["job"]


def test_a_redacted_copy_keeps_the_chosen_track_and_needs_the_same_video(served):
    job = served["search_job"]
    with _client(served, "analyst-1") as client:
        result = client.get(f"/api/v1/video/jobs/{job}").json()["result"]
        kept = next(t["track"] for t in result["tracks"] if t["status"] == "candidates")
        wrong = client.post("/api/v1/video/redact", data={"search_job": job, "keep_track": [kept]},
                            files={"video": ("moving.mp4", served["videos"]["moving"].read_bytes(), "video/mp4")})
        assert wrong.status_code == 202
        failed = _wait(client, wrong.json()["job"])
        assert failed["state"] == "failed" and "sha256 differs" in failed["error"]
        answer = client.post("/api/v1/video/redact", data={"search_job": job, "keep_track": [kept]},
                             files={"video": ("crossing.mp4", served["videos"]["crossing"].read_bytes(), "video/mp4")})
        done = _wait(client, answer.json()["job"])
        assert done["state"] == "done", done["error"]
        assert done["result"]["kept_tracks"] == [kept] and done["result"]["blurred_tracks"] == 1
        download = client.get(done["download_url"])
        assert download.status_code == 200 and download.content[4:8] == b"ftyp"
        assert "redacted-crossing.mp4" in download.headers["content-disposition"]
    with _client(served, "analyst-2") as other:
        assert other.get(done["download_url"]).status_code == 404


def test_bad_uploads_are_clear_errors_and_leave_nothing(served):
    home = served["home"]
    before = _jobs_on_disk(home)
    with _client(served, "analyst-1") as client:
        too_big = _upload(client, data=np.random.default_rng(1).integers(0, 256, LIMIT + 1000, np.uint8).tobytes())
        assert too_big.status_code == 413 and too_big.headers["content-type"].startswith(PROBLEM)
        assert "FACELEDGER_VIDEO_MAX_BYTES" in too_big.json()["detail"]
        far_too_big = _upload(client, data=bytes(LIMIT + 2 * 1024 * 1024))  # refused from Content-Length
        assert far_too_big.status_code == 413
        not_video = _upload(client, data=b"this is a text file, not a video\n" * 100, name="notes.mp4")
        assert not_video.status_code == 400 and "cannot be read as a video" in not_video.json()["detail"]
        from .test_video import _audio_only

        audio = _audio_only(home.parent / "voice.m4a")
        no_stream = _upload(client, audio, name="voice.m4a")
        assert no_stream.status_code == 400 and "no video stream" in no_stream.json()["detail"]
        no_purpose = _upload(client, served["videos"]["moving"], purpose="")
        assert no_purpose.status_code == 422 and "purpose" in no_purpose.json()["detail"]
        assert _jobs_on_disk(home) == before  # nothing of any refused upload is kept

        data = served["videos"]["moving"].read_bytes()
        truncated = _upload(client, data=data[: int(len(data) * 0.6)], name="cut-short.mp4")
        assert truncated.status_code == 202, truncated.text
        failed = _wait(client, truncated.json()["job"])
        assert failed["state"] == "failed" and "truncated" in failed["error"] and failed["video_deleted"]
        assert not (home / "video" / "jobs" / failed["job"] / "upload").exists()

        for job in ("0" * 32, "../../etc/passwd", "not-a-job"):
            missing = client.get(f"/api/v1/video/jobs/{job}")
            assert missing.status_code == 404, job
    with _client(served, "reviewer-1") as reviewer:  # a reviewer may not search video
        assert _upload(reviewer, served["videos"]["moving"]).status_code == 403


def test_a_job_running_when_the_server_dies_is_reported_failed_with_nothing_recorded(served):
    """Runs last: it kills the module's server."""
    home = served["home"]
    engine = open_test_engine(home)
    try:
        searches_before = len(engine.audit_entries(action="video.search", limit=10_000))
        with _client(served, "analyst-1") as client:
            job = _upload(client, served["videos"]["long"], every_ms=40).json()["job"]
            running = _wait(client, job, until=("running", "done", "failed"), partly=True)
        assert running["state"] == "running" and 0 < running["progress"] < 1, running
        os.kill(served["process"].pid, signal.SIGKILL)
        served["process"].wait(30)
        seen = engine.video_job(job, by=Principal("analyst-1", "analyst"))
        assert seen["state"] == "failed" and seen["error"] == DIED and seen["video_deleted"] is True
        assert not (home / "video" / "jobs" / job / "upload").exists()
        assert len(engine.audit_entries(action="video.search", limit=10_000)) == searches_before
    finally:
        engine.close()
