"""One 10-face enrolment batch into galleries of 10k / 100k / 1M faces: main's tree against this one.

    git -C /work/main archive main src | tar -x -C /tmp/indexlog-before     # the peer: main's source
    .venv/bin/python benchmarks/enroll_batch_scale.py --before /tmp/indexlog-before/src
    .venv/bin/python benchmarks/enroll_batch_scale.py --sizes 10000 --no-write      # quick look

For each size, one SQLite store of N synthetic faces (random unit vectors, 4 faces per subject, one image
per face) is filled in bulk once, then copied for each tree; each tree runs in its own process over its
copy, with FACELEDGER_INDEX=auto (Flat up to 200k faces, IVF1024,PQ64x4fs + exact re-rank above):

- build:        `reindex` of the gallery (the index file(s) written once, as after any rebuild)
- batch, warm:  `enroll_embeddings` of 10 new faces while the process holds the index (the API server,
                the web app's enrol page): store transaction + ledger entry + index update + index file(s)
- batch, cold:  the same after forgetting the held index (a fresh CLI process each time; its models are
                excluded: precomputed embeddings): before, the index file is read and rewritten in full
- whole-index write: the loaded index written as the new base (a compaction; before: every save)
- load:         a fresh process's first use of the index: base + the batches above pending as deltas
                (a copy of the files taken before the compaction), and the compacted base; three loads
                of each, alternated, median
- search p50:   one query (k=10, 1 FAISS thread) on each loaded index, 400 random unit-vector queries,
                alternating between the two, so both see the same load

Prints a markdown table, writes benchmarks/results/enroll_batch_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CHUNK = 20_000
DIM = 128


def open_engine_at(home: Path):
    from faceledger import open_engine
    from faceledger.config import Settings

    return open_engine(Settings(home=home, index="auto", operator="bench"))


def fill(home: Path, n: int, seed: int) -> None:
    """N faces in one gallery "g", inserted straight into the store's tables (no ledger entries)."""
    from sqlalchemy import insert, select

    from faceledger.store import FaceRecord, Gallery, ImageRecord, Subject

    engine = open_engine_at(home)
    engine.create_gallery("g")
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    with engine.ctx.writing() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == "g")).scalar_one()
        gid = gallery.id
        session.execute(insert(Subject), [{"gallery_id": gid, "name": f"p{i:08d}", "created_at": now}
                                          for i in range((n + 3) // 4)])
        subjects = session.execute(select(Subject.id).where(Subject.gallery_id == gid).order_by(Subject.id)
                                   ).scalars().all()
        for start in range(0, n, CHUNK):
            block = range(start, min(n, start + CHUNK))
            session.execute(insert(ImageRecord), [
                {"gallery_id": gid, "subject_id": subjects[i // 4], "sha256": f"{i:064x}", "name": f"/x/{i}.jpg",
                 "width": 250, "height": 250, "source": "benchmark", "legal_basis": "synthetic",
                 "enrolled_by": "bench", "enrolled_at": now, "retain_until": None} for i in block])
        images = session.execute(select(ImageRecord.id, ImageRecord.subject_id).where(
            ImageRecord.gallery_id == gid).order_by(ImageRecord.id)).all()
        for start in range(0, n, CHUNK):
            rows = images[start:start + CHUNK]
            vectors = unit(rng, len(rows))
            session.execute(insert(FaceRecord), [
                {"image_id": iid, "subject_id": sid, "gallery_id": gid, "box": [60, 60, 190, 190],
                 "landmarks": [], "detector_score": 0.9, "quality": {}, "embedding": vec.tobytes(),
                 "model_id": engine.model_id, "template_id": "arcface-5pt-112-v1"}
                for (iid, sid), vec in zip(rows, vectors, strict=True)])
        gallery.generation += 1
        session.commit()
    engine.close()


def unit(rng, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def worker(home: Path, repeat: int, seed: int) -> dict:
    """Runs in a process whose sys.path starts with the tree under test."""
    import faiss

    from faceledger.enrollment import PrecomputedFace

    faiss.omp_set_num_threads(1)
    engine = open_engine_at(home)
    rng = np.random.default_rng(seed)
    made = [0]
    begin = engine.enrolment._begin
    batch_hashes: list[str] = []
    # Both trees look up only the batch's own hashes, as uploads do (main's enroll_embeddings read every
    # hash in the gallery, an O(N) cost that is not the index's): what differs is the index alone.
    engine.enrolment._begin = lambda *a, only=None, **k: begin(*a, only=list(batch_hashes), **k)

    def batch() -> float:
        vectors = unit(rng, 10)
        entries = []
        for vector in vectors:
            made[0] += 1
            entries.append(PrecomputedFace(subject=f"new-{made[0]}", sha256=hashlib.sha256(
                f"bench-{seed}-{made[0]}".encode()).hexdigest(), name=f"new://{made[0]}", embedding=vector,
                model_id=engine.model_id))
        batch_hashes[:] = [entry.sha256 for entry in entries]
        t0 = time.perf_counter()
        engine.enroll_embeddings(entries, gallery="g", source="benchmark", legal_basis="synthetic")
        return time.perf_counter() - t0

    out: dict = {}

    def load(directory: Path):
        """A fresh load of the index from `directory` (as a new process would), timed."""
        engine.indexes.clear()
        engine.indexes.files.directory = directory
        t0 = time.perf_counter()
        with engine.ctx.sessions() as session:
            index = engine.indexes.get(session, engine.ctx.gallery(session, "g"))
        return time.perf_counter() - t0, index

    def read_side() -> None:
        """Loads and searches with the deltas pending and compacted, alternated (the same load on both)."""
        index_dir = engine.settings.index_dir
        pending_dir = index_dir.with_name("index-pending")
        shutil.copytree(index_dir, pending_dir)  # the files as they are, deltas pending
        _, index = load(index_dir)
        t0 = time.perf_counter()  # a compaction: the whole index written as the new base
        with engine.ctx.sessions() as session:
            engine.indexes.files.save(index, engine.indexes.expected_meta(engine.ctx.gallery(session, "g"),
                                                                          len(index)))
        out["compact_s"] = time.perf_counter() - t0
        loads: dict = {"pending": [], "compacted": []}
        held = {}
        for _ in range(3):
            for name, directory in (("pending", pending_dir), ("compacted", index_dir)):
                seconds, held[name] = load(directory)
                loads[name].append(seconds)
        engine.indexes.files.directory = index_dir
        searches: dict = {"pending": [], "compacted": []}
        for i, query in enumerate(unit(np.random.default_rng(seed + 1), 400)):
            for name in (("pending", "compacted") if i % 2 else ("compacted", "pending")):
                t0 = time.perf_counter()
                held[name].search(query[None], 10)
                searches[name].append(time.perf_counter() - t0)
        for name in loads:
            out[f"load_{name}_s"] = statistics.median(loads[name])
            out[f"search_{name}_p50_s"] = statistics.median(searches[name])
        out["faces"] = len(held["compacted"])
        out["same_faces"] = bool(np.array_equal(held["pending"].face_ids(), held["compacted"].face_ids())) \
            if hasattr(held["pending"], "face_ids") else None
        shutil.rmtree(pending_dir)

    t0 = time.perf_counter()
    engine.reindex("g")
    out["build_s"] = time.perf_counter() - t0
    batch()  # warm-up (first ledger entry, imports)
    out["warm_s"] = [batch() for _ in range(repeat)]
    cold = []
    for _ in range(repeat):
        engine.indexes.clear()
        cold.append(batch())
    out["cold_s"] = cold
    index_dir = engine.settings.index_dir
    out["pending_deltas"] = len(list(index_dir.glob("gallery-1.delta-*")))
    out["index_bytes_on_disk"] = sum(p.stat().st_size for p in index_dir.iterdir() if p.is_file())
    read_side()
    engine.close()
    return out


def run_tree(src: Path, home: Path, repeat: int, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, __file__, "--worker", str(home), "--repeat", str(repeat),
                           "--seed", str(seed)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"worker failed for {src}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def med_ms(values) -> float:
    return round(1000 * statistics.median(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--before", type=Path, default=Path("/tmp/indexlog-before/src"),
                        help="the peer's src folder (main's tree)")
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", default="enroll_batch_scale")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeat, args.seed)))
        return
    sys.path.insert(0, str(REPO / "src"))
    trees = {"before": args.before.resolve(), "after": (REPO / "src").resolve()}
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            template = Path(tmp) / "template"
            t0 = time.perf_counter()
            fill(template, size, args.seed)
            print(f"filled {size:,} faces in {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
            for name, src in trees.items():
                home = Path(tmp) / name
                shutil.copytree(template, home, ignore=shutil.ignore_patterns("index"))
                result = run_tree(src, home, args.repeat, args.seed)
                shutil.rmtree(home)
                rows.append({"size": size, "tree": name, **result})
                print(f"{size:,} {name}: warm {med_ms(result['warm_s'])} ms, cold {med_ms(result['cold_s'])} ms, "
                      f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    lines = ["| faces | tree | batch of 10, warm (ms) | batch of 10, cold (ms) | deltas pending | load, pending (ms) "
             "| load, compacted (ms) | search p50, pending (ms) | search p50, compacted (ms) | whole-index write (ms) |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['size']:,} | {r['tree']} | {med_ms(r['warm_s'])} | {med_ms(r['cold_s'])} | "
                     f"{r['pending_deltas']} | {1000 * r['load_pending_s']:.0f} | {1000 * r['load_compacted_s']:.0f} | "
                     f"{1000 * r['search_pending_p50_s']:.3f} | {1000 * r['search_compacted_p50_s']:.3f} | "
                     f"{1000 * r['compact_s']:.0f} |")
    for size in args.sizes:
        pair = {r["tree"]: r for r in rows if r["size"] == size}
        if len(pair) == 2:
            lines.append(f"\n{size:,} faces: warm batch {statistics.median(pair['before']['warm_s']) / statistics.median(pair['after']['warm_s']):.1f}x faster, "
                         f"cold batch {statistics.median(pair['before']['cold_s']) / statistics.median(pair['after']['cold_s']):.1f}x faster after")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_after": os.getloadavg(),
                "repeat": args.repeat, "when": datetime.now(UTC).isoformat(timespec="seconds")}
        (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (RESULTS / f"{args.out}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
