"""Enrolment throughput: faceledger's engine.enroll against a face_recognition-style dlib pipeline.

    .venv/bin/python benchmarks/enroll_throughput.py            # 2,000 images, about 9 minutes
    .venv/bin/python benchmarks/enroll_throughput.py --limit 200 --no-write   # quick look

The images: a seeded random sample (numpy default_rng(--seed), default seed 0) of --limit images
(default 2,000) drawn without replacement from the sorted list of every lfw-deepfunneled/*/*.jpg,
then put back into sorted path order (so each person's images sit together, as a folder would).

Rows:
- faceledger enroll, workers=1 and workers=2: one engine.enroll call on a fresh temporary data
  directory each time (SQLite store, subject_from_folder=True, on_multiple="largest"), timed
  end to end: hashing, decode, detect, quality, align, embed, store transactions, ledger entries,
  the worker pool's start-up and model loading, and the index save at the end.
- dlib peer, 1 process (in this process) and 2 processes (multiprocessing Pool, spawn, each
  process loads its models once): decode + HOG detect + 5-point landmarks + ResNet embedding of
  every face (face_recognition.face_encodings(load_image_file(path))), nothing stored. The pool's
  start-up and model loading are inside the timing, as they are for faceledger.

Per-stage medians (faceledger, single process, cv2 set to 1 thread, --stage-images images after 10
warm-up images, the same protocol as ../shared/reference/lfw-baseline.md): decode (read + sha256 +
Pillow decode + EXIF + RGB), detect per image (YuNet incl. the padded retry), embed per face
(ArcFace alignment + SFace forward + L2 norm), quality per face. The dlib per-stage medians come
from the timed 1-process dlib row itself (detect per image; landmarks + descriptor per face).

Prints a markdown table and writes benchmarks/results/enroll_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from peers import dlib_pipeline as peer

DEFAULT_LFW = Path("/work/shared/data/lfw/lfw-deepfunneled")
RESULTS = BENCH_DIR / "results" / "enroll_throughput.json"
TARGET_IMAGES_PER_S = 40.0
TARGET_RATIO = 5.0
REFERENCE = {  # ../shared/reference/lfw-baseline.md, same machine type, median ms
    "faceledger_detect_ms_per_image": 3.4, "faceledger_embed_ms_per_face": 16.0,
    "dlib_detect_ms_per_image": 23.5, "dlib_embed_ms_per_face": 79.0,
}


# -- shared helpers (search_latency.py imports these) ---------------------------------------------

def resolve_lfw(given: str | None) -> Path:
    """The lfw-deepfunneled folder: --lfw (the folder itself or its parent), else the default, else
    ../shared/data/lfw/lfw-deepfunneled relative to the repository."""
    candidates = [Path(given)] if given else [DEFAULT_LFW, REPO_ROOT / ".." / "shared" / "data" / "lfw"]
    for candidate in candidates:
        for folder in (candidate, candidate / "lfw-deepfunneled"):
            if folder.is_dir() and any(folder.glob("*/*.jpg")):
                return folder.resolve()
    raise SystemExit(f"no LFW images under {', '.join(map(str, candidates))} (pass --lfw)")


def lfw_images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.jpg"))


def seeded_sample(paths: list[Path], n: int, seed: int) -> list[Path]:
    """n paths drawn without replacement with numpy default_rng(seed), returned in sorted order."""
    n = min(n, len(paths))
    picked = np.random.default_rng(seed).choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(picked)]


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for module in ("numpy", "cv2", "faiss", "sqlalchemy", "PIL"):
        try:
            versions[module] = str(__import__(module).__version__)
        except Exception:  # noqa: BLE001 - a missing module is recorded, not fatal
            versions[module] = None
    versions["dlib"] = peer.dlib_version()
    try:
        import faceledger
        versions["faceledger"] = faceledger.__version__
    except Exception:  # noqa: BLE001
        versions["faceledger"] = None
    return {
        "cpu_model": cpu, "logical_cores": os.cpu_count(), "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
    }


def busy_cores(interval: float = 2.0) -> float:
    """How many cores the whole machine kept busy over `interval` seconds (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])
    try:
        busy0, total0 = sample()
        time.sleep(interval)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK") * interval
    return (busy1 - busy0) / ticks if total1 > total0 else float("nan")


