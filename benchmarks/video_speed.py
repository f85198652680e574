"""Video search speed: faceledger's track-then-search against a per-frame peer, on one 720p video.

    .venv/bin/python benchmarks/video_speed.py                 # about 1-2 minutes on 2 cores
    .venv/bin/python benchmarks/video_speed.py --seconds 6 --no-write

The video is made here from the committed stills in tests/data/open-faces (CREDITS.md): 1280×720,
25 fps, --seconds long (default 20), H.264 (libx264, crf 23), on a plain background with a slow
colour drift. Six appearances of five people: each face (160-240 px) moves across the frame and
grows or shrinks, enters and leaves at its own time; one person leaves and comes back (two
appearances). "Faces present" is the number of appearances, the ideal track count.

The gallery (a fresh temporary data directory) holds two of the five people, from other photos
(macron_2025, ardern_2018), plus the 26 committed LFW people as distractors (tests/data/lfw), so a
good answer names two people in three tracks and leaves three bystander tracks.

Rows (each timed end to end on the same file, after one warm-up of the models):
- faceledger: engine.video_search(every_ms=--every-ms): probe + sha256, decode, detect + embed on
  sampled frames, track, best shots, one search per track, one ledger entry.
- decode only: PyAV decoding every frame, converting the sampled ones to RGB (the floor).
- per-frame peer: decode every frame, detect + embed every face in every frame and search each face
  on its own (Searching.match, no ledger), the way a face_recognition-style loop over
  `face_locations` / `face_encodings` / `compare_faces` works. Same models, same index, and the same
  detection on a copy scaled to FACELEDGER_VIDEO_DETECT_MAX_SIDE (640), so the difference measured is
  sampling + tracking, not the scaling.

Speed is video seconds per wall second (2.0 = twice real time), and per CPU second of this process
(all its threads; the fairer figure on a shared machine, where "load" is the 1-minute load average
when the row started). Searches are index queries made.
Prints a markdown table and writes benchmarks/results/video_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
OPEN_FACES = REPO / "tests" / "data" / "open-faces"
LFW = REPO / "tests" / "data" / "lfw"
W, H, FPS = 1280, 720, 25

# (still, start s, end s, x from, x to, y, side from, side to) as fractions of the duration
APPEARANCES = [
    ("macron_2014.jpg", 0.00, 0.40, 0.15, 0.55, 0.45, 180, 220),
    ("obama_senate_portrait.jpg", 0.15, 0.60, 0.85, 0.45, 0.40, 200, 170),
    ("eileen_collins_nasa.png", 0.30, 1.00, 0.30, 0.70, 0.60, 160, 200),
    ("ardern_2022.jpg", 0.50, 0.90, 0.80, 0.20, 0.35, 220, 180),
    ("sunak_portrait.jpg", 0.05, 0.35, 0.60, 0.80, 0.70, 170, 170),
    ("macron_2014.jpg", 0.70, 1.00, 0.50, 0.90, 0.40, 200, 240),
]
ENROLLED = {"macron_2025.jpg": "macron", "ardern_2018.jpg": "ardern"}


def face_crops(pipeline) -> dict[str, np.ndarray]:
    from faceledger.imaging import load_image

    crops = {}
    for name in {a[0] for a in APPEARANCES}:
        rgb = load_image(OPEN_FACES / name).rgb
        face = pipeline.single_face(rgb, name=name, on_multiple="largest")
        x0, y0, x1, y1 = face.box
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 1.5
        crops[name] = rgb[int(max(0, cy - side / 2)):int(min(rgb.shape[0], cy + side / 2)),
                          int(max(0, cx - side / 2)):int(min(rgb.shape[1], cx + side / 2))].copy()
    return crops


def make_video(path: Path, seconds: float, crops: dict[str, np.ndarray]) -> None:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast"}
    n = int(seconds * FPS)
    for i in range(n):
        f = i / n
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = (int(110 + 30 * np.sin(6 * f)), 120, int(130 - 30 * np.sin(4 * f)))
        for name, a, b, x0, x1, y, s0, s1 in APPEARANCES:
            if not a <= f < b:
                continue
            g = (f - a) / (b - a)
            side = int(s0 + (s1 - s0) * g)
            cx, cy = int((x0 + (x1 - x0) * g) * W), int(y * H)
            face = cv2.resize(crops[name], (side, side), interpolation=cv2.INTER_AREA)
            fx, fy = cx - side // 2, cy - side // 2
            sx0, sy0, sx1, sy1 = max(0, fx), max(0, fy), min(W, fx + side), min(H, fy + side)
            frame[sy0:sy1, sx0:sx1] = face[sy0 - fy:sy1 - fy, sx0 - fx:sx1 - fx]
        for packet in stream.encode(__import__("av").VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def per_frame_peer(engine, video: Path) -> dict:
    from faceledger.video.decode import frames
    from faceledger.video.shots import detect_faces

    searches = faces = 0
    names = set()
    with engine.ctx.writing() as session:
        gallery = engine.ctx.gallery(session, "g")
        for frame in frames(video):
            for face in detect_faces(engine.pipeline, frame.rgb, engine.settings.video_detect_max_side):
                faces += 1
                match = engine.searching.match(session, gallery, face.embedding, top_k=5)
                searches += 1
                names.update(c.subject for c in match.candidates)
    return {"searches": searches, "faces_detected": faces, "subjects_named": sorted(names)}


def decode_only(video: Path, every_ms: float) -> int:
    from faceledger.video.decode import frames

    return sum(1 for _ in frames(video, every_ms=every_ms))


def timed(fn):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    load = os.getloadavg()[0]
    value = fn()
    return value, time.perf_counter() - start_wall, time.process_time() - start_cpu, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every-ms", type=float, default=200.0)
    parser.add_argument("--no-peer", action="store_true", help="skip the per-frame peer")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from faceledger.config import Settings
    from faceledger.engine import open_engine

    tmp = Path(tempfile.mkdtemp(prefix="video-speed-"))
    engine = open_engine(Settings(home=tmp / "home", operator="bench"))
    engine.pipeline.load()
    engine.create_gallery("g", purposes=["benchmark"])
    for still, subject in ENROLLED.items():
        engine.enroll([OPEN_FACES / still], gallery="g", subject=subject, source="bench", legal_basis="test")
    lfw = sorted(p for p in LFW.rglob("*.jpg"))
    engine.enroll(lfw, gallery="g", subject_from_folder=True, source="bench", legal_basis="test", on_multiple="largest")
    video = tmp / "bench-720p.mp4"
    make_video(video, args.seconds, face_crops(engine.pipeline))
    duration = args.seconds

    def ours():
        return engine.video_search(video, gallery="g", purpose="benchmark", case="bench", every_ms=args.every_ms)

    ours()  # warm-up (models, index)
    result, wall, cpu, load = timed(ours)
    sampled, d_wall, d_cpu, d_load = timed(lambda: decode_only(video, args.every_ms))
    rows = [{"method": f"faceledger (track, search each track once, every {args.every_ms:g} ms)",
             "wall_s": wall, "cpu_s": cpu, "load_before": load, "searches": result.searches,
             "tracks": len(result.tracks), "frames_analysed": result.frames_sampled,
             "subjects_named": sorted({c.subject for t in result.tracks for c in t.candidates}),
             "tracks_with_candidates": sum(1 for t in result.tracks if t.candidates),
             "track_spans": [[round(t.first_s, 2), round(t.last_s, 2), t.status] for t in result.tracks]},
            {"method": "decode only (PyAV, sampled frames to RGB)", "wall_s": d_wall, "cpu_s": d_cpu,
             "load_before": d_load, "frames_analysed": sampled}]
    if not args.no_peer:
        peer, p_wall, p_cpu, p_load = timed(lambda: per_frame_peer(engine, video))
        rows.append({"method": "per-frame peer (detect + embed + search every face of every frame)",
                     "wall_s": p_wall, "cpu_s": p_cpu, "load_before": p_load, "frames_analysed": int(duration * FPS),
                     **peer})
    for row in rows:
        row["x_realtime"] = duration / row["wall_s"]
        row["x_realtime_per_cpu_s"] = duration / row["cpu_s"]
    out = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "video": {
               "width": W, "height": H, "fps": FPS, "seconds": duration, "codec": "h264 crf 23",
               "faces_present": len(APPEARANCES), "people": len({a[0] for a in APPEARANCES}),
               "enrolled_people_in_video": 2}, "gallery_faces": result.gallery_size, "every_ms": args.every_ms,
           "rows": rows}
    print(f"\n720p {FPS} fps, {duration:g} s, {len(APPEARANCES)} face appearances of 5 people "
          f"(2 enrolled), gallery {result.gallery_size} faces\n")
    print("| method | wall s | × real time | CPU s | video s per CPU s | load | searches | tracks | named |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['method']} | {row['wall_s']:.1f} | {row['x_realtime']:.2f} | {row['cpu_s']:.1f} | "
              f"{row['x_realtime_per_cpu_s']:.2f} | {row['load_before']:.1f} | {row.get('searches', '')} | "
              f"{row.get('tracks', '')} | {', '.join(row.get('subjects_named', []))} |")
    if not args.no_write:
        target = REPO / "benchmarks" / "results" / "video_speed.json"
        target.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\nwrote {target.relative_to(REPO)}")
    engine.close()


if __name__ == "__main__":
    main()
