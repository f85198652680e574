"""The VectorIndex contract, run over every backend: FAISS exact, FAISS trained (PQ fast-scan with exact
re-rank from the memory-mapped vectors file), Milvus (embedded milvus-lite) and a real Milvus server
(started on 127.0.0.1 by the `milvus_server` fixture; skipped with the reason where none can run)."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.errors import FaceledgerError, IndexMismatch
from faceledger.index import spec as index_spec
from faceledger.index.faiss_index import FaissIndex
from faceledger.index.files import IndexFiles, IndexMeta
from faceledger.index.spec import IndexSpec, resolve

try:
    import milvus_lite  # noqa: F401
    from pymilvus import MilvusClient  # noqa: F401

    MILVUS_SKIP = None
except ImportError as exc:  # pragma: no cover - both are dependencies of faceledger
    MILVUS_SKIP = f"milvus-lite / pymilvus not importable here: {exc}"


def trained_pq(dim: int, tmp_path) -> FaissIndex:
    """A fast-scan PQ index that is already trained (on decoys that are then removed) and empty."""
    index = FaissIndex(dim, "PQ8x4fs;rerank=50", vectors_path=tmp_path / "pq.f32")
    index.add(np.arange(10**6, 10**6 + 1000), unit_vectors(1000, dim, seed=99))
    assert index.trained
    index.remove(np.arange(10**6, 10**6 + 1000))
    return index


def milvus_lite(dim: int, tmp_path):
    if MILVUS_SKIP:
        pytest.skip(MILVUS_SKIP)
    files = IndexFiles(tmp_path / "index", "milvus-lite://vectors.db")
    return files.new_index(1, dim)


BACKENDS = {
    "faiss-flat": lambda dim, tmp_path: FaissIndex(dim, "Flat"),
    "faiss-pq-untrained": lambda dim, tmp_path: FaissIndex(dim, "PQ8x4fs", vectors_path=tmp_path / "u.f32"),
    "faiss-pq-trained": trained_pq,
    "milvus-lite": milvus_lite,
    "milvus-server": None,  # needs the session's server: see the `index` fixture
}


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=sorted(BACKENDS))
def index(request, tmp_path):
    if request.param == "milvus-server":
        url = request.getfixturevalue("milvus_server").url
        return IndexFiles(tmp_path / "index", url).new_index(1, 16)  # gallery 1, emptied first
    return BACKENDS[request.param](16, tmp_path)


def test_search_returns_exact_inner_product_ranking(index):
    vectors = unit_vectors(200)
    ids = np.arange(1000, 1200)
    index.add(ids, vectors)
    query = unit_vectors(1, seed=1)
    scores, found = index.search(query, 5)
    expected = np.argsort(-(vectors @ query[0]))[:5] + 1000
    assert found[0].tolist() == expected.tolist()
    np.testing.assert_allclose(scores[0], np.sort(vectors @ query[0])[::-1][:5], rtol=1e-5)


@pytest.mark.parametrize("queries, threads", [(1, 1), (19, 1), (20, 2)])
def test_a_search_of_few_queries_runs_on_one_openmp_thread_and_restores_the_setting(queries, threads):
    """One probe on one thread (the others would only spin at FAISS's barrier, taking CPU from concurrent
    requests); a batch keeps the threads; the per-thread setting is what it was afterwards."""
    import faiss

    index = FaissIndex(16, "Flat")
    index.add(np.arange(100), unit_vectors(100))
    seen = []
    inner = index._index

    class Recording:
        def __getattr__(self, name):
            return getattr(inner, name)

        def search(self, *args):
            seen.append(faiss.omp_get_max_threads())
            return inner.search(*args)

    index._index = Recording()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        index.search(unit_vectors(queries, seed=3), 5)
        assert seen == [threads] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def test_remove_deletes_for_real(index):
    vectors = unit_vectors(50)
    index.add(np.arange(50), vectors)
    assert index.remove(np.array([7, 8])) == 2
    assert len(index) == 48
    _, found = index.search(vectors[7], 48)
    assert 7 not in found[0] and 8 not in found[0]


def test_k_larger_than_index_and_empty_index(index):
    scores, found = index.search(unit_vectors(1), 5)
    assert found[0].tolist() == [-1]
    index.add(np.array([1, 2]), unit_vectors(2))
    _, found = index.search(unit_vectors(1), 10)
    assert sorted(found[0].tolist()) == [1, 2]


def test_bad_shapes_are_clear_errors(index):
    with pytest.raises(FaceledgerError, match="shape"):
        index.add(np.array([1]), np.zeros((1, 3), np.float32))
    with pytest.raises(FaceledgerError, match="ids"):
        index.add(np.array([1, 2]), unit_vectors(1))
    with pytest.raises(FaceledgerError, match="NaN"):
        index.add(np.array([1]), np.full((1, 16), np.nan, np.float32))


def test_faiss_rejects_bad_factory_string():
    with pytest.raises(FaceledgerError, match="rejects the index string"):
        FaissIndex(16, "NotAnIndex42")


def test_index_files_round_trip_and_staleness(tmp_path):
    files = IndexFiles(tmp_path)
    index = FaissIndex(16)
    index.add(np.arange(10), unit_vectors(10))
    meta = IndexMeta(gallery_id=1, generation=3, model_id="m", dim=16, description="Flat", count=10)
    files.save(index, meta)
    loaded = files.load(1, expected=meta)
    assert loaded is not None and len(loaded) == 10
    assert files.load(1, expected=IndexMeta(**{**meta.__dict__, "generation": 4})) is None  # stale
    with pytest.raises(IndexMismatch, match="model"):
        files.load(1, expected=IndexMeta(**{**meta.__dict__, "model_id": "other"}))
    files.delete(1)
    assert files.load(1, expected=meta) is None


def test_remove_of_unknown_ids_removes_nothing(index):
    index.add(np.arange(5), unit_vectors(5))
    assert index.remove(np.array([99])) == 0
    assert len(index) == 5


def test_adds_after_search_are_found(index):
    index.add(np.arange(100), unit_vectors(100))
    index.search(unit_vectors(1), 3)
    extra = unit_vectors(1, seed=5)
    index.add(np.array([500]), extra)
    _, found = index.search(extra, 1)
    assert found[0, 0] == 500


# -- FAISS beyond exact search -----------------------------------------------------------------------

def test_spec_parsing_and_auto_cut_over():
    spec = IndexSpec.parse("IVF64,PQ8x4fs;nprobe=16;rerank=40")
    assert spec.factory == "IVF64,PQ8x4fs" and spec.params == (("nprobe", "16"),) and spec.rerank == 40
    assert IndexSpec.parse("Flat").exact
    assert resolve("auto", index_spec.AUTO_FLAT_MAX - 1, 128) == "Flat"
    assert resolve("auto", index_spec.AUTO_FLAT_MAX, 128).startswith("IVF1024,PQ64x4fs;nprobe=512")
    assert resolve("auto", 10_000_000, 128).startswith("IVF1024,PQ64x4fs;nprobe=512")
    with pytest.raises(FaceledgerError, match="rerank"):
        IndexSpec.parse("PQ8x4fs;rerank=-1")
    with pytest.raises(FaceledgerError, match="param=value"):
        IndexSpec.parse("PQ8x4fs;nprobe")


def test_indexes_that_cannot_delete_or_bad_params_are_refused(tmp_path):
    with pytest.raises(FaceledgerError, match="cannot delete"):
        FaissIndex(16, "HNSW32", vectors_path=tmp_path / "h.f32")
    with pytest.raises(FaceledgerError, match="search parameters"):
        FaissIndex(16, "PQ8x4fs;nprobe=4", vectors_path=tmp_path / "p.f32")
    with pytest.raises(FaceledgerError, match="rejects the index string"):
        FaissIndex(16, "IVF10,PQ7", vectors_path=tmp_path / "q.f32")


def test_trained_index_rescores_exactly_and_erases_from_the_vectors_file(tmp_path):
    vectors = unit_vectors(3000, seed=3)
    index = FaissIndex(16, "IVF16,PQ8x4fs;nprobe=16;rerank=64", vectors_path=tmp_path / "v.f32")
    index.add(np.arange(3000) + 7, vectors)
    assert index.trained and len(index) == 3000
    queries = unit_vectors(20, seed=4)
    scores, found = index.search(queries, 5)
    exact = queries @ vectors.T
    for q in range(20):  # the scores are the exact inner products of the returned ids
        np.testing.assert_allclose(scores[q], exact[q, found[q] - 7], rtol=1e-5)
    assert (found[:, 0] - 7 == exact.argmax(axis=1)).mean() >= 0.9
    index.remove(np.array([7, 8]))
    raw = np.fromfile(tmp_path / "v.f32", dtype=np.float32).reshape(-1, 16)
    assert not raw[0].any() and not raw[1].any() and raw[2].any()  # erased, not hidden
    _, found = index.search(vectors[0], 10)
    assert 7 not in found[0]


def test_compressed_index_round_trips_through_index_files(tmp_path):
    files = IndexFiles(tmp_path, "PQ8x4fs;rerank=32")
    index = files.new_index(1, 16, 2000)
    vectors = unit_vectors(2000, seed=8)
    with index:
        index.add(np.arange(2000), vectors)
    meta = IndexMeta(gallery_id=1, generation=1, model_id="m", dim=16, description="PQ8x4fs;rerank=32", count=2000)
    files.save(index, meta)
    loaded = files.load(1, expected=meta)
    assert loaded is not None and loaded.trained and len(loaded) == 2000
    np.testing.assert_array_equal(loaded.search(vectors[:5], 3)[1], index.search(vectors[:5], 3)[1])
    loaded.add(np.array([5000]), unit_vectors(1, seed=9))  # appends keep working after a reload
    assert len(loaded) == 2001
    rebuilt = files.new_index(1, 16, 2000)
    rebuilt.add(np.arange(3), vectors[:3])
    files.save(rebuilt, meta)
    assert len(list(tmp_path.glob("gallery-1-*.f32"))) == 1  # the old vectors file is gone


def test_auto_converts_from_flat_when_the_gallery_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(index_spec, "AUTO_FLAT_MAX", 1500)
    monkeypatch.setattr(index_spec, "AUTO_COMPRESSED", "PQ{m}x4fs;rerank=100")
    index = FaissIndex(16, "auto", vectors_path=tmp_path / "a.f32")
    vectors = unit_vectors(2000, seed=11)
    index.add(np.arange(1000), vectors[:1000])
    assert index.kind == "Flat"
    index.add(np.arange(1000, 2000), vectors[1000:])
    assert index.kind.startswith("PQ8x4fs") and index.trained and len(index) == 2000
    _, found = index.search(vectors[1500], 1)
    assert found[0, 0] == 1500


def test_milvus_url_that_does_not_answer_is_a_clear_error(tmp_path):
    if MILVUS_SKIP:
        pytest.skip(MILVUS_SKIP)
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    files = IndexFiles(tmp_path, f"milvus://127.0.0.1:{port}")
    with pytest.raises(FaceledgerError, match="cannot reach the Milvus server"):
        files.new_index(1, 16)


def test_milvus_galleries_are_separate(tmp_path):
    if MILVUS_SKIP:
        pytest.skip(MILVUS_SKIP)
    files = IndexFiles(tmp_path, "milvus-lite://v.db")
    a, b = files.new_index(1, 16), files.new_index(2, 16)
    a.add(np.arange(10), unit_vectors(10))
    b.add(np.arange(100, 105), unit_vectors(5, seed=2))
    assert len(a) == 10 and len(b) == 5
    assert set(b.search(unit_vectors(1), 10)[1][0].tolist()) <= set(range(100, 105))
    assert files.new_index(1, 16) is not None and len(a) == 0  # a rebuild starts from nothing


def test_index_survives_its_vectors_file_being_replaced_by_another_process(tmp_path):
    files = IndexFiles(tmp_path, "PQ8x4fs;rerank=32")
    index = files.new_index(1, 16)
    vectors = unit_vectors(1000, seed=12)
    index.add(np.arange(1000), vectors)
    meta = IndexMeta(gallery_id=1, generation=1, model_id="m", dim=16, description="PQ8x4fs;rerank=32", count=1000)
    files.save(index, meta)
    other = files.new_index(1, 16)  # another process rebuilds the gallery and drops the old file
    other.add(np.arange(3), vectors[:3])
    files.save(other, IndexMeta(**{**meta.__dict__, "generation": 2, "count": 3}))
    index.add(np.array([2000]), unit_vectors(1, seed=13))  # the first one still works on its open file
    _, found = index.search(vectors[500], 1)
    assert found[0, 0] == 500 and len(index) == 1001
    assert files.load(1, expected=IndexMeta(**{**meta.__dict__, "generation": 2, "count": 3})) is not None
