"""Peak memory and wall time of one probe search's image work (load + single_face) for hostile images.

Each image is run in a fresh child process (capped with RLIMIT_AS so a blow-up cannot take the machine)
that loads the models, notes its resident size, then loads the image and looks for its face the
way the engine's search does; the table reports the peak RSS growth over the loaded-model baseline.

    PYTHONPATH=src python benchmarks/hostile_images.py                      # this checkout
    python benchmarks/hostile_images.py --src /tmp/before/src --label before  # another checkout's code

Writes benchmarks/results/hostile_images.json (one entry per --label) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import hostile

CHILD = r"""
import inspect, json, resource, sys, time
cap = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from faceledger.config import Settings
from faceledger.imaging import load_image
from faceledger.pipeline import FacePipeline
from faceledger.errors import FaceledgerError
settings = Settings()
pipeline = FacePipeline.from_settings(settings)
pipeline.load()
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss also counts the parent's high-water mark.
# Baseline: the resident size with the models loaded; growth = this process's peak RSS minus it (an
# over-estimate when loading the models peaked higher than the image work).
base = status("VmRSS:")
start = time.perf_counter()
new_api = "max_side" in inspect.signature(load_image).parameters
try:
    if new_api:
        image = load_image(sys.argv[1], max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                           max_side=settings.max_image_side, max_aspect=settings.max_image_aspect,
                           work_side=settings.detect_max_side)
        face = pipeline.single_face(image, name="probe", on_multiple="largest")
    else:
        image = load_image(sys.argv[1], max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        face = pipeline.single_face(image.rgb, name="probe", on_multiple="largest")
    outcome = f"face {min(face.detection.width, face.detection.height):.0f} px"
except FaceledgerError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
except Exception as exc:
    outcome = f"CRASH {type(exc).__name__}: {str(exc).splitlines()[-1][:120] if str(exc) else ''}"
wall = time.perf_counter() - start
peak = status("VmHWM:")
print(json.dumps({"outcome": outcome, "wall_s": wall, "peak_delta_mb": (peak - base) / 1024,
                  "baseline_mb": base / 1024}))
"""


def phone_photo() -> bytes:
    """A 4032x3024 JPEG (quality 92) with a committed portrait upscaled into it."""
    import io

    from PIL import Image

    face = Image.open(ROOT / "tests/data/open-faces/obama_senate_portrait.jpg").convert("RGB")
    frame = hostile.phone_frame(face, height=1400)
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


CASES = {
    "png 60000x1000 grey": lambda: hostile.png(60000, 1000),
    "png 30000x1000 grey": lambda: hostile.png(30000, 1000),
    "png 59999999x1": lambda: hostile.png(59_999_999, 1),
    "jpeg header 7000x8500, truncated": lambda: hostile.jpeg_claiming(7000, 8500),
    "png 20000x2000 (limits: side, aspect 10)": lambda: hostile.png(20000, 2000),
    "png 7745x7745 grey (60 Mpx bomb)": lambda: hostile.png(7745, 7745),
    "png 7745x7745 16-bit grey": lambda: hostile.png(7745, 7745, mode="I16"),
    "png 7745x7745 RGBA": lambda: hostile.png(7745, 7745, mode="RGBA"),
    "jpeg 7745x7745 flat grey": lambda: hostile.jpeg(7745, 7745),
    "jpeg 4032x3024 phone photo": phone_photo,
    "png 1x1": lambda: hostile.png(1, 1),
}


def run_case(src: Path, path: Path, cap_bytes: int, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(cap_bytes)], capture_output=True,
                              check=False, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"outcome": f"killed after {timeout:.0f} s", "wall_s": None, "peak_delta_mb": None}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"outcome": f"child died (rc {done.returncode}, cap {cap_bytes / 2**30:.0f} GiB address space): {tail}",
                "wall_s": time.perf_counter() - start, "peak_delta_mb": None}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the faceledger source folder to measure")
    parser.add_argument("--label", default="after")
    parser.add_argument("--cap-gib", type=float, default=6.0, help="address-space cap of each child")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/hostile_images.json")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in CASES.items():
            data = make()
            path = Path(tmp) / ("case.jpg" if name.startswith("jpeg") else "case.png")
            path.write_bytes(data)
            result = run_case(args.src, path, int(args.cap_gib * 2**30), args.timeout)
            result.update(case=name, file_bytes=len(data))
            rows.append(result)
            print(f"{name}: {result}", file=sys.stderr, flush=True)
    results[args.label] = {"cap_gib": args.cap_gib, "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| case ({args.label}) | file | peak RSS growth | wall | outcome |\n| --- | ---: | ---: | ---: | --- |")
    for r in rows:
        peak = f"{r['peak_delta_mb']:,.0f} MB" if r.get("peak_delta_mb") is not None else "-"
        wall = f"{r['wall_s']:.2f} s" if r.get("wall_s") is not None else "-"
        print(f"| {r['case']} | {r['file_bytes']:,} B | {peak} | {wall} | {r['outcome'][:110]} |")


if __name__ == "__main__":
    main()