def wait_until_idle(max_wait_s: float, threshold: float = 0.25) -> float:
    """Wait (up to max_wait_s) until other processes keep less than `threshold` cores busy.

    Timings taken while another job saturates the cores are meaningless; this records how busy the
    machine was just before the benchmark started, and the JSON keeps it.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_cores()
        if busy < threshold or time.monotonic() >= deadline:
            if busy >= threshold:
                print(f"warning: the machine is busy ({busy:.2f} cores in use by other processes); "
                      "timings will be pessimistic", file=sys.stderr)
            return busy
        print(f"waiting for the machine to go idle ({busy:.2f} cores busy) ...", file=sys.stderr)
        time.sleep(30)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def median(values) -> float | None:
    values = list(values)
    return float(np.median(values)) if values else None


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


# -- faceledger -------------------------------------------------------------------------------

def run_faceledger(paths: list[Path], workers: int) -> dict:
    from faceledger import Settings, open_engine

    home = Path(tempfile.mkdtemp(prefix="faceledger-bench-"))
    try:
        engine = open_engine(Settings(home=home))
        engine.create_gallery("bench")
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        report = engine.enroll([str(p) for p in paths], gallery="bench", subject_from_folder=True,
                               source="LFW deep-funneled (benchmark)", legal_basis="research benchmark",
                               on_multiple="largest", workers=workers)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        engine.close()
        summary = report.as_json()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "row": f"faceledger enroll, workers={workers}", "pipeline": "faceledger", "processes": workers,
        "images": len(paths), "seconds": wall, "images_per_s": len(paths) / wall, "cpu_s": cpu,
        "cores_busy": cpu / wall, "enrolled": summary["enrolled"], "duplicates": summary["duplicates"],
        "failed": summary["failed"], "faces": summary["faces_added"],
        "failures": summary["failures"][:20],
    }


def faceledger_stages(paths: list[Path], warmup: int = 10) -> dict:
    """Per-stage medians in one process with cv2 on one thread (the reference protocol)."""
    import cv2

    from faceledger import Settings
    from faceledger.imaging import load_image
    from faceledger.pipeline import FacePipeline
    from faceledger.quality import assess

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        pipeline = FacePipeline.from_settings(Settings(home=Path(tempfile.gettempdir())))
        pipeline.load()
        decode, detect, embed, quality, faces_per_image = [], [], [], [], []
        for n, path in enumerate(paths):
            t0 = time.perf_counter()
            image = load_image(path)
            t1 = time.perf_counter()
            detections = pipeline.detector.detect(image.rgb)
            t2 = time.perf_counter()
            for d in detections:
                t3 = time.perf_counter()
                crop = pipeline.embedder.aligned_crop(image.rgb, d.landmarks)
                assess(d, crop, pipeline.thresholds)
                t4 = time.perf_counter()
                pipeline.embedder.embed(image.rgb, d.landmarks)
                t5 = time.perf_counter()
                if n >= warmup:
                    quality.append(t4 - t3)
                    embed.append(t5 - t4)
            if n >= warmup:
                decode.append(t1 - t0)
                detect.append(t2 - t1)
                faces_per_image.append(len(detections))
    finally:
        cv2.setNumThreads(previous)
    return {
        "images": len(decode), "warmup_images": warmup, "cv2_threads": 1,
        "faces": int(sum(faces_per_image)), "mean_faces_per_image": float(np.mean(faces_per_image)),
        "decode_ms_per_image": 1000 * median(decode), "detect_ms_per_image": 1000 * median(detect),
        "embed_ms_per_face": 1000 * median(embed), "quality_ms_per_face": 1000 * median(quality),
        "pipeline_ms_per_image_mean": 1000 * (np.sum(decode) + np.sum(detect) + np.sum(embed)
                                              + np.sum(quality)) / len(decode),
    }


# -- dlib peer ---------------------------------------------------------------------------------

def run_dlib_single(paths: list[Path]) -> dict:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    pipeline = peer.DlibPipeline()
    pipeline.load()
    detect, embed, faces, failed = [], [], 0, 0
    for path in paths:
        try:
            rgb = peer.load_image_file(path)
            t1 = time.perf_counter()
            rects = pipeline.detect(rgb)
            t2 = time.perf_counter()
            detect.append(t2 - t1)
            for rect in rects:
                t3 = time.perf_counter()
                pipeline.embed(rgb, pipeline.landmarks(rgb, rect))
                embed.append(time.perf_counter() - t3)
            faces += len(rects)
            failed += not rects
        except Exception:  # noqa: BLE001 - the peer's failures are counted
            failed += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "row": "dlib peer, 1 process", "pipeline": "dlib", "processes": 1, "images": len(paths),
        "seconds": wall, "images_per_s": len(paths) / wall, "cpu_s": cpu, "cores_busy": cpu / wall,
        "faces": faces, "failed": failed,
        "stages": {"detect_ms_per_image": 1000 * median(detect), "embed_ms_per_face": 1000 * median(embed),
                   "note": "embed = 5-point landmarks + ResNet descriptor; medians over every image of the row"},
    }


def run_dlib_pool(paths: list[Path], processes: int) -> dict:
    context = multiprocessing.get_context("spawn")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    faces = failed = 0
    with context.Pool(processes, initializer=peer.init_worker) as pool:
        for _, n_faces, error in pool.imap(peer.encode_in_worker, [str(p) for p in paths], chunksize=4):
            faces += n_faces
            failed += bool(error) or n_faces == 0
        pool.close()
        pool.join()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "row": f"dlib peer, {processes} processes", "pipeline": "dlib", "processes": processes,
        "images": len(paths), "seconds": wall, "images_per_s": len(paths) / wall, "cpu_s": cpu,
        "cores_busy": cpu / wall, "faces": faces, "failed": failed,
    }


# -- report ------------------------------------------------------------------------------------

def markdown(result: dict) -> str:
    lines = [
        (f"Enrolment throughput, {result['images']} LFW images ({result['sample']}), "
        f"{result['machine']['cpu_model']}, {result['machine']['logical_cores']} logical cores"),
        "",
        "| row | images/s | seconds | CPU cores busy | faces | failed | duplicates |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['row']} | {fmt(row['images_per_s'])} | {fmt(row['seconds'])} | "
                     f"{fmt(row['cores_busy'], 2)} | {row['faces']} | {row['failed']} | "
                     f"{row.get('duplicates', '–')} |")
    if result["ratios"]:
        lines += ["", "| ratio | value | target |", "|---|---:|---|"]
        for name, value in result["ratios"].items():
            lines.append(f"| {name} | {fmt(value, 2)}× | ≥ {TARGET_RATIO:g}× |")
    targets = result["targets"]
    lines += ["", (f"Target ≥ {TARGET_IMAGES_PER_S:g} images/s (faceledger, 2 workers): "
                  f"{'met' if targets['images_per_s_met'] else 'NOT met'}; "
                  f"≥ {TARGET_RATIO:g}× the dlib peer (2 vs 2 processes): "
                  f"{'met' if targets['ratio_met'] else 'NOT met' if targets['ratio_met'] is not None else 'not measured'}.")]
    stages = result.get("stages")
    if stages:
        dlib_stages = next((r["stages"] for r in result["rows"] if "stages" in r), {})
        lines += [
            "", (f"Per-stage medians, ms (faceledger: {stages['images']} images after {stages['warmup_images']} "
                "warm-up, one process, cv2 1 thread; dlib: the 1-process row)"),
            "", "| stage | faceledger | reference A | dlib peer | reference B |", "|---|---:|---:|---:|---:|",
            f"| decode / image | {fmt(stages['decode_ms_per_image'], 2)} | – | – | – |",
            (f"| detect / image | {fmt(stages['detect_ms_per_image'], 2)} | {REFERENCE['faceledger_detect_ms_per_image']} | "
            f"{fmt(dlib_stages.get('detect_ms_per_image'), 1)} | {REFERENCE['dlib_detect_ms_per_image']} |"),
            (f"| embed / face | {fmt(stages['embed_ms_per_face'], 2)} | {REFERENCE['faceledger_embed_ms_per_face']} | "
            f"{fmt(dlib_stages.get('embed_ms_per_face'), 1)} | {REFERENCE['dlib_embed_ms_per_face']} |"),
            f"| quality / face | {fmt(stages['quality_ms_per_face'], 2)} | – | – | – |",
            f"| faces per image (mean) | {fmt(stages['mean_faces_per_image'], 2)} | – | – | – |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", help=f"lfw-deepfunneled folder or its parent (default {DEFAULT_LFW})")
    parser.add_argument("--limit", type=int, default=2000, help="images to enrol (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    parser.add_argument("--stage-images", type=int, default=300, help="images for per-stage medians (0: skip)")
    parser.add_argument("--skip-peer", action="store_true", help="faceledger rows only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for other processes to leave the cores idle")
    args = parser.parse_args(argv)
    busy_before = wait_until_idle(args.wait_idle)

    folder = resolve_lfw(args.lfw)
    everything = lfw_images(folder)
    paths = seeded_sample(everything, args.limit, args.seed)
    sample = (f"seeded random sample, numpy default_rng({args.seed}), {len(paths)} of {len(everything)} "
              "lfw-deepfunneled images, enrolled in sorted path order")
    print(f"{len(paths)} images from {folder}", file=sys.stderr)

    rows = []
    for workers in (1, 2):
        print(f"faceledger enroll, workers={workers} ...", file=sys.stderr)
        rows.append(run_faceledger(paths, workers))
        print(f"  {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    peer_ok = not args.skip_peer and peer.available()
    if not args.skip_peer and not peer_ok:
        print("dlib peer not installed (make bench-deps): peer rows skipped", file=sys.stderr)
    if peer_ok:
        print("dlib peer, 1 process ...", file=sys.stderr)
        rows.append(run_dlib_single(paths))
        print(f"  {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr)
        print("dlib peer, 2 processes ...", file=sys.stderr)
        rows.append(run_dlib_pool(paths, 2))
        print(f"  {rows[-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    stages = None
    if args.stage_images > 0:
        print("per-stage medians ...", file=sys.stderr)
        stage_paths = seeded_sample(everything, args.stage_images + 10, args.seed + 1)
        stages = faceledger_stages(stage_paths, warmup=10)

    by = {(r["pipeline"], r["processes"]): r for r in rows}
    ratios = {}
    if ("dlib", 1) in by:
        ratios["faceledger (1 worker) / dlib (1 process)"] = by["faceledger", 1]["images_per_s"] / by["dlib", 1]["images_per_s"]
        ratios["faceledger (2 workers) / dlib (2 processes)"] = by["faceledger", 2]["images_per_s"] / by["dlib", 2]["images_per_s"]
    best = by["faceledger", 2]["images_per_s"]
    result = {
        "benchmark": "enroll_throughput", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/enroll_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(), "lfw": str(folder), "images": len(paths), "seed": args.seed, "sample": sample,
        "settings": {"subject_from_folder": True, "on_multiple": "largest", "store": "SQLite (default)",
                     "index": "Flat (default)"},
        "rows": rows, "ratios": ratios, "stages": stages, "reference_ms": REFERENCE,
        "targets": {"images_per_s": TARGET_IMAGES_PER_S, "ratio": TARGET_RATIO,
                    "images_per_s_met": best >= TARGET_IMAGES_PER_S,
                    "ratio_met": (ratios["faceledger (2 workers) / dlib (2 processes)"] >= TARGET_RATIO)
                    if ratios else None},
        "peak_rss_mb": peak_rss_mb(),
        "other_load_cores_before": busy_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }
    print(markdown(result))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
