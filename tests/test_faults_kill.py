"""REAL PROCESSES: `kill -9` anywhere (docs/security.md, "Faults").

- A killed `enroll --workers 2` leaves no worker and no multiprocessing resource tracker behind (before the
  fix in enrollment.py both workers and the tracker ran on under PID 1, waiting forever on their queue).
- Kill anywhere: an enrolment (workers on), a purge, an erase and a reindex are each `kill -9`ed at a
  seeded moment and rerun; then nothing is lost (every image that should be held is stored and its face
  found at rank 1 by the index the next search uses), nothing duplicated, no orphan process, the ledger
  verifies and is gap-free. CI runs 3 small seeds; `benchmarks/faults_kill.py` runs 20+ larger ones.
"""

from __future__ import annotations

import signal
import time

import pytest

from .faults import (
    CLI,
    ENROLL_ARGS,
    _cli,
    cli_env,
    descendants,
    kill_cycle,
    orphans,
    reap,
    sqlite_count,
    start,
    varied_images,
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def test_killed_enrolment_leaves_no_worker_or_resource_tracker_behind(tmp_path):
    images = tmp_path / "images"
    varied_images(images, 40)
    home = tmp_path / "home"
    env = cli_env(home, FACELEDGER_ENROLL_BATCH="4")
    _cli(["gallery", "create", "g"], env)
    process = start([*CLI, "enroll", str(images), *ENROLL_ARGS, "--workers", "2"], env, tmp_path / "enroll.log")
    db = home / "faceledger.db"
    deadline = time.monotonic() + 300  # a hang guard, not a timing assertion
    children: list[int] = []
    while process.poll() is None and time.monotonic() < deadline:
        children = [p.pid for p in descendants(process.pid)]
        if len(children) >= 3 and sqlite_count(db, "select count(*) from images") >= 4:
            break  # both workers and the resource tracker run, and batches are being committed
        time.sleep(0.05)
    stored = sqlite_count(db, "select count(*) from images")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(children) >= 3 and 4 <= stored < 40, (
        f"the kill must land mid-run with the workers up ({children}, {stored} stored): "
        + (tmp_path / "enroll.log").read_text()[-1500:])
    left = orphans(home, children)
    reap(left)
    assert not left, f"processes outlived the killed enrolment: {left}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_anywhere_loses_and_duplicates_nothing(tmp_path, seed):
    result = kill_cycle(tmp_path, seed, images=60, workers=2, batch=8)
    print(result)
    assert result["kills"][0]["killed"], "the enrolment must be killed for this seed to mean anything"
    assert result["stored"] > 0 and result["faces"] >= result["stored"]
    assert result["lost"] == 0, result
    assert result["not_removed"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["unsearchable_faces"] == 0, result
    assert result["orphans"] == 0, result
    assert result["audit_ok"], result["audit"]
    assert result["ledger_gap_free"], result


class KilledHere(BaseException):
    """Stands for a `kill -9` at this point: nothing after it runs (not even `except Exception`)."""


def _die(*_args, **_kwargs):
    raise KilledHere


@pytest.mark.parametrize("removal", ["erase", "purge"])
def test_a_removal_killed_after_its_commit_leaves_no_removed_vector_in_the_index_files(tmp_path, monkeypatch,
                                                                                       removal):
    """Erase and purge commit, then rewrite the index files without the removed faces. A kill between the
    two used to leave the old files, with the removed people's embeddings, on disk (never searched: their
    generation is stale, but kept until some process next used the gallery). They are now deleted before
    the commit, and rebuilt from the store on next use."""
    from datetime import datetime

    import numpy as np
    from sqlalchemy import select, update

    from faceledger.store import FaceRecord, ImageRecord, Subject

    from .conftest import gallery_files, held_out_probes, open_test_engine

    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g")
    # the others first (the base), then the one to remove: its faces sit in a delta file beside the base
    engine.enroll(gallery_files()[3:9], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    engine.enroll(gallery_files()[:3], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    gone = gallery_files()[0].parent.name
    with engine.sessions() as session:
        subject_id = session.execute(select(Subject.id).where(Subject.name == gone)).scalar_one()
        removed = [bytes(b) for b in session.execute(select(FaceRecord.embedding).where(
            FaceRecord.subject_id == subject_id)).scalars()]
    index_dir = engine.settings.index_dir
    assert removed and all(v in b"".join(p.read_bytes() for p in index_dir.iterdir() if p.is_file())
                           for v in removed), "the index files must hold the faces before the removal"
    assert all(v in b"".join(p.read_bytes() for p in index_dir.glob("gallery-1.delta-*")) for v in removed)
    monkeypatch.setattr(engine.indexes, "refresh", _die)  # the process dies right after the commit
    with pytest.raises(KilledHere):
        if removal == "erase":
            engine.erase(reason="request 1", subject=gone, gallery="g")
        else:
            with engine.writing() as session:
                session.execute(update(ImageRecord).where(ImageRecord.subject_id == subject_id).values(
                    retain_until=datetime(2000, 1, 1)))
                session.commit()
            engine.purge()
    on_disk = b"".join(p.read_bytes() for p in index_dir.iterdir() if p.is_file())
    assert not any(v in on_disk for v in removed), "a removed face's embedding survived in an index file"
    again = open_test_engine(home)  # the next process: rebuilds from the store, finds the rest, not them
    try:
        result = again.search(held_out_probes()[0], gallery="g", purpose="p", case="c")
        assert result.gallery_size == 9 - len(removed)
        assert all(c.subject != gone for c in result.candidates)
        assert again.audit_verify().ok
        assert np.isfinite(result.threshold)
    finally:
        again.close()
