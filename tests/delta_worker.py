"""A faceledger process for the cross-process index-delta tests (tests/test_index_deltas_processes.py).

    python tests/delta_worker.py enrol HOME INDEX SEED BATCHES      # BATCHES enrolments of 3 precomputed faces
    python tests/delta_worker.py enrol-killed-before-delta HOME INDEX SEED   # dies after its commit
    python tests/delta_worker.py search HOME INDEX STOPFILE         # checks the index against the store until
                                                                    # STOPFILE exists, then once more
Both lower the compaction rule (a base rewrite every few batches), so compactions race with appends and
reads. Each prints one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

MAX_PENDING = 3


def vectors_for(seed: int, n: int, dim: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def open_at(home: str, index: str):
    from faceledger import open_engine
    from faceledger.config import Settings
    from faceledger.index import deltas

    deltas.MAX_PENDING = MAX_PENDING
    return open_engine(Settings(home=Path(home), index=index, operator="tester"))


def enrol(engine, seed: int, batches: int) -> dict:
    from faceledger.enrollment import PrecomputedFace

    dim = engine.ctx.pipeline.embedder.dim
    for b in range(batches):
        vectors = vectors_for(seed * 1000 + b, 3, dim)
        engine.enroll_embeddings([PrecomputedFace(
            subject=f"s{seed}-{b}-{i}", sha256=hashlib.sha256(f"{seed}-{b}-{i}".encode()).hexdigest(),
            name=f"w://{seed}/{b}/{i}", embedding=v, model_id=engine.model_id) for i, v in enumerate(vectors)],
            gallery="g", source="test", legal_basis="consent")
    return {"ok": True, "batches": batches}


def check(engine) -> dict:
    """The index the engine uses holds exactly the store's faces, and finds each sampled one first (read
    again when a commit lands between reading the store and the index)."""
    from sqlalchemy import select

    from faceledger.store import FaceRecord, Gallery

    for _attempt in range(50):
        with engine.ctx.sessions() as session:
            generation = select(Gallery.generation).where(Gallery.name == "g")
            before = session.execute(generation).scalar_one()
            gallery = engine.ctx.gallery(session, "g")
            rows = session.execute(select(FaceRecord.id, FaceRecord.embedding).where(
                FaceRecord.gallery_id == gallery.id)).all()
            index = engine.indexes.get(session, gallery)
            with engine.ctx.lock:
                if session.execute(generation).scalar_one() != before or gallery.generation != before:
                    continue
                held = index.face_ids()
                ids = np.array([r[0] for r in rows], np.int64)
                sample = np.random.default_rng(len(rows)).choice(len(rows), size=min(8, len(rows)), replace=False)
                queries = np.stack([np.frombuffer(rows[i][1], np.float32) for i in sample])
                _, top = index.search(queries, 1)
        return {"same_ids": bool(np.array_equal(held, np.sort(ids))), "faces": len(rows),
                "top1": bool((top[:, 0] == ids[sample]).all())}
    raise RuntimeError("the gallery kept changing under the check")


def search(engine, stop: Path) -> dict:
    checks, bad, rebuilds = 0, [], [0]
    build = engine.indexes.build

    def counted(*args, **kwargs):
        rebuilds[0] += 1
        return build(*args, **kwargs)

    engine.indexes.build = counted
    while True:
        last = stop.exists()
        result = check(engine)
        checks += 1
        if not (result["same_ids"] and result["top1"]):
            bad.append(result)
        if last:
            return {"ok": not bad, "checks": checks, "bad": bad[:5], "final": result, "rebuilds": rebuilds[0]}
        time.sleep(0.05)


def main() -> None:
    command, home, index = sys.argv[1:4]
    engine = open_at(home, index)
    try:
        if command == "enrol":
            out = enrol(engine, int(sys.argv[4]), int(sys.argv[5]))
        elif command == "enrol-killed-before-delta":  # kill -9 of itself after the commit, before the delta
            import os
            import signal

            from faceledger.index import deltas

            deltas.write = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
            out = enrol(engine, int(sys.argv[4]), 1)
        else:
            out = search(engine, Path(sys.argv[4]))
    finally:
        engine.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
