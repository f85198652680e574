"""Point-and-scan cost per frame: a scan's frames against the naive peer that searches every frame.

    .venv/bin/python benchmarks/scan_frames.py            # well under a minute on 2 cores
    .venv/bin/python benchmarks/scan_frames.py --runs 1 --no-write

The frames are made here from committed stills (tests/data/open-faces, CREDITS.md), as the browser
sends them: 640×480 JPEGs (quality 85) of a face that approaches the camera (1 s small, 1 s coming
closer, then steady), about 3 a second. The gallery (a fresh temporary data directory) holds the 26
committed LFW people and Macron's 2025 portrait; the scanned face is Macron's 2014 portrait.

Rows, on the same frames in the same process after one warm-up of the models:
- scan: Engine.scan_frame for each frame until the scan searches (on a clock moved 1/3 s a frame, so
  the per-scan rate limit is not what is measured). "ms per frame" is the server's time for one frame
  while scanning; the last frame (the one that searches) is reported apart.
- per-frame peer: Engine.search on each frame the scan needed before it searched (what a page that
  snaps and searches a frame every 300 ms would cost over the same time): one ledgered search per
  frame, a failed search (also ledgered) for a frame without a usable face.

Prints a markdown table and writes benchmarks/results/scan_frames.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
W, H = 640, 480


def face_crop(pipeline, name: str) -> np.ndarray:
    from faceledger.imaging import load_image

    rgb = load_image(OPEN_FACES / name).rgb
    x0, y0, x1, y1 = pipeline.single_face(rgb, name=name, on_multiple="largest").box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 1.6
    return rgb[int(max(0, cy - side / 2)):int(cy + side / 2), int(max(0, cx - side / 2)):int(cx + side / 2)]


def frames(pipeline) -> list[bytes]:
    face = face_crop(pipeline, "macron_2014.jpg")
    sides = [90] * 3 + list(np.linspace(90, 340, 3).astype(int)) + [340] * 12
    out = []
    for side in sides:
        frame = np.full((H, W, 3), 128, np.uint8)
        x0, y0 = (W - side) // 2, (H - side) // 2
        frame[y0:y0 + side, x0:x0 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        _, buffer = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(buffer.tobytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from faceledger import open_engine
    from faceledger.errors import FaceledgerError

    with tempfile.TemporaryDirectory() as home:
        engine = open_engine(home=Path(home), operator="bench")
        engine.create_gallery("g", purposes=["bench"])
        people = sorted(p for p in LFW.iterdir() if p.is_dir())
        engine.enroll([min(p.glob("*.jpg")) for p in people], gallery="g", subject_from_folder=True,
                      source="LFW", legal_basis="research")
        engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="Emmanuel Macron", source="CC BY",
                      legal_basis="public record")
        engine.pipeline.load()
        data = frames(engine.pipeline)
        engine.search(data[-1], gallery="g", purpose="bench", case="warm-up")  # models and index warm
        clock = [0.0]
        engine.scans.clock = lambda: clock[0]
        scan_ms, last_ms, peer_ms, used, searches_peer, matches_peer = [], [], [], [], 0, 0
        load = os.getloadavg()[0]
        for run in range(args.runs):
            scan = engine.start_scan(gallery="g", purpose="bench", case=f"scan-{run}")["scan"]
            for i, frame in enumerate(data):
                started = time.perf_counter()
                answer = engine.scan_frame(scan, frame)
                elapsed = (time.perf_counter() - started) * 1000
                clock[0] += 1 / 3
                if answer["status"] != "scanning":
                    last_ms.append(elapsed)
                    used.append(i + 1)
                    assert answer["decision"] == "match", answer
                    break
                scan_ms.append(elapsed)
            for frame in data[:used[-1]]:  # the frames the scan needed
                started = time.perf_counter()
                try:
                    result = engine.search(frame, gallery="g", purpose="bench", case=f"peer-{run}")
                    matches_peer += result.decision == "match"
                except FaceledgerError:
                    pass
                peer_ms.append((time.perf_counter() - started) * 1000)
                searches_peer += 1
        engine.close()
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_1min_at_start": round(load, 2), "runs": args.runs,
        "frames": len(data), "frame": f"{W}x{H} JPEG q85, mean {statistics.mean(map(len, data)) / 1000:.0f} kB",
        "scan": {"median_ms_per_frame": round(statistics.median(scan_ms), 1),
                 "p90_ms_per_frame": round(sorted(scan_ms)[int(0.9 * (len(scan_ms) - 1))], 1),
                 "median_ms_searching_frame": round(statistics.median(last_ms), 1),
                 "frames_until_search": used, "searches_per_scan": 1, "ledger_entries_per_scan": 1},
        "per_frame_peer": {"median_ms_per_frame": round(statistics.median(peer_ms), 1),
                           "searches_per_scan": searches_peer / args.runs,
                           "ledger_entries_per_scan": searches_peer / args.runs,
                           "matches_per_scan": matches_peer / args.runs},
    }
    s, p = result["scan"], result["per_frame_peer"]
    print(f"load {load:.1f} on {os.cpu_count()} cpus; {len(data)} frames, {args.runs} runs\n")
    print("| | ms per frame (median) | searches per scan | ledger entries per scan |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| scan | {s['median_ms_per_frame']} (p90 {s['p90_ms_per_frame']}; the searching frame "
          f"{s['median_ms_searching_frame']}) | 1 | 1 |")
    print(f"| per-frame peer | {p['median_ms_per_frame']} | {p['searches_per_scan']:g} | "
          f"{p['ledger_entries_per_scan']:g} |")
    if not args.no_write:
        out = REPO / "benchmarks" / "results" / "scan_frames.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
