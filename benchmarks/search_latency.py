"""1:N search latency at 10,000 faces: faceledger's engine.search, its parts, and linear-scan peers.

    .venv/bin/python benchmarks/search_latency.py --wait-idle 1200   # about 2 minutes on 2 idle cores
    .venv/bin/python benchmarks/search_latency.py --people 200 --probes 60 --mated 40 --gallery-size 2000 --no-write

How the 10,000-face gallery is built (fresh temporary data directory, SQLite store, default index
setting `auto`, which is FAISS Flat below 200,000 faces):

1. Real faces. --people (default 1,000) LFW identities are drawn with numpy default_rng(--seed) from
   the identities that have at least two images; the first image (sorted) of each is enrolled through
   the real engine path: engine.enroll(..., subject_from_folder=True, on_multiple="largest",
   workers=2), so these rows carry real SFace embeddings, real provenance and ledger entries.
2. Synthetic distractors. A Gaussian is fitted to the real embeddings read back from the store
   (mean and full 128x128 covariance); vectors drawn from it are L2-normalised and inserted straight
   into the store tables (one Subject "synthetic-NNNNN", one ImageRecord with a made-up sha256 and
   name "synthetic://NNNNN", one FaceRecord copying box/landmarks/quality of a real face) until the
   gallery holds --gallery-size faces (default 10,000). They bypass enrolment and the ledger. The
   gallery's generation is bumped in the same transaction, then engine.reindex(gallery) rebuilds the
   FAISS index from the store. The JSON records how alike the synthetic and real score
   distributions are (cosine between random pairs).

Probes: the second image of --mated (default 200) gallery people (mated) and one image each of
--probes minus --mated other people (non-mated, not in the gallery), seeded; 5 further images are
searched first as warm-up and not counted.

Rows:
- engine.search end to end (p50/p99): decode + sha256, detect, quality, align, embed, index lookup,
  shortlist SQL, calibration, ledger append, probe record and commit. on_multiple="largest"; top_k=10.
  Stage split inside the same calls (the engine's methods are wrapped on the instance, not edited):
  decode, probe face (detect + quality + embed), FAISS search, candidates SQL, ledger append, rest.
- index search alone: one query against the engine's FaissIndex (k = 112, the engine's shortlist
  for top_k 10) and against a bare faiss.IndexFlatIP (k = 10), real gallery vectors as queries.
- peers on the same 10,000 vectors: numpy G @ q + argpartition (float32) and face_recognition's
  face_distance (float64 Euclidean norm) + argpartition; and the dlib peer's probe pipeline
  (decode + HOG + landmarks + ResNet of every face) plus that scan, on the same probes.
- peak memory: ru_maxrss of this process after the faceledger part, and at the end (dlib loaded).

Timed parts record how many cores other processes kept busy meanwhile and are rerun when disturbed
(--wait-idle, --retries, --max-other; as in enroll_throughput.py).

Prints a markdown table and writes benchmarks/results/search_latency.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from enroll_throughput import (
    Contention,
    busy_cores,
    fmt,
    lfw_images,
    machine_info,
    peak_rss_mb,
    resolve_lfw,
    wait_until_idle,
)
from peers import dlib_pipeline as peer

RESULTS = BENCH_DIR / "results" / "search_latency.json"
GALLERY = "bench-10k"
MODEL_ID = "sface-2021dec"


def pct(values, q: float) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


def summary_ms(seconds: list[float]) -> dict:
    ms = [1000 * s for s in seconds]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "mean_ms": float(np.mean(ms)) if ms else None,
            "max_ms": max(ms) if ms else None}


# -- waiting for the packaged calibration ----------------------------------------------------------

def wait_for_calibration(max_wait_s: float) -> str:
    from faceledger.calibration import packaged_calibration
    from faceledger.errors import FaceledgerError

    deadline = time.monotonic() + max_wait_s
    while True:
        try:
            return packaged_calibration(MODEL_ID).calibration_id
        except FaceledgerError as exc:
            if time.monotonic() >= deadline:
                raise SystemExit(f"the packaged calibration is still missing: {exc}") from None
            print(f"waiting for the packaged calibration ({exc}) ...", file=sys.stderr)
            time.sleep(60)


# -- building the gallery --------------------------------------------------------------------------

def pick_images(folder: Path, *, people: int, mated: int, nonmated: int, seed: int):
    by_person: dict[str, list[Path]] = defaultdict(list)
    for path in lfw_images(folder):
        by_person[path.parent.name].append(path)
    rng = np.random.default_rng(seed)
    multi = sorted(name for name, imgs in by_person.items() if len(imgs) >= 2)
    chosen = [multi[i] for i in rng.choice(len(multi), size=min(people, len(multi)), replace=False)]
    gallery = [by_person[name][0] for name in chosen]
    mated_people = [chosen[i] for i in rng.choice(len(chosen), size=min(mated + 5, len(chosen)), replace=False)]
    mated_probes = [by_person[name][1] for name in mated_people]
    outside = sorted(set(by_person) - set(chosen))
    others = [outside[i] for i in rng.choice(len(outside), size=min(nonmated, len(outside)), replace=False)]
    nonmated_probes = [by_person[name][int(rng.integers(len(by_person[name])))] for name in others]
    warmup, mated_probes = mated_probes[:5], mated_probes[5:]
    return gallery, warmup, mated_probes, nonmated_probes


def add_synthetic(engine, gallery_name: str, target: int, seed: int) -> dict:
    """Fill the gallery up to `target` faces with Gaussian-drawn unit vectors; bump the generation."""
    from sqlalchemy import select

    from faceledger.store import FaceRecord, Gallery, ImageRecord, Subject

    t0 = time.perf_counter()
    with engine.sessions() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == gallery_name)).scalar_one()
        rows = session.execute(select(FaceRecord.embedding, FaceRecord.box, FaceRecord.landmarks,
                                      FaceRecord.detector_score, FaceRecord.quality)
                               .where(FaceRecord.gallery_id == gallery.id)).all()
        real = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        needed = max(0, target - len(real))
        rng = np.random.default_rng(seed)
        mean = real.mean(axis=0).astype(np.float64)
        cov = np.cov(real.astype(np.float64), rowvar=False)
        drawn = rng.multivariate_normal(mean, cov, size=needed, method="eigh")
        synthetic = (drawn / np.linalg.norm(drawn, axis=1, keepdims=True)).astype(np.float32)
        now = datetime.now(UTC)
        template = rows[0]
        chunk = 1000
        for start in range(0, needed, chunk):
            stop = min(start + chunk, needed)
            subjects = [Subject(gallery_id=gallery.id, name=f"synthetic-{i:05d}", created_at=now)
                        for i in range(start, stop)]
            session.add_all(subjects)
            session.flush()
            images = [ImageRecord(
                gallery_id=gallery.id, subject_id=s.id,
                sha256=hashlib.sha256(f"faceledger-bench-synthetic-{i}".encode()).hexdigest(),
                name=f"synthetic://{i:05d}", width=250, height=250,
                source="synthetic distractor vector (benchmarks/search_latency.py)",
                legal_basis="none needed: no image, a random vector", enrolled_by="benchmark",
                enrolled_at=now, retain_until=None) for i, s in zip(range(start, stop), subjects)]
            session.add_all(images)
            session.flush()
            session.add_all([FaceRecord(
                image_id=im.id, subject_id=s.id, gallery_id=gallery.id, box=template[1],
                landmarks=template[2], detector_score=template[3], quality=template[4],
                embedding=synthetic[i].tobytes(), model_id=engine.model_id,
                template_id=engine.pipeline.embedder.template_id)
                for i, s, im in zip(range(start, stop), subjects, images)])
            session.flush()
        gallery.generation += 1
        session.commit()
    seconds = time.perf_counter() - t0
    return {"real_faces": len(real), "synthetic_faces": int(needed), "insert_seconds": seconds,
            "similarity": similarity_check(real, synthetic, seed)}


def similarity_check(real: np.ndarray, synthetic: np.ndarray, seed: int, pairs: int = 200_000) -> dict:
    """Cosine of random cross pairs among real vectors, among synthetic ones, and real-synthetic."""
    rng = np.random.default_rng(seed + 7)

    def stats(a: np.ndarray, b: np.ndarray, same: bool) -> dict:
        if len(a) < 2 or len(b) < 2:
            return {}
        i = rng.integers(len(a), size=pairs)
        j = rng.integers(len(b), size=pairs)
        keep = i != j if same else np.ones(pairs, bool)
        s = np.einsum("ij,ij->i", a[i[keep]], b[j[keep]])
        return {"mean": float(s.mean()), "std": float(s.std()), "p99": float(np.percentile(s, 99)),
                "p99.99": float(np.percentile(s, 99.99)), "max": float(s.max())}

    return {"real_vs_real": stats(real, real, True), "synthetic_vs_synthetic": stats(synthetic, synthetic, True),
            "real_vs_synthetic": stats(real, synthetic, False)}


# -- instrumenting the engine (wrappers on the instance; src/ is not touched) -----------------------

class Stopwatch:
    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, owner, attribute: str, stage: str) -> bool:
        original = getattr(owner, attribute, None)
        if original is None:
            return False

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[stage] = self.current.get(stage, 0.0) + time.perf_counter() - t0

        setattr(owner, attribute, timed)
        return True


def gallery_index(engine, gallery_name: str):
    from sqlalchemy import select

    from faceledger.store import Gallery

    with engine.sessions() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == gallery_name)).scalar_one()
        return engine.indexes.get(session, gallery)


def instrument(engine) -> tuple[Stopwatch, dict]:
    watch = Stopwatch()
    index = gallery_index(engine, GALLERY)
    wrapped = {
        "decode": watch.wrap(engine.ctx, "load", "decode"),
        "probe_face": watch.wrap(engine.ctx, "probe_face", "probe_face"),
        "index_lookup": watch.wrap(engine.indexes, "get", "index_lookup"),
        "candidates": watch.wrap(engine.searching, "_candidates", "candidates"),
        "faiss_search": watch.wrap(index, "search", "faiss_search"),
        "ledger_append": watch.wrap(engine.ledger, "append", "ledger_append"),
    }
    return watch, wrapped


def run_searches(engine, watch: Stopwatch, wrapped: dict, probes: list[tuple[Path, bool]],
                 warmup: list[Path]) -> dict:
    from faceledger.errors import FaceledgerError

    for path in warmup:
        try:
            engine.search(str(path), gallery=GALLERY, purpose="benchmark warm-up", case="bench-search-latency",
                          on_multiple="largest")
        except FaceledgerError:
            pass
    records = []
    contention = Contention()
    for path, mated in probes:
        watch.current = {}
        t0 = time.perf_counter()
        error = result = None
        try:
            result = engine.search(str(path), gallery=GALLERY, purpose="benchmark", case="bench-search-latency",
                                   on_multiple="largest")
        except FaceledgerError as exc:
            error = str(exc)
        total = time.perf_counter() - t0
        record = {"path": path.name, "mated": mated, "total": total, "error": error, **watch.current}
        if result is not None:
            record.update(decision=result.decision, threshold=result.threshold,
                          threshold_supported=result.threshold_supported, gallery_size=result.gallery_size,
                          top=result.candidates[0].subject if result.candidates else None)
        records.append(record)
    other_cores = contention.other_cores()
    ok = [r for r in records if r["error"] is None]
    stages = {}
    for stage in ("decode", "probe_face", "index_lookup", "faiss_search", "candidates", "ledger_append"):
        if wrapped[stage]:
            stages[stage] = summary_ms([r.get(stage, 0.0) for r in ok])
    stages["candidates_sql_and_ranking"] = summary_ms([r.get("candidates", 0.0) - r.get("faiss_search", 0.0) for r in ok])
    stages["probe_pipeline (decode + probe_face)"] = summary_ms([r.get("decode", 0.0) + r.get("probe_face", 0.0) for r in ok])
    stages["rest (threshold, commit, bookkeeping)"] = summary_ms([
        r["total"] - sum(r.get(s, 0.0) for s in ("decode", "probe_face", "index_lookup", "candidates", "ledger_append"))
        for r in ok])
    mated_ok = [r for r in ok if r["mated"]]
    nonmated_ok = [r for r in ok if not r["mated"]]
    return {
        "probes": len(records), "searched": len(ok), "failed": len(records) - len(ok),
        "failures": [{"path": r["path"], "error": r["error"]} for r in records if r["error"]][:20],
        "end_to_end": summary_ms([r["total"] for r in ok]),
        "failed_search": summary_ms([r["total"] for r in records if r["error"]]),
        "stages": stages,
        "threshold": ok[0]["threshold"] if ok else None,
        "threshold_supported": ok[0]["threshold_supported"] if ok else None,
        "gallery_size_seen": ok[0]["gallery_size"] if ok else None,
        "mated_match": sum(r["decision"] == "match" for r in mated_ok),
        "mated_correct_top1": sum(r["top"] == Path(r["path"]).stem.rsplit("_", 1)[0] for r in mated_ok),
        "mated_searched": len(mated_ok),
        "nonmated_match": sum(r["decision"] == "match" for r in nonmated_ok),
        "nonmated_searched": len(nonmated_ok),
        "instrumented": wrapped,
        "other_cores_busy": other_cores,
    }


# -- index-only and peer scans ---------------------------------------------------------------------

def time_queries(fn, queries: np.ndarray, repeats: int) -> dict:
    for q in queries[:20]:
        fn(q)
    seconds = []
    for n in range(repeats):
        q = queries[n % len(queries)]
        t0 = time.perf_counter()
        fn(q)
        seconds.append(time.perf_counter() - t0)
    return summary_ms(seconds)


def index_and_scan_rows(index, vectors: np.ndarray, repeats: int, seed: int) -> dict:
    import faiss

    rng = np.random.default_rng(seed + 11)
    queries = vectors[rng.choice(len(vectors), size=min(1000, len(vectors)), replace=False)]
    shortlist = min(len(vectors), 10 * 8 + 32)
    bare = faiss.IndexFlatIP(vectors.shape[1])
    bare.add(vectors)
    g32 = np.ascontiguousarray(vectors, dtype=np.float32)
    g64 = g32.astype(np.float64)

    def numpy_dot(q):
        scores = g32 @ q
        top = np.argpartition(-scores, 10)[:10]
        return top[np.argsort(-scores[top])]

    def numpy_distance(q):
        distances = peer.face_distance(g64, q.astype(np.float64))
        top = np.argpartition(distances, 10)[:10]
        return top[np.argsort(distances[top])]

    contention = Contention()
    rows = {
        f"faceledger FaissIndex.search (Flat, k={shortlist})": time_queries(lambda q: index.search(q[None, :], shortlist), queries, repeats),
        "faiss.IndexFlatIP.search (k=10)": time_queries(lambda q: bare.search(q[None, :], 10), queries, repeats),
        "numpy G @ q + argpartition (float32, k=10)": time_queries(numpy_dot, queries, repeats),
        "face_recognition face_distance + argpartition (float64, k=10)": time_queries(numpy_distance, queries, repeats),
        "queries": len(queries), "repeats": repeats, "faiss_omp_threads": faiss.omp_get_max_threads(),
    }
    rows["other_cores_busy"] = contention.other_cores()
    return rows


def dlib_search_rows(probes: list[tuple[Path, bool]], warmup: list[Path], gallery_size: int, seed: int) -> dict:
    """The dlib peer's probe pipeline + a face_distance scan over gallery_size random 128-D vectors."""
    pipeline = peer.DlibPipeline()
    pipeline.load()
    known = np.random.default_rng(seed + 13).normal(size=(gallery_size, 128)) * 0.09  # dlib-like scale
    for path in warmup:
        pipeline.encode_file(path)
    totals, encodes, failed = [], [], 0
    contention = Contention()
    for path, _ in probes:
        t0 = time.perf_counter()
        found = pipeline.faces(peer.load_image_file(path))
        t1 = time.perf_counter()
        face = peer.largest(found)
        if face is None:
            failed += 1
            continue
        distances = peer.face_distance(known, face.embedding)
        top = np.argpartition(distances, 10)[:10]
        top[np.argsort(distances[top])]
        totals.append(time.perf_counter() - t0)
        encodes.append(t1 - t0)
    return {"end_to_end": summary_ms(totals), "probe_pipeline": summary_ms(encodes), "failed": failed,
            "other_cores_busy": contention.other_cores()}


