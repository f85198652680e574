"""Decoding the 12 MP phone photos of benchmarks/phone_photo.py: Pillow vs simplejpeg, and their sha256.

The same frames as phone_photo.py (same seed), each decoded at full, 1/2, 1/4 and 1/8 DCT scale by Pillow
(`draft`, then `np.asarray`, as faceledger.imaging did) and by simplejpeg (as faceledger.imaging now does
for colour JPEGs) in alternating order, and hashed (sha256, which load_image now runs on a thread beside
the decode). CPU ms of the calling thread (the machine is shared), median per frame, then over frames;
whether the two decoders gave the same pixels.

    PYTHONPATH=src python benchmarks/jpeg_decode.py

Writes benchmarks/results/jpeg_decode.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.phone_photo import LFW, people, phone_jpeg  # the same frames

SCALES = (1, 2, 4, 8)


def pillow(data: bytes, scale: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (-(-image.width // scale), -(-image.height // scale)))
    return np.ascontiguousarray(np.asarray(image))


def turbo(data: bytes, scale: int) -> np.ndarray:
    width, height = simplejpeg.decode_jpeg_header(data)[:2][::-1]
    return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=-(-width // scale),
                                  min_height=-(-height // scale))


def cpu_ms(function, *args, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.thread_time()
        result = function(*args)
        times.append(1000 * (time.thread_time() - start))
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/jpeg_decode.json")
    args = parser.parse_args()

    rng = np.random.default_rng(2026)  # phone_photo.py's seed: its first frames
    frames = [phone_jpeg(first, rng)[0] for first, _ in people(args.lfw, args.images + 1)[:-1]]
    load = [os.getloadavg()[0]]
    rows = {f"{name} 1/{scale}": [] for scale in SCALES for name in ("pillow", "simplejpeg")}
    same = {scale: True for scale in SCALES}
    hashing = []
    for data in frames:
        for scale in SCALES:
            slow, a = cpu_ms(pillow, data, scale, repeat=args.repeat)
            fast, b = cpu_ms(turbo, data, scale, repeat=args.repeat)
            rows[f"pillow 1/{scale}"].append(slow)
            rows[f"simplejpeg 1/{scale}"].append(fast)
            same[scale] &= a.shape == b.shape and bool(np.array_equal(a, b))
        hashing.append(cpu_ms(lambda d: hashlib.sha256(d).hexdigest(), data, repeat=args.repeat)[0])
    load.append(os.getloadavg()[0])
    summary = {key: statistics.median(values) for key, values in rows.items()}
    result = {"loadavg_1min": load, "cpus": os.cpu_count(), "frames": len(frames), "repeat": args.repeat,
              "jpeg_bytes_median": statistics.median(len(d) for d in frames), "cpu_ms_median": summary,
              "sha256_cpu_ms_median": statistics.median(hashing), "same_pixels": {f"1/{s}": v for s, v in same.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} cores; {len(frames)} 4032x3024 frames "
          f"(median {result['jpeg_bytes_median'] / 1e6:.2f} MB), CPU ms of the calling thread, medians")
    print("| scale | Pillow | simplejpeg | Pillow / simplejpeg | same pixels |\n| --- | ---: | ---: | ---: | --- |")
    for scale in SCALES:
        slow, fast = summary[f"pillow 1/{scale}"], summary[f"simplejpeg 1/{scale}"]
        print(f"| 1/{scale} | {slow:.1f} ms | {fast:.1f} ms | {slow / fast:.2f}x | {'yes' if same[scale] else 'NO'} |")
    print(f"\nsha256 of a frame: {result['sha256_cpu_ms_median']:.2f} ms CPU")


if __name__ == "__main__":
    main()
