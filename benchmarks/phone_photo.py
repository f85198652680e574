"""A search probe from a 12 MP phone photo vs the same face in its 250-px LFW original.

For each of N LFW images (first image of the first N people with at least two, sorted), builds a
4032x3024 JPEG (quality 92): the LFW image upscaled so the face is about 400-800 px wide, pasted at a
random place on a neutral gradient with sensor-like noise. Times what a search does with the bytes
(load_image + pipeline.single_face, largest face) on the 12 MP JPEG and on the original, in the same
process (median per image of --repeat runs, then the median over images), and checks the embeddings
agree: cosine between the two, score differences against the person's second image (genuine) and a
fixed other person's image (impostor), and decision flips at the verification threshold.

    PYTHONPATH=src python benchmarks/phone_photo.py --label after
    PYTHONPATH=/tmp/before/src python benchmarks/phone_photo.py --label before   # older code

Writes benchmarks/results/phone_photo.json (one entry per --label) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import hostile

LFW = ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
THRESHOLD = 0.363
"""SFace's published cosine threshold (OpenCV Zoo), used only to count decision flips."""
LFW_FACE_FRACTION = 0.44
"""A deep-funneled LFW face box is about 110 of the image's 250 px."""


def people(root: Path, count: int) -> list[tuple[Path, Path]]:
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= 2:
            pairs.append((images[0], images[1]))
        if len(pairs) >= count:
            break
    return pairs


def phone_jpeg(path: Path, rng: np.random.Generator) -> tuple[bytes, int]:
    face_px = int(rng.integers(400, 801))
    source = Image.open(path).convert("RGB")
    height = round(source.height * face_px / (LFW_FACE_FRACTION * source.width))
    at = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.35, 0.6)))
    frame = hostile.phone_frame(source, height=height, at=at, seed=int(rng.integers(1 << 30)))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue(), face_px


def make_probe(pipeline, settings):
    from faceledger.imaging import load_image

    if "max_side" in inspect.signature(load_image).parameters:
        from faceledger.enrollment import load_with

        def probe(data: bytes):
            image = load_with(settings, data)
            return pipeline.single_face(image, name="probe", on_multiple="largest")
    else:  # the code before reduced-scale decoding
        def probe(data: bytes):
            image = load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
            return pipeline.single_face(image.rgb, name="probe", on_multiple="largest")
    return probe


def timed(function, data: bytes, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/phone_photo.json")
    args = parser.parse_args()

    import cv2

    from faceledger.config import Settings
    from faceledger.pipeline import FacePipeline

    cv2.setNumThreads(1)
    settings = Settings()
    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    probe = make_probe(pipeline, settings)
    rng = np.random.default_rng(2026)
    pairs = people(args.lfw, args.images + 1)
    impostor = probe(pairs[-1][0].read_bytes()).embedding  # a fixed other person
    rows, failures = [], []
    for first, second in pairs[:-1]:
        small = first.read_bytes()
        big, face_px = phone_jpeg(first, rng)
        try:
            mate = probe(second.read_bytes()).embedding
            t_small, f_small = timed(probe, small, args.repeat)
            t_big, f_big = timed(probe, big, args.repeat)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures.append(f"{first.name}: {type(exc).__name__}: {exc}")
            continue
        a, b = f_small.embedding, f_big.embedding
        rows.append({
            "embedding_small": [round(float(v), 6) for v in a], "embedding_big": [round(float(v), 6) for v in b],
            "image": first.name, "face_px": face_px, "jpeg_bytes": len(big), "t_small_ms": 1000 * t_small,
            "t_big_ms": 1000 * t_big, "cosine": float(a @ b), "genuine_small": float(a @ mate),
            "genuine_big": float(b @ mate), "impostor_small": float(a @ impostor), "impostor_big": float(b @ impostor),
        })
    t_small = statistics.median(r["t_small_ms"] for r in rows)
    t_big = statistics.median(r["t_big_ms"] for r in rows)
    diffs = [abs(r[f"{k}_big"] - r[f"{k}_small"]) for r in rows for k in ("genuine", "impostor")]
    flips = sum((r[f"{k}_big"] >= THRESHOLD) != (r[f"{k}_small"] >= THRESHOLD)
                for r in rows for k in ("genuine", "impostor"))
    summary = {
        "images": len(rows), "failures": failures, "median_ms_250px": t_small, "median_ms_12mp": t_big,
        "ratio": t_big / t_small, "cosine_min": min(r["cosine"] for r in rows),
        "cosine_median": statistics.median(r["cosine"] for r in rows), "score_diff_max": max(diffs),
        "score_diff_median": statistics.median(diffs), "decision_flips": flips, "comparisons": len(diffs),
        "threshold": THRESHOLD, "repeat": args.repeat,
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.label != "before" and "before" in results:  # the same 12 MP frames through the older code
        older = {r["image"]: r for r in results["before"]["rows"]}
        same = [(r, older[r["image"]]) for r in rows if r["image"] in older]
        summary["vs_before_12mp"] = {
            "images": len(same),
            "cosine_min": min(float(np.dot(r["embedding_big"], o["embedding_big"])) for r, o in same),
            "score_diff_max": max(abs(r[f"{k}_big"] - o[f"{k}_big"]) for r, o in same for k in ("genuine", "impostor")),
            "decision_flips": sum((r[f"{k}_big"] >= THRESHOLD) != (o[f"{k}_big"] >= THRESHOLD)
                                  for r, o in same for k in ("genuine", "impostor")),
        }
        print(f"same 12 MP frames, this code vs the older code: {summary['vs_before_12mp']}")
    results[args.label] = {"summary": summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("{\n" + ",\n".join(  # one row per line: the embeddings would take 30,000 lines
        f' "{label}": {{\n  "summary": {json.dumps(entry["summary"])},\n  "rows": [\n'
        + ",\n".join("   " + json.dumps(row) for row in entry["rows"]) + "\n  ]\n }"
        for label, entry in results.items()) + "\n}\n")
    print("| code | images | 250-px median | 12 MP median | ratio | cosine min / median | "
          "score diff max / median | decision flips |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    s = summary
    print(f"| {args.label} | {s['images']} | {s['median_ms_250px']:.1f} ms | {s['median_ms_12mp']:.1f} ms | "
          f"{s['ratio']:.2f}x | {s['cosine_min']:.4f} / {s['cosine_median']:.4f} | "
          f"{s['score_diff_max']:.4f} / {s['score_diff_median']:.4f} | {flips} of {len(diffs)} |")
    if failures:
        print(f"failures: {failures}")


if __name__ == "__main__":
    main()
