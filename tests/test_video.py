"""Video search, redaction and decoding on tiny videos made in code from the committed stills."""

from __future__ import annotations

import base64
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from faceledger.config import Settings
from faceledger.engine import open_engine
from faceledger.errors import FaceledgerError, MissingField, NotFound, PolicyViolation
from faceledger.store import FaceRecord, Probe
from faceledger.video.decode import VideoError, VideoLimits, VideoTooLarge, frames, probe

from .video_scenes import (
    FACE_A,
    FACE_B,
    OPEN_FACES,
    crossing,
    cut_leave_return,
    moving,
    still_frames,
    write,
)

TOL = 0.25  # seconds: one sampling step (200 ms) plus rounding


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {"moving": write(moving(), folder / "moving.mp4"), "crossing": write(crossing(), folder / "crossing.mp4"),
            "cut": write(cut_leave_return(), folder / "cut.mp4"),
            "rotated": write(moving(), folder / "rotated.mp4", rotation=90)}


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    """A gallery holding Macron (a photo eleven years from the one in the videos) and Ardern."""
    engine = open_engine(Settings(home=tmp_path_factory.mktemp("home"), operator="test-analyst"))
    engine.create_gallery("g", purposes=["investigation"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="macron", source="test", legal_basis="b")
    engine.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="g", subject="ardern", source="test", legal_basis="b")
    yield engine
    engine.close()


def _search(eng, video, **kw):
    return eng.video_search(video, gallery="g", purpose="investigation", case="C-1", **kw)


def test_one_moving_face_is_one_track_searched_once(eng, videos):
    result = _search(eng, videos["moving"])
    assert len(result.tracks) == 1 and result.searches == 1
    track = result.tracks[0]
    assert track.status == "candidates" and track.candidates[0].subject == "macron"
    assert abs(track.first_s - 0.0) <= TOL and abs(track.last_s - 2.9) <= TOL
    assert track.frames == result.frames_sampled == 15
    data = result.as_json()
    assert base64.b64decode(data["tracks"][0]["thumbnail_jpeg"])[:2] == b"\xff\xd8"
    assert data["bystanders"] == {"tracks": 0, "kept": "time ranges only"}
    entry = eng.audit_entries(action="video.search")[-1]
    assert entry["entry_id"] == result.ledger_entry
    assert entry["payload"]["video"]["sha256"] == result.video["sha256"]
    assert entry["payload"]["every_ms"] == 200 and entry["payload"]["searches"] == 1


def test_crossing_faces_stay_two_tracks_and_the_bystander_keeps_only_times(eng, videos):
    result = _search(eng, videos["crossing"])
    assert len(result.tracks) == 2
    hits = [t for t in result.tracks if t.status == "candidates"]
    assert len(hits) == 1 and hits[0].candidates[0].subject == "macron"
    assert hits[0].frames == 15  # A (in front) is followed through the crossing without a switch
    data = result.as_json()
    bystander = next(t for t in data["tracks"] if t["status"] != "candidates")
    assert set(bystander) == {"track", "first_s", "last_s", "frames", "status"}
    assert data["bystanders"]["tracks"] == 1
    payload = eng.audit_entries(action="video.search")[-1]["payload"]
    ledgered = next(t for t in payload["tracks"] if t["track"] == bystander["track"])
    assert set(ledgered) == {"track", "first_s", "last_s", "frames", "status"}
    assert "thumbnail" not in json.dumps(payload)


def test_cut_and_a_face_that_leaves_and_returns(eng, videos):
    result = _search(eng, videos["cut"])
    spans = [(round(t.first_s, 1), round(t.last_s, 1), t.status) for t in result.tracks]
    assert len(result.tracks) == 3, spans
    a1, b, a2 = result.tracks
    assert abs(a1.first_s - 0.0) <= TOL and abs(a1.last_s - 0.9) <= TOL
    assert abs(b.first_s - 1.0) <= TOL and abs(b.last_s - 1.9) <= TOL
    assert abs(a2.first_s - 3.5) <= TOL and abs(a2.last_s - 4.4) <= TOL
    assert a1.candidates[0].subject == "macron" and a2.candidates[0].subject == "macron"
    assert b.status != "candidates"


def test_nothing_of_a_bystander_is_stored(eng, videos):
    with eng.sessions() as session:
        faces_before = session.query(FaceRecord).count()
    _search(eng, videos["crossing"])
    with eng.sessions() as session:
        assert session.query(Probe).count() == 0  # no per-track probe rows: nothing kept beyond the ledger
        assert session.query(FaceRecord).count() == faces_before
    home = eng.settings.home
    for path in home.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm"):
            assert b"\xff\xd8\xff" not in path.read_bytes(), path  # no face crop written as a file


