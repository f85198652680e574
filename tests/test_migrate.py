"""Migration to another database and index, without re-embedding: same answers, ledger intact and recording it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from faceledger.errors import FaceledgerError
from faceledger.migrate import migrate
from faceledger.store import FaceRecord

from .conftest import gallery_files, held_out_probes, open_test_engine

TARGETS = ["sqlite+faiss", "postgresql+milvus-lite"]


@pytest.fixture(params=TARGETS)
def target(request, tmp_path):
    if request.param == "sqlite+faiss":
        return f"sqlite:///{tmp_path / 'target.db'}", "Flat"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(), "milvus-lite://migrated.db"


def test_migrate_copies_without_re_embedding_and_ledgers_it(tmp_path, target):
    to_db, to_index = target
    home = tmp_path / "home"
    source = open_test_engine(home)
    source.create_gallery("g", retain_days=30)
    source.enroll(gallery_files()[:9], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    probe = held_out_probes()[1]
    before = source.search(probe, gallery="g", purpose="p", case="c")
    source.pipeline.embedder.embed = None  # any attempt to re-embed would fail loudly
    summary = migrate(source, to_db=to_db, to_index=to_index)
    assert summary["counts"]["faces"] == 9 and summary["counts"]["ledger"] >= 3
    source.close()
    moved = open_test_engine(home, db=to_db, index=to_index)
    after = moved.search(probe, gallery="g", purpose="p", case="c")
    assert [(c.subject, c.face_id, round(c.score, 5)) for c in after.candidates] == \
           [(c.subject, c.face_id, round(c.score, 5)) for c in before.candidates]
    assert moved.audit_verify().ok
    actions = [e["action"] for e in moved.ledger.entries()]
    assert actions[-3:] == ["migrate.export", "migrate.import", "search"]
    assert moved.gallery_info("g")["retain_days"] == 30
    moved.enroll(gallery_files()[9:12], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    with moved.sessions() as session:  # new rows get fresh ids after the copied ones (sequences moved on)
        assert session.execute(select(func.count()).select_from(FaceRecord)).scalar_one() == 12
    moved.close()


def test_migrate_refuses_a_target_that_is_not_empty(tmp_path):
    source = open_test_engine(tmp_path / "a")
    source.create_gallery("g")
    other = open_test_engine(tmp_path / "b")
    other.create_gallery("h")
    with pytest.raises(FaceledgerError, match="not empty"):
        migrate(source, to_db=other.settings.database_url)
    with pytest.raises(FaceledgerError, match="is the source"):
        migrate(source, to_db=source.settings.database_url)