def measure(label: str, run, args) -> dict:
    """Run a part; rerun it (up to --retries times) while other processes kept the cores busy.
    Every attempt's disturbance is kept; the least disturbed attempt is reported."""
    attempts = []
    for _ in range(1 + max(0, args.retries)):
        before = wait_until_idle(args.wait_idle) if args.wait_idle else busy_cores()
        print(f"{label} ...", file=sys.stderr)
        part = {**run(), "other_cores_before": before}
        attempts.append(part)
        print(f"  other processes used {part['other_cores_busy']:.2f} cores meanwhile", file=sys.stderr)
        if part["other_cores_busy"] <= args.max_other:
            break
    best = dict(min(attempts, key=lambda r: r["other_cores_busy"]))
    best["attempts_other_cores_busy"] = [r["other_cores_busy"] for r in attempts]
    return best


# -- report ------------------------------------------------------------------------------------

def markdown(result: dict) -> str:
    s = result["search"]
    build = result["gallery"]
    lines = [
        (f"Search latency, gallery of {build['faces']:,} faces ({build['real_faces']:,} real LFW + "
        f"{build['synthetic_faces']:,} synthetic), index {build['index_setting']} = {build['index_kind']}, "
        f"{s['searched']} probes "
        f"({s['mated_searched']} mated, {s['nonmated_searched']} non-mated; {s['failed']} failed), "
        f"{result['machine']['cpu_model']}, {result['machine']['logical_cores']} logical cores"),
        "",
        "| row | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| faceledger engine.search, end to end | {fmt(s['end_to_end']['p50_ms'], 2)} | {fmt(s['end_to_end']['p99_ms'], 2)} |",
    ]
    for stage, stats in s["stages"].items():
        lines.append(f"| &nbsp;&nbsp;of which {stage} | {fmt(stats['p50_ms'], 3)} | {fmt(stats['p99_ms'], 3)} |")
    for name, stats in result["index_only"].items():
        if isinstance(stats, dict):
            lines.append(f"| index only: {name} | {fmt(stats['p50_ms'], 3)} | {fmt(stats['p99_ms'], 3)} |")
    if result.get("dlib_peer"):
        d = result["dlib_peer"]
        lines.append(f"| dlib peer: probe pipeline + face_distance scan, end to end | "
                     f"{fmt(d['end_to_end']['p50_ms'], 2)} | {fmt(d['end_to_end']['p99_ms'], 2)} |")
        lines.append(f"| &nbsp;&nbsp;of which probe pipeline (decode, HOG, landmarks, ResNet) | "
                     f"{fmt(d['probe_pipeline']['p50_ms'], 2)} | {fmt(d['probe_pipeline']['p99_ms'], 2)} |")
    lines += [
        "",
        (f"Peak memory (ru_maxrss): {fmt(result['peak_rss_mb_faceledger'])} MB after the faceledger part, "
        f"{fmt(result['peak_rss_mb_total'])} MB at the end (dlib models loaded too)."),
        (f"Threshold at {build['faces']:,} faces (target FPIR {result['target_fpir']}): {s['threshold']} "
        f"(supported by the calibration sample: {s['threshold_supported']}); mated probes answered 'match': "
        f"{s['mated_match']}/{s['mated_searched']} (correct top-1 {s['mated_correct_top1']}), non-mated 'match': "
        f"{s['nonmated_match']}/{s['nonmated_searched']}."),
        (f"Other processes kept {fmt(s['other_cores_busy'], 2)} cores busy during the searches, "
         f"{fmt(result['index_only']['other_cores_busy'], 2)} during the index-only rows"
         + (f", {fmt(result['dlib_peer']['other_cores_busy'], 2)} during the dlib rows." if result.get('dlib_peer') else ".")),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", help="lfw-deepfunneled folder or its parent")
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=1000, help="real LFW people enrolled (default 1000)")
    parser.add_argument("--probes", type=int, default=300, help="timed probes in all (default 300)")
    parser.add_argument("--mated", type=int, default=200, help="of which mated (default 200)")
    parser.add_argument("--repeats", type=int, default=2000, help="single-query repeats for index-only rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="enrolment workers for the real part")
    parser.add_argument("--skip-peer", action="store_true", help="no dlib probe-pipeline row")
    parser.add_argument("--calibration-wait", type=float, default=1800, metavar="SECONDS",
                        help="wait this long for the packaged calibration file (polls every minute)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each timed part, wait up to this long for other processes to leave the cores idle")
    parser.add_argument("--retries", type=int, default=2,
                        help="rerun a timed part up to this many times when other processes disturbed it")
    parser.add_argument("--max-other", type=float, default=0.15,
                        help="cores other processes may use during a timed part before it is rerun")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    from faceledger import Settings, open_engine

    machine = machine_info()  # the commit and versions measured, taken before the run
    calibration_id = wait_for_calibration(args.calibration_wait)
    folder = resolve_lfw(args.lfw)
    mated = min(args.mated, args.probes)
    gallery_paths, warmup, mated_probes, nonmated_probes = pick_images(
        folder, people=args.people, mated=mated, nonmated=args.probes - mated, seed=args.seed)
    busy_before = wait_until_idle(args.wait_idle) if args.wait_idle else busy_cores()
    home = Path(tempfile.mkdtemp(prefix="faceledger-bench-search-"))
    try:
        engine = open_engine(Settings(home=home))
        engine.create_gallery(GALLERY)
        print(f"enrolling {len(gallery_paths)} real LFW images ...", file=sys.stderr)
        t0 = time.perf_counter()
        report = engine.enroll([str(p) for p in gallery_paths], gallery=GALLERY, subject_from_folder=True,
                               source="LFW deep-funneled (benchmark)", legal_basis="research benchmark",
                               on_multiple="largest", workers=args.workers).as_json()
        enroll_seconds = time.perf_counter() - t0
        print(f"adding synthetic faces up to {args.gallery_size:,} ...", file=sys.stderr)
        synthetic = add_synthetic(engine, GALLERY, args.gallery_size, args.seed)
        t0 = time.perf_counter()
        reindexed = engine.reindex(GALLERY)
        reindex_seconds = time.perf_counter() - t0
        faces = reindexed[0]["faces"]
        gallery = {
            "index_setting": engine.settings.index, "index_kind": reindexed[0].get("kind", reindexed[0].get("index")),
            "faces": faces, "real_faces": synthetic["real_faces"], "synthetic_faces": synthetic["synthetic_faces"],
            "real_people_enrolled": report["enrolled"], "real_images_failed": report["failed"],
            "enroll_seconds": enroll_seconds, "synthetic_insert_seconds": synthetic["insert_seconds"],
            "reindex_seconds": reindex_seconds, "similarity": synthetic["similarity"],
            "how": ("real: first image of each of the sampled LFW people (>= 2 images each) through engine.enroll "
                    "(subject_from_folder, on_multiple='largest'); synthetic: multivariate normal fitted to the real "
                    "embeddings (mean + full covariance), L2-normalised, inserted as Subject/ImageRecord/FaceRecord "
                    "rows (one each per vector), generation bumped, then engine.reindex"),
        }
        probes = [(p, True) for p in mated_probes] + [(p, False) for p in nonmated_probes]
        watch, wrapped = instrument(engine)
        search = measure("engine.search over the probes",
                         lambda: run_searches(engine, watch, wrapped, probes, warmup), args)
        index = gallery_index(engine, GALLERY)
        from sqlalchemy import select

        from faceledger.store import FaceRecord
        with engine.sessions() as session:
            blobs = session.execute(select(FaceRecord.embedding).order_by(FaceRecord.id)).scalars().all()
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
        index_only = measure("index-only and linear-scan rows",
                             lambda: index_and_scan_rows(index, vectors, args.repeats, args.seed), args)
        target_fpir = engine.gallery_info(GALLERY)["target_fpir"]
        engine.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    peak_faceledger = peak_rss_mb()

    dlib = None
    if not args.skip_peer and peer.available():
        dlib = measure("dlib peer probe pipeline", lambda: dlib_search_rows(probes, warmup, faces, args.seed), args)

    result = {
        "benchmark": "search_latency", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/search_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine, "lfw": str(folder), "seed": args.seed, "calibration_id": calibration_id,
        "target_fpir": target_fpir, "gallery": gallery, "search": search,
        "index_only": index_only, "dlib_peer": dlib,
        "peak_rss_mb_faceledger": peak_faceledger, "peak_rss_mb_total": peak_rss_mb(),
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