def test_rotation_metadata_is_applied(eng, videos):
    info = probe(videos["rotated"])
    assert info.rotation in (90, 270) and (info.width, info.height) == (320, 240)
    first = next(frames(videos["rotated"], every_ms=200))
    assert first.rgb.shape == (240, 320, 3)
    upright = next(frames(videos["moving"], every_ms=200)).rgb.astype(int)
    assert np.abs(first.rgb.astype(int) - upright).mean() < 6  # the same picture, turned back upright
    result = _search(eng, videos["rotated"])
    assert [t.candidates[0].subject for t in result.tracks if t.candidates] == ["macron"]


def test_search_is_refused_and_ledgered_without_purpose_or_with_another_purpose(eng, videos):
    with pytest.raises(MissingField):
        eng.video_search(videos["moving"], gallery="g", purpose=None, case="C-1")
    with pytest.raises(PolicyViolation):
        eng.video_search(videos["moving"], gallery="g", purpose="curiosity", case="C-1")
    denied = eng.audit_entries(action="denied")[-2:]
    assert [d["payload"]["attempted"] for d in denied] == ["video.search", "video.search"]
    with pytest.raises(FaceledgerError, match="every-ms"):
        _search(eng, videos["moving"], every_ms=5)


@pytest.mark.parametrize("suffix,codec,pix_fmt", [
    (".webm", "libvpx", "yuv420p"), (".webm", "libvpx-vp9", "yuv420p"), (".mkv", "libx264", "yuv420p"),
    (".mov", "libx264", "yuv420p"), (".avi", "mjpeg", "yuvj420p"),
])
def test_containers_and_codecs_decode_with_timestamps(tmp_path, suffix, codec, pix_fmt):
    path = write(still_frames(1.0), tmp_path / f"clip{suffix}", codec=codec, pix_fmt=pix_fmt)
    info = probe(path)
    assert (info.width, info.height) == (320, 240)
    decoded = list(frames(path, every_ms=200))
    assert [round(f.t, 1) for f in decoded] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert all(f.rgb.shape == (240, 320, 3) for f in decoded)


def _audio_only(path: Path) -> Path:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    for i in range(20):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_bad_videos_are_clear_errors(tmp_path, videos):
    data = videos["moving"].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("truncated.mp4", "noise.mp4", "empty.mp4"):
        with pytest.raises(VideoError):
            probe(tmp_path / name)
    with pytest.raises(VideoError, match="no video stream"):
        probe(_audio_only(tmp_path / "voice.m4a"))
    with pytest.raises(VideoTooLarge, match="VIDEO_MAX_SECONDS"):
        probe(videos["moving"], limits=VideoLimits(max_seconds=1.0))
    with pytest.raises(VideoTooLarge, match="VIDEO_MAX_BYTES"):
        probe(videos["moving"], limits=VideoLimits(max_bytes=1000))
    with pytest.raises(VideoTooLarge, match="pixels"):
        probe(videos["moving"], limits=VideoLimits(max_pixels=320 * 200))


def test_a_bad_video_search_is_a_ledgered_failure(eng, tmp_path, videos, monkeypatch):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        _search(eng, tmp_path / "empty.mp4")
    assert eng.audit_entries(action="video.search")[-1]["payload"]["decision"] == "failed"
    front = write(moving(), tmp_path / "front.mp4", options={"movflags": "faststart"})  # index first
    (tmp_path / "cut-short.mp4").write_bytes(front.read_bytes()[: int(front.stat().st_size * 0.6)])
    with pytest.raises(VideoError, match=r"stop at 0\.\d s of the 3\.0 s .*truncated"):
        _search(eng, tmp_path / "cut-short.mp4")
    monkeypatch.setattr(eng.settings, "video_max_seconds", 2.0)
    with pytest.raises(VideoTooLarge, match="over the video limit of 2 s"):
        _search(eng, videos["moving"])


def test_redaction_leaves_no_detectable_face_but_the_kept_track(eng, videos, tmp_path):
    tracks = eng.video_tracks(videos["crossing"])
    searched = _search(eng, videos["crossing"])
    keep = next(t.track for t in searched.tracks if t.status == "candidates")
    assert {t["track"] for t in tracks} == {t.track for t in searched.tracks}
    out = tmp_path / "redacted.mp4"
    summary = eng.video_redact(videos["crossing"], out=out, keep_tracks=(keep,))
    assert summary["blurred_tracks"] == 1 and summary["frames_written"] == 30
    assert eng.audit_entries(action="video.redact")[-1]["entry_id"] == summary["ledger_entry"]
    scene = crossing()
    seen_a = 0
    for frame in frames(out):
        truth = dict(scene.truth[frame.index])
        for face in eng.pipeline.faces(frame.rgb, embed=False):
            cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
            x0, y0, x1, y1 = truth[FACE_A]  # the pasted square around the kept face (A is in front)
            assert x0 <= cx <= x1 and y0 <= cy <= y1, f"frame {frame.index}: a face left unblurred at {face.box}"
            seen_a += 1
        assert FACE_B in truth
    assert seen_a >= 25  # the kept face is still there


