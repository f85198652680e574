"""Server memory while a large video is uploaded, against the photo upload path in the same run.

    .venv/bin/python benchmarks/video_upload_memory.py              # about a minute on 2 cores
    .venv/bin/python benchmarks/video_upload_memory.py --mb 128 --no-write

Starts `faceledger serve` on a fresh data directory (limits raised so both uploads are accepted as
bodies), then sends the same --mb megabytes of random bytes twice, as an analyst:

- video: `POST /api/v1/video/search`. The job streams the upload to disk in 1 MiB chunks, then opens
  it as a video: random bytes are not one, so the answer is 400 after the whole upload was copied.
- peer: `POST /api/v1/search` (the photo path), which reads the upload into memory (bytes) before it
  decodes it: random bytes are refused as an image after they were read.

The figure is the server's peak resident memory (VmHWM from /proc/PID/status) before and after each
request: its growth is what the request needed in memory at its worst. The video row runs first, so
its growth cannot be hidden under the peer's peak. Prints a markdown table and writes
benchmarks/results/video_upload_memory.json.
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

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="upload size in MB (default 256)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from tests.servers import running_serve

    from faceledger.config import Settings
    from faceledger.engine import open_engine

    size = args.mb * 1024 * 1024
    body_path = Path(tempfile.mkdtemp()) / "upload.bin"
    with open(body_path, "wb") as out:
        out.writelines(os.urandom(1024 * 1024) for _ in range(args.mb))
    home = Path(tempfile.mkdtemp()) / "home"
    engine = open_engine(Settings(home=home, operator="bench"))
    engine.create_gallery("g")
    token = engine.add_user("bench-analyst", role="analyst")[1]
    engine.close()
    env = {"FACELEDGER_VIDEO_MAX_BYTES": str(size * 2), "FACELEDGER_MAX_UPLOAD_BYTES": str(size * 2),
           "FACELEDGER_MAX_IMAGE_BYTES": str(size * 2), "FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}
    rows = []
    with running_serve(home, home.parent / "server.log", env=env, start_within=180) as (base, process):
        headers = {"Authorization": f"Bearer {token}"}
        form = {"gallery": "g", "purpose": "benchmark", "case": "B-1"}
        for name, path, field in (("video: POST /api/v1/video/search", "/api/v1/video/search", "video"),
                                  ("peer: POST /api/v1/search (photo path)", "/api/v1/search", "image")):
            before = peak_kib(process.pid)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            with open(body_path, "rb") as handle:
                answer = httpx.post(base + path, headers=headers, data=form, files={field: ("upload.bin", handle)},
                                    timeout=600)
            wall = time.perf_counter() - started
            after = peak_kib(process.pid)
            rows.append({"request": name, "status": answer.status_code, "detail": answer.json().get("detail", "")[:120],
                         "upload_mb": args.mb, "peak_before_mb": round(before / 1024, 1),
                         "peak_after_mb": round(after / 1024, 1), "growth_mb": round((after - before) / 1024, 1),
                         "growth_per_upload_mb": round((after - before) / 1024 / args.mb, 3),
                         "wall_s": round(wall, 2), "load_1min": round(load, 2)})
    leftovers = sorted(str(p.relative_to(home)) for p in (home / "video" / "jobs").rglob("*")
                       if p.is_file() and "runners" not in p.parts)
    body_path.unlink()

    print(f"| request ({args.mb} MB of random bytes) | status | server peak RSS before → after (MB) | growth (MB) "
          "| growth / upload | wall s | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['request']} | {r['status']} | {r['peak_before_mb']} → {r['peak_after_mb']} | {r['growth_mb']} "
              f"| {r['growth_per_upload_mb']} | {r['wall_s']} | {r['load_1min']} |")
    print(f"files left under video/jobs after the refused video upload: {leftovers or 'none'}")
    if not args.no_write:
        out = REPO / "benchmarks" / "results" / "video_upload_memory.json"
        out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), "machine": platform.platform(),
                                   "cpus": os.cpu_count(), "rows": rows, "leftover_files": leftovers}, indent=1))
        print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
