"""The VectorIndex contract, run over every backend (FAISS today; Milvus joins in the scale issue)."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.errors import FaceledgerError, IndexMismatch
from faceledger.index.faiss_index import FaissIndex, IndexFiles, IndexMeta

BACKENDS = {"faiss-flat": lambda dim: FaissIndex(dim, "Flat")}


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=sorted(BACKENDS))
def index(request):
    return BACKENDS[request.param](16)


def test_search_returns_exact_inner_product_ranking(index):
    vectors = unit_vectors(200)
    ids = np.arange(1000, 1200)
    index.add(ids, vectors)
    query = unit_vectors(1, seed=1)
    scores, found = index.search(query, 5)
    expected = np.argsort(-(vectors @ query[0]))[:5] + 1000
    assert found[0].tolist() == expected.tolist()
    np.testing.assert_allclose(scores[0], np.sort(vectors @ query[0])[::-1][:5], rtol=1e-5)


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
