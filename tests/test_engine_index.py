"""The engine over every index kind: same candidates and exact scores from Flat, a compressed FAISS index
(exact re-rank) and milvus-lite; reindex --index switches kinds and is kept under `auto`."""

from __future__ import annotations

import json

import pytest

from .conftest import gallery_files, held_out_probes, open_test_engine

INDEXES = ["Flat", "auto", "PQ64x4fs;rerank=50", "milvus-lite://engine.db"]


@pytest.fixture(scope="module")
def flat_answer(tmp_path_factory):
    eng = open_test_engine(tmp_path_factory.mktemp("flat") / "home", index="Flat")
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:12], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    answer = [eng.search(p, gallery="g", purpose="p", case="c") for p in held_out_probes()[:4]]
    eng.close()
    return [[(c.subject, round(c.score, 5)) for c in r.candidates] for r in answer]


@pytest.mark.parametrize("index", INDEXES)
def test_every_index_gives_the_exact_answer(tmp_path, index, flat_answer):
    home = tmp_path / "home"
    eng = open_test_engine(home, index=index)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    eng.enroll(gallery_files()[6:12], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    eng.close()
    eng = open_test_engine(home, index=index)  # from the saved index (or Milvus), not from memory
    got = [eng.search(p, gallery="g", purpose="p", case="c") for p in held_out_probes()[:4]]
    assert [[(c.subject, round(c.score, 5)) for c in r.candidates] for r in got] == flat_answer
    assert got[0].gallery_size == 12
    eng.close()


def test_reindex_with_another_index_is_kept_under_auto(tmp_path):
    home = tmp_path / "home"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    calls = []
    rows = eng.reindex(index="PQ64x4fs;rerank=20", progress=lambda name, done, total: calls.append((done, total)))
    assert rows[0]["index"] == "PQ64x4fs;rerank=20" and calls[-1] == (6, 6)
    eng.close()
    meta = json.loads((home / "index" / "gallery-1.json").read_text())
    assert meta["description"] == "PQ64x4fs;rerank=20" and meta["vectors"].endswith(".f32")
    eng = open_test_engine(home)  # FACELEDGER_INDEX=auto keeps the explicit choice
    eng.enroll(gallery_files()[6:9], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    assert json.loads((home / "index" / "gallery-1.json").read_text())["description"] == "PQ64x4fs;rerank=20"
    assert eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c").gallery_size == 9
    assert eng.reindex(index="auto")[0]["kind"] == "Flat"
    eng.close()


def test_bad_index_string_is_a_clear_error(tmp_path):
    from faceledger.errors import FaceledgerError

    for bad, message in [("NotAnIndex42", "rejects the index string"), ("HNSW32", "cannot delete"),
                         ("PQ64x4fs;nprobe=3", "search parameters"), ("milvus://", "expected milvus")]:
        with pytest.raises(FaceledgerError, match=message):  # at start-up, before anything is stored
            open_test_engine(tmp_path / "home", index=bad)