def test_redacting_an_unknown_track_is_refused(eng, videos, tmp_path):
    with pytest.raises(NotFound, match="no track 9"):
        eng.video_redact(videos["moving"], out=tmp_path / "out.mp4", keep_tracks=(9,))


def test_redacting_every_track_leaves_no_face_on_any_frame(eng, videos, tmp_path):
    out = tmp_path / "nobody.webm"
    summary = eng.video_redact(videos["cut"], out=out, keep_tracks=())
    assert summary["blurred_tracks"] == 3 and summary["frames_written"] == 45
    assert probe(out).codec == "vp9"
    assert sum(len(eng.pipeline.faces(f.rgb, embed=False)) for f in frames(out)) == 0


def test_the_cli_searches_a_video_and_prints_json(eng, videos, capsys, monkeypatch):
    from faceledger import cli

    def run(*args):
        monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(eng.settings.home), *map(str, args)])
        monkeypatch.setenv("FACELEDGER_OPERATOR", "cli-tester")
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = run("video", "search", videos["crossing"], "--gallery", "g", "--purpose", "investigation",
                       "--case", "C-9", "--json")
    data = json.loads(out)
    assert code == 0 and data["decision"] == "match" and data["bystanders"]["tracks"] == 1
    code, out, _ = run("video", "tracks", videos["crossing"], "--json")
    assert code == 0 and len(json.loads(out)) == 2
    code, _, err = run("video", "search", videos["crossing"], "--gallery", "g", "--case", "C-9")
    assert code == 2 and "purpose is required" in err
    code, _, err = run("watch", videos["moving"], "--gallery", "g", "--purpose", "investigation", "--case", "C-9",
                       "--authorisation", "A-1")
    assert code == 2 and "not allowed for live use" in err


def test_faces_found_on_a_scaled_copy_are_judged_and_placed_on_the_full_frame(eng):
    import cv2

    from faceledger.video.shots import observe

    eng.pipeline.load()
    frame = moving().frames[10]
    big = cv2.resize(frame, (960, 720), interpolation=cv2.INTER_CUBIC)
    native = observe(eng.pipeline, 0.0, 0, big)
    scaled = observe(eng.pipeline, 0.0, 0, big, detect_max_side=320)
    assert len(native) == len(scaled) == 1
    assert np.allclose(native[0].box, scaled[0].box, atol=12)  # back in full-frame pixels
    assert abs(native[0].quality.face_size - scaled[0].quality.face_size) < 12


def test_only_some_looks_are_embedded(eng, videos):
    from faceledger.video.analyse import analyse

    analysis = analyse(eng.pipeline, videos["moving"], every_ms=200)
    track = analysis.tracks[0]
    embedded = sum(1 for o in track.observations if o.embedding is not None)
    assert len(track.observations) == 15 and embedded <= 6  # one look a second on a face nobody crosses


def test_roles_are_checked_before_anything_is_decoded(eng, videos):
    from faceledger.errors import PermissionDenied

    _, token = eng.add_user("rita", role="reviewer")
    reviewer = eng.authenticate(token)
    with pytest.raises(PermissionDenied):
        eng.video_search(videos["moving"], gallery="g", purpose="investigation", case="C-1", by=reviewer)
    with pytest.raises(PermissionDenied):
        eng.video_redact(videos["moving"], out=videos["moving"].with_name("x.mp4"), by=reviewer)
    with pytest.raises(PermissionDenied):
        eng.allow_live("g", by=reviewer)
    assert [d["payload"]["attempted"] for d in eng.audit_entries(action="denied")[-3:]] == [
        "search", "search", "gallery.update"]


def test_variable_frame_rate_is_sampled_by_timestamp(tmp_path):
    import av

    times_ms = [0, 40, 80, 330, 370, 900, 940, 1210, 1500]
    frame = still_frames(0.1).frames[0]
    path = tmp_path / "vfr.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    for ms in times_ms:
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts, video_frame.time_base = ms, Fraction(1, 1000)
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    decoded = list(frames(path, every_ms=200, all_frames=True))
    assert [round(f.t * 1000) for f in decoded] == times_ms
    # the first frame at or after each 200 ms step: 0, (200→)330, (400→)900, (1000→)1210, (1400→)1500
    assert [round(f.t * 1000) for f in decoded if f.sampled] == [0, 330, 900, 1210, 1500]
