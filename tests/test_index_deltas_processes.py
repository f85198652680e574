"""Index deltas across processes: two processes enrol into one gallery while a third searches it, with
compactions racing appends and reads; a process killed between its commit and its delta; an erasure
leaves no copy of a removed vector in the base or in any delta."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import faceledger
from faceledger.index import deltas
from faceledger.index.files import IndexMeta

from .delta_worker import check, enrol, open_at, vectors_for

WORKER = Path(__file__).with_name("delta_worker.py")
SRC = str(Path(faceledger.__file__).resolve().parents[1])
GUARD_S = 600  # a hang guard for a broken child, not a timing assertion
KINDS = ["Flat", "PQ16x4fs;rerank=50"]


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def answer(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def base_gallery(home: Path, index: str, faces: int):
    """A gallery with `faces` precomputed faces in its base (700: a PQ16x4fs index is trained)."""
    engine = open_at(str(home), index)
    engine.create_gallery("g")
    enrol_many(engine, faces)
    return engine


def enrol_many(engine, faces: int) -> None:
    from faceledger.enrollment import PrecomputedFace

    vectors = vectors_for(7, faces, engine.ctx.pipeline.embedder.dim)
    engine.enroll_embeddings([PrecomputedFace(subject=f"base-{i}", sha256=f"{i:064x}", name=f"b://{i}",
                                              embedding=v, model_id=engine.model_id)
                              for i, v in enumerate(vectors)], gallery="g", source="test", legal_basis="consent")


@pytest.mark.parametrize("kind", KINDS)
def test_two_processes_enrol_while_a_third_searches(tmp_path, kind):
    home = tmp_path / "home"
    engine = base_gallery(home, kind, 700)
    first_base = IndexMeta.read(engine.indexes.files.paths(1)[1]).generation
    engine.close()
    stop = tmp_path / "stop"
    searcher = start("search", home, kind, stop)
    enrollers = [start("enrol", home, kind, seed, 8) for seed in (1, 2)]
    results = [answer(p) for p in enrollers]
    stop.touch()
    searched = answer(searcher)
    print(searched)  # with its rebuild count: 0 unless a delta came later than DELTA_WAIT_S after its commit
    assert all(r["ok"] for r in results)
    assert searched["ok"], searched["bad"]
    assert searched["checks"] >= 2 and searched["final"] == {"same_ids": True, "faces": 700 + 2 * 8 * 3,
                                                              "top1": True}
    base = IndexMeta.read(home / "index" / "gallery-1.json")
    assert base.generation > first_base, "the base was compacted while the others appended and read"
    again = open_at(str(home), kind)  # a fresh process: base + pending deltas from the files
    try:
        assert check(again) == {"same_ids": True, "faces": 748, "top1": True}
        assert again.audit_verify().ok
    finally:
        again.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_process_killed_between_its_commit_and_its_delta(tmp_path, kind):
    home = tmp_path / "home"
    engine = base_gallery(home, kind, 700)
    engine.close()
    killed = start("enrol-killed-before-delta", home, kind, 5)
    killed.communicate(timeout=GUARD_S)
    assert killed.returncode == -9
    again = open_at(str(home), kind)
    try:
        with again.ctx.sessions() as session:
            generation = again.ctx.gallery(session, "g").generation
        assert generation not in deltas.pending(home / "index", 1), "the kill came before the delta"
        assert check(again) == {"same_ids": True, "faces": 703, "top1": True}, "committed faces are found"
        enrol(again, 6, 1)  # and the gallery goes on from the rebuilt base
        assert check(again)["same_ids"] and again.audit_verify().ok
    finally:
        again.close()


def test_erasure_removes_the_vector_from_base_and_deltas(tmp_path):
    home = tmp_path / "home"
    engine = base_gallery(home, "PQ16x4fs;rerank=50", 700)
    try:
        enrol(engine, 3, 2)  # two batches: two deltas beside the base
        gone = vectors_for(3 * 1000 + 1, 3, engine.ctx.pipeline.embedder.dim)[0]  # in the second delta
        index_dir = home / "index"
        on_disk = b"".join(p.read_bytes() for p in index_dir.iterdir() if p.is_file())
        assert gone.tobytes() in on_disk and len(deltas.pending(index_dir, 1)) == 2
        in_base = vectors_for(7, 1, engine.ctx.pipeline.embedder.dim)[0]
        engine.erase(reason="request 1", subject="s3-1-0", gallery="g")
        engine.erase(reason="request 2", subject="base-0", gallery="g")
        on_disk = b"".join(p.read_bytes() for p in index_dir.iterdir() if p.is_file())
        assert gone.tobytes() not in on_disk and in_base.tobytes() not in on_disk
        assert check(engine) == {"same_ids": True, "faces": 704, "top1": True}
    finally:
        engine.close()
