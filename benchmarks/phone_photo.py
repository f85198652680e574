"""A search probe from a 12 MP phone photo vs the same face in its 250-px LFW original.

For each of N LFW images (first image of the first N people with at least two, sorted), builds a
4032x3024 JPEG (quality 92): the LFW image upscaled so the face is about 400-800 px wide, pasted at a
random place on a neutral gradient with sensor-like noise. In one process, for both the 12 MP JPEG and
the 250-px original (median per image of --repeat runs, then the median over images; the two sizes
interleaved so both see the same load):

- image stage: what a search does with the bytes before the index (load_with + single_face, largest face);
- engine.search end to end (the issue's row): a fresh engine whose gallery holds every person's second
  image (enrolled through engine.enroll), searched with the bytes (purpose, case, ledger entry, probe
  record: everything a search does).

Accuracy, per image, against the person's second image (genuine) and a fixed other person (impostor):
scores of the 12 MP path vs the full-resolution path (the same pipeline on the fully decoded 12 MP image:
only the reduced-scale decode differs), vs the older full pass (detect on the 1280-px copy of the full
decode: `coarse_side=0`), and vs the 250-px original; decision flips at SFace's threshold.

    PYTHONPATH=/tmp/phone-before/src python benchmarks/phone_photo.py --label before   # the code on main
    PYTHONPATH=src python benchmarks/phone_photo.py --label after

Writes benchmarks/results/phone_photo.json (one entry per --label) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
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
PATHS = ("big", "full", "fullpass", "small")
"""12 MP reduced path, 12 MP full decode same pipeline, 12 MP full decode older full pass, 250-px original."""


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


def median_ms(function, data: bytes, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(data)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), result


def paired(function, small: bytes, big: bytes, repeat: int):
    """Median ms of function on each input, runs interleaved (small, big, small, ...)."""
    t_small, t_big = [], []
    for _ in range(repeat):
        t_small.append(median_ms(function, small, 1)[0])
        t_big.append(median_ms(function, big, 1)[0])
    return statistics.median(t_small), statistics.median(t_big)


@contextlib.contextmanager
def counting_decodes():
    """The calls to faceledger.imaging.decode_scaled (every decode of an upload, at any scale) inside."""
    from faceledger import imaging

    calls, real = [], imaging.decode_scaled

    def counted(*args, **kwargs):
        calls.append(kwargs.get("min_side"))
        return real(*args, **kwargs)

    imaging.decode_scaled = counted
    try:
        yield calls
    finally:
        imaging.decode_scaled = real


def loadavg() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/phone_photo.json")
    args = parser.parse_args()

    import cv2

    from faceledger import open_engine
    from faceledger.config import Settings
    from faceledger.enrollment import load_with
    from faceledger.imaging import decode
    from faceledger.pipeline import FacePipeline

    cv2.setNumThreads(1)
    settings = Settings()
    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    fullpass = replace(pipeline, coarse_side=0)

    def probe(data: bytes):
        return pipeline.single_face(load_with(settings, data), name="probe", on_multiple="largest")

    rng = np.random.default_rng(2026)
    pairs = people(args.lfw, args.images + 1)
    impostor = probe(pairs[-1][0].read_bytes()).embedding  # a fixed other person
    frames = {first.name: phone_jpeg(first, rng) for first, _ in pairs[:-1]}
    load = [loadavg()]

    rows, failures = [], []
    for first, second in pairs[:-1]:
        small, (big, face_px) = first.read_bytes(), frames[first.name]
        try:
            mate = probe(second.read_bytes()).embedding
            t_small, t_big = paired(probe, small, big, args.repeat)
            full_rgb = decode(big, max_pixels=settings.max_image_pixels)[0]
            vectors = {"big": probe(big).embedding, "small": probe(small).embedding,
                       "full": pipeline.single_face(full_rgb, name="probe", on_multiple="largest").embedding,
                       "fullpass": fullpass.single_face(full_rgb, name="probe", on_multiple="largest").embedding}
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures.append(f"{first.name}: {type(exc).__name__}: {exc}")
            continue
        row = {"image": first.name, "face_px": face_px, "jpeg_bytes": len(big), "t_small_ms": t_small,
               "t_big_ms": t_big}
        for path in PATHS:
            row[f"genuine_{path}"] = float(vectors[path] @ mate)
            row[f"impostor_{path}"] = float(vectors[path] @ impostor)
            row[f"embedding_{path}"] = [round(float(v), 6) for v in vectors[path]]
        rows.append(row)
    load.append(loadavg())

    # engine.search end to end: the mates enrolled, each probe searched as bytes, 12 MP and 250 px interleaved
    home = Path(tempfile.mkdtemp(prefix="faceledger-bench-phone-"))
    searched = {}
    try:
        engine = open_engine(Settings(home=home))
        engine.create_gallery("phone")
        engine.enroll([str(second) for _, second in pairs[:-1]], gallery="phone", subject_from_folder=True,
                      source="LFW benchmark", legal_basis="research", on_multiple="largest")

        def search(data: bytes):
            return engine.search(data, gallery="phone", purpose="benchmark", case="bench-phone-photo",
                                 image_name="probe.jpg", on_multiple="largest")

        for row in rows:
            small = (args.lfw / row["image"].rsplit("_", 1)[0] / row["image"]).read_bytes()
            searched[row["image"]] = paired(search, small, frames[row["image"]][0], args.repeat)
            with counting_decodes() as decodes:  # one more search, counted: JPEG decodes of the 12 MP photo
                row["candidates"] = len(search(frames[row["image"]][0]).candidates)
            row["decodes_12mp_search"] = len(decodes)
        engine.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    load.append(loadavg())
    for row in rows:
        row["search_small_ms"], row["search_big_ms"] = searched[row["image"]]

    def med(key):
        return statistics.median(r[key] for r in rows)

    def compare(a: str, b: str) -> dict:
        diffs = [abs(r[f"{k}_{a}"] - r[f"{k}_{b}"]) for r in rows for k in ("genuine", "impostor")]
        flips = sum((r[f"{k}_{a}"] >= THRESHOLD) != (r[f"{k}_{b}"] >= THRESHOLD)
                    for r in rows for k in ("genuine", "impostor"))
        cosines = [float(np.dot(r[f"embedding_{a}"], r[f"embedding_{b}"])) for r in rows]
        return {"score_diff_max": max(diffs), "score_diff_median": statistics.median(diffs),
                "within_0.01": sum(d <= 0.01 for d in diffs), "comparisons": len(diffs), "decision_flips": flips,
                "cosine_min": min(cosines), "cosine_median": statistics.median(cosines)}

    summary = {
        "images": len(rows), "failures": failures, "repeat": args.repeat, "threshold": THRESHOLD,
        "loadavg_1min": load, "cpus": os.cpu_count(),
        "stage_ms_250px": med("t_small_ms"), "stage_ms_12mp": med("t_big_ms"),
        "stage_ratio": med("t_big_ms") / med("t_small_ms"),
        "stage_12mp_p10_p90": [float(np.percentile([r["t_big_ms"] for r in rows], q)) for q in (10, 90)],
        "search_ms_250px": med("search_small_ms"), "search_ms_12mp": med("search_big_ms"),
        "search_ratio": med("search_big_ms") / med("search_small_ms"),
        "search_ratio_per_image_median": statistics.median(r["search_big_ms"] / r["search_small_ms"] for r in rows),
        "searches_with_candidates": sum(r["candidates"] > 0 for r in rows),
        "searches_decoding_12mp_twice_or_more": sum(r["decodes_12mp_search"] > 1 for r in rows),
        "vs_full_decode": compare("big", "full"), "vs_full_pass": compare("big", "fullpass"),
        "vs_250px": compare("big", "small"), "full_pass_vs_250px": compare("fullpass", "small"),
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.label != "before" and "before" in results:  # the same 12 MP frames through the older code
        older = {r["image"]: r for r in results["before"]["rows"]}
        same = [(r, older[r["image"]]) for r in rows if r["image"] in older]
        diffs = [abs(r[f"{k}_big"] - o[f"{k}_big"]) for r, o in same for k in ("genuine", "impostor")]
        summary["vs_before_12mp"] = {
            "images": len(same), "score_diff_max": max(diffs), "within_0.01": sum(d <= 0.01 for d in diffs),
            "comparisons": len(diffs),
            "cosine_min": min(float(np.dot(r["embedding_big"], o["embedding_big"])) for r, o in same),
            "decision_flips": sum((r[f"{k}_big"] >= THRESHOLD) != (o[f"{k}_big"] >= THRESHOLD)
                                  for r, o in same for k in ("genuine", "impostor")),
        }
    results[args.label] = {"summary": summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("{\n" + ",\n".join(  # one row per line: the embeddings would take 60,000 lines
        f' "{label}": {{\n  "summary": {json.dumps(entry["summary"])},\n  "rows": [\n'
        + ",\n".join("   " + json.dumps(row) for row in entry["rows"]) + "\n  ]\n }"
        for label, entry in results.items()) + "\n}\n")

    s = summary
    print(f"load average {', '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} cores; {s['images']} images, "
          f"median of {args.repeat} runs each")
    print("| code | what | 250-px original | 12 MP photo | 12 MP / 250 px |\n| --- | --- | ---: | ---: | ---: |")
    print(f"| {args.label} | load + single_face | {s['stage_ms_250px']:.1f} ms | {s['stage_ms_12mp']:.1f} ms "
          f"(p10 {s['stage_12mp_p10_p90'][0]:.0f}, p90 {s['stage_12mp_p10_p90'][1]:.0f}) | {s['stage_ratio']:.2f}x |")
    print(f"| {args.label} | engine.search | {s['search_ms_250px']:.1f} ms | {s['search_ms_12mp']:.1f} ms | "
          f"{s['search_ratio']:.2f}x |")
    print(f"\n12 MP searches with a candidate (review crop kept): {s['searches_with_candidates']} of {s['images']}; "
          f"decoding the photo more than once: {s['searches_decoding_12mp_twice_or_more']}")
    print("\n| 12 MP path compared with | score diff max / median | within 0.01 | decision flips | "
          "cosine min / median |\n| --- | ---: | ---: | ---: | ---: |")
    for key, text in (("vs_full_decode", "the same pipeline on the full decode"),
                      ("vs_full_pass", "the full pass (1280-px copy of the full decode)"),
                      ("vs_before_12mp", "the older code, same frames"), ("vs_250px", "the 250-px original"),
                      ("full_pass_vs_250px", "(full pass vs the 250-px original)")):
        if key in s:
            c = s[key]
            print(f"| {text} | {c['score_diff_max']:.4f} / {c.get('score_diff_median', float('nan')):.4f} | "
                  f"{c['within_0.01']} of {c['comparisons']} | {c['decision_flips']} | "
                  f"{c['cosine_min']:.4f} / {c.get('cosine_median', float('nan')):.4f} |")
    if failures:
        print(f"failures: {failures}")


if __name__ == "__main__":
    main()
