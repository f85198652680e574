"""Live watch: a file played in real time and an MJPEG stream over HTTP, alerts to a local webhook,
a webhook that is down (spooled, then delivered), opt-in and authorisation."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest

pytest.importorskip("av")

from faceledger.config import Settings
from faceledger.engine import open_engine
from faceledger.errors import MissingField, PolicyViolation

from .servers import free_port
from .video_scenes import OPEN_FACES, crossing, moving, write


class Receiver:
    """A webhook receiver on 127.0.0.1 collecting the JSON bodies posted to it."""

    def __init__(self, port: int = 0) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Idempotency-Key"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    engine = open_engine(Settings(home=tmp_path_factory.mktemp("home"), operator="test-admin"))
    engine.create_gallery("g", purposes=["event security"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="macron", source="test", legal_basis="b")
    engine.create_gallery("closed")
    engine.allow_live("g")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {"moving": write(moving(seconds=2.0), folder / "moving.mp4"),
            "crossing": write(crossing(), folder / "crossing.mp4")}


def _watch(eng, source, **kw):
    kw.setdefault("gallery", "g")
    return eng.watch(str(source), purpose="event security", case="E-7", authorisation=kw.pop("auth", "AUTH-1"), **kw)


def test_watch_needs_the_gallery_opt_in_and_an_authorisation(eng, clips):
    with pytest.raises(PolicyViolation, match="allow-live closed"):
        _watch(eng, clips["moving"], gallery="closed")
    with pytest.raises(MissingField, match="authorisation"):
        _watch(eng, clips["moving"], auth=" ")
    denied = eng.audit_entries(action="denied")[-2:]
    assert [d["payload"]["attempted"] for d in denied] == ["watch", "watch"]
    payload = eng.audit_entries(action="video.allow_live")[0]["payload"]
    assert {k: v for k, v in payload.items() if k != "acting_from"} == {"gallery": "g", "allowed": True,
                                                                        "before": False}
    assert eng.gallery_info("g")["allow_live"] is True and eng.gallery_info("closed")["allow_live"] is False


def test_a_file_played_in_real_time_raises_one_alert_at_the_webhook(eng, clips):
    receiver = Receiver()
    printed = []
    try:
        summary = _watch(eng, clips["moving"], webhook=receiver.url, on_alert=printed.append)
    finally:
        receiver.close()
    assert summary["alerts"] == 1 and summary["tracks"] == 1 and summary["alerts_pending_delivery"] == 0
    assert len(receiver.received) == 1 and len(printed) == 1
    key, alert = receiver.received[0]
    assert key == alert["alert_id"] and alert["candidates"][0]["subject"] == "macron"
    assert alert["thumbnail_jpeg"] and alert["purpose"] == "event security"
    actions = [e["action"] for e in eng.audit_entries() if e["payload"].get("watch_id") == summary["watch_id"]]
    assert actions == ["watch.start", "watch.alert", "watch.stop"]


def test_a_webhook_that_is_down_spools_the_alert_and_delivers_it_on_retry(eng, clips):
    port = free_port()
    url = f"http://127.0.0.1:{port}/alerts"
    summary = _watch(eng, clips["crossing"], webhook=url, realtime=False)
    assert summary["alerts"] == 1 and summary["alerts_pending_delivery"] == 1, summary
    assert summary["bystanders"] == {"tracks": 1, "kept": "counts only"}, summary
    spooled = eng.watching.spool.pending()
    assert len(spooled) == 1 and spooled[0]["attempts"] >= 1 and spooled[0]["webhook"] == url
    receiver = Receiver(port)
    try:
        assert eng.retry_alerts() == {"delivered": 1, "pending": 0}
    finally:
        receiver.close()
    assert receiver.received[0][1]["alert_id"] == spooled[0]["id"]
    assert eng.watching.spool.pending() == []
    stop = eng.audit_entries(action="watch.stop")[-1]["payload"]
    assert stop["alerts_pending_delivery"] == 1 and stop["bystander_tracks"] == 1


class MjpegCamera:
    """An MJPEG camera server on 127.0.0.1 playing `scene` once per connection, in real time; with
    `connections`, later requests get 503 (the camera is gone)."""

    def __init__(self, scene, connections: int | None = None) -> None:
        self.requests: list[int] = []
        requests = self.requests

        class Stream(BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(len(requests) + 1)
                if connections is not None and len(requests) > connections:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for pixels in scene.frames:
                    jpeg = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                    self.wfile.write(jpeg + b"\r\n")
                    time.sleep(1 / scene.fps)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Stream)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_mjpeg_stream_over_http_is_watched(eng):
    camera = MjpegCamera(moving(seconds=2.0))
    alerts = []
    try:
        summary = _watch(eng, camera.url, on_alert=alerts.append, reconnects=0)  # the stream's end is the watch's end
    finally:
        camera.close()
    assert summary["frames"] >= 5 and summary["alerts"] == 1 and summary["reconnect_attempts"] == 0
    assert alerts[0]["candidates"][0]["subject"] == "macron"


def test_a_stream_that_drops_is_reopened_then_given_up_on(eng):
    """The camera's server serves the scene twice, dropping the connection after each, then answers 503:
    the watch reopens it (1 s, then 1 s, then 2 s later), each connection's face is its own track and
    alert, and after two failed attempts in a row it ends as 'source lost', ledgered."""
    camera = MjpegCamera(moving(seconds=1.5), connections=2)
    alerts = []
    try:
        summary = _watch(eng, camera.url, on_alert=alerts.append, reconnects=2)
    finally:
        camera.close()
    assert len(camera.requests) == 4 and summary["reconnect_attempts"] == 3
    assert summary["reason"].startswith("source lost: not reopened after 2 attempts"), summary["reason"]
    assert summary["alerts"] == 2 and {a["candidates"][0]["subject"] for a in alerts} == {"macron"}
    assert alerts[0]["track"] != alerts[1]["track"] and alerts[1]["first_s"] > alerts[0]["last_s"]
    stop = eng.audit_entries(action="watch.stop")[-1]["payload"]
    assert stop["watch_id"] == summary["watch_id"] and stop["reconnect_attempts"] == 3


def test_a_watch_stopped_from_outside_is_ledgered_as_stopped(eng, clips):
    stop = threading.Event()
    summary = _watch(eng, clips["moving"], on_alert=lambda alert: stop.set(), stop=stop)
    assert summary["reason"] == "stopped" and summary["alerts"] == 1 and summary["frames"] < 10
    stop_entry = eng.audit_entries(action="watch.stop")[-1]
    assert stop_entry["entry_id"] == summary["stop_entry"] and stop_entry["payload"]["reason"] == "stopped"


def test_a_source_that_cannot_be_opened_still_ledgers_start_and_stop(eng, tmp_path):
    from faceledger.video.decode import VideoError

    before = len(eng.audit_entries(action="watch.stop"))
    with pytest.raises(VideoError):
        _watch(eng, f"http://127.0.0.1:{free_port()}/nothing.mjpg")
    stops = eng.audit_entries(action="watch.stop")
    assert len(stops) == before + 1 and stops[-1]["payload"]["reason"].startswith("error")


def test_the_cli_allows_watches_and_retries(eng, clips, capsys, monkeypatch, tmp_path):
    from faceledger import cli

    def run(*args):
        monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(eng.settings.home), *map(str, args)])
        monkeypatch.setenv("FACELEDGER_OPERATOR", "cli-admin")
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = run("video", "allow-live", "closed")
    assert code == 0 and "'closed' is allowed for live use" in out
    code, out, err = run("watch", clips["moving"], "--gallery", "g", "--purpose", "event security", "--case", "E-8",
                         "--authorisation", "AUTH-2", "--max-seconds", "1.5")
    assert code == 0, err
    assert "ALERT track 1" in out and "macron" in out and "1 alert(s)" in out
    code, out, _ = run("video", "retry-alerts")
    assert code == 0 and "still pending 0" in out
    code, out, _ = run("video", "redact", clips["moving"], "--out", tmp_path / "r.mkv", "--json")
    assert code == 0 and json.loads(out)["blurred_tracks"] == 1
    code, out, _ = run("video", "allow-live", "closed", "--revoke")
    assert code == 0 and "no longer allowed" in out


def _cli(home, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                           *args], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_opt_in_set_in_one_process_decides_a_watch_in_another(tmp_path, clips):
    home = tmp_path / "home"
    engine = open_engine(Settings(home=home, operator="test-admin"))
    try:
        engine.create_gallery("live", purposes=["event security"])
        engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="live", subject="macron", source="t", legal_basis="b")
        with pytest.raises(PolicyViolation, match="not allowed for live use"):
            _watch(engine, clips["moving"], gallery="live", realtime=False)
        assert "allowed for live use" in _cli(home, "video", "allow-live", "live")
        assert engine.gallery_info("live")["allow_live"] is True
        assert _watch(engine, clips["moving"], gallery="live", realtime=False)["alerts"] == 1
        assert "no longer allowed" in _cli(home, "video", "allow-live", "live", "--revoke")
        with pytest.raises(PolicyViolation, match="not allowed for live use"):
            _watch(engine, clips["moving"], gallery="live", realtime=False)
        changes = [e["payload"]["allowed"] for e in engine.audit_entries(action="video.allow_live")]
        assert changes == [True, False]
    finally:
        engine.close()


def test_a_legacy_opt_in_file_is_carried_into_the_column_once(tmp_path):
    home = tmp_path / "home"
    engine = open_engine(Settings(home=home, operator="test-admin"))
    engine.create_gallery("old")
    engine.create_gallery("other")
    engine.close()
    legacy = home / "video" / "live-galleries.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"old": {"by": "admin-x", "at": "2026-01-01T00:00:00+00:00", "entry": "e1"},
                                  "removed-since": {"by": "admin-x"}}))
    engine = open_engine(Settings(home=home, operator="test-admin"))
    try:
        assert engine.gallery_info("old")["allow_live"] is True and engine.gallery_info("other")["allow_live"] is False
        assert not legacy.exists() and legacy.with_suffix(".json.migrated").is_file()
        migrated = engine.audit_entries(action="video.allow_live.migrated")
        assert len(migrated) == 1 and migrated[0]["payload"]["galleries"] == ["old"]
        assert migrated[0]["payload"]["not_found"] == ["removed-since"]
        assert migrated[0]["payload"]["allowed_by"]["old"] == "admin-x"
    finally:
        engine.close()
    engine = open_engine(Settings(home=home, operator="test-admin"))  # a second start carries nothing again
    try:
        assert len(engine.audit_entries(action="video.allow_live.migrated")) == 1
        assert engine.audit_verify().ok
    finally:
        engine.close()
