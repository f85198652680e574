"""Append-only index deltas (index/deltas.py, IndexFiles): a batch adds a small file beside the base instead of
rewriting it; readers apply base + deltas; a missing or damaged delta means a rebuild; a published re-rank
vectors file never changes size; compaction writes a new base and removes the deltas."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.index import deltas
from faceledger.index.faiss_index import FaissIndex
from faceledger.index.files import IndexFiles, IndexMeta

DIM = 16
KINDS = ["Flat", "PQ8x4fs;rerank=50"]  # PQ8x4fs trains from 624 vectors: the base below is trained


def unit(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def meta(generation: int, count: int, kind: str) -> IndexMeta:
    return IndexMeta(gallery_id=1, generation=generation, model_id="m", dim=DIM, description=kind, count=count)


def based(tmp_path, kind: str, n: int = 700) -> tuple[IndexFiles, np.ndarray]:
    """Index files of gallery 1 holding faces 1..n at generation 1 (the base)."""
    files = IndexFiles(tmp_path / "index", kind, dim=DIM)
    vectors = unit(n, 0)
    index = files.new_index(1, DIM, n)
    with index:
        index.add(np.arange(1, n + 1), vectors)
    files.save(index, meta(1, n, kind))
    index.close()
    return files, vectors


def batch(first: int, n: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(first, first + n), unit(n, seed + first)


def found_top1(index, ids: np.ndarray, vectors: np.ndarray) -> bool:
    _, got = index.search(vectors, 1)
    return bool((got[:, 0] == ids).all())


@pytest.mark.parametrize("kind", KINDS)
def test_batches_append_deltas_and_readers_apply_them(tmp_path, kind):
    files, base_vectors = based(tmp_path, kind)
    base_file = files.paths(1)[0]
    before = base_file.read_bytes()
    added = [batch(701), batch(706), batch(711, n=0)]  # a batch of no faces still has its delta
    for generation, (ids, vectors) in enumerate(added, start=2):
        assert files.append(1, generation, ids, vectors, "m")
    assert base_file.read_bytes() == before, "an enrolment batch must not rewrite the base"
    assert sorted(deltas.pending(files.directory, 1)) == [2, 3, 4]
    assert not files.append(1, 1, *batch(900), "m"), "no delta for a generation the base already holds"
    index = files.load(1, expected=meta(4, 710, kind))
    assert index is not None and len(index) == 710
    assert np.array_equal(index.face_ids(), np.arange(1, 711))
    assert found_top1(index, np.arange(701, 711), np.concatenate([v for _, v in added]))
    assert found_top1(index, np.arange(1, 11), base_vectors[:10])
    # a reader at an older generation of the store than the files gets the deltas it asks for, no more
    assert len(files.load(1, expected=meta(2, 705, kind))) == 705


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_or_damaged_delta_means_rebuild(tmp_path, kind):
    files, _ = based(tmp_path, kind)
    files.append(1, 2, *batch(701), "m")
    assert files.load(1, expected=meta(3, 710, kind)) is None, "generation 3 has no delta: rebuild"
    assert files.needs_base(1, 3)
    files.append(1, 3, *batch(706), "m")
    path = deltas.pending(files.directory, 1)[3]
    path.write_bytes(path.read_bytes()[:-7])  # cut short
    assert files.load(1, expected=meta(3, 710, kind)) is None
    path.write_bytes(b"FLDELTA1" + b"\xff" * 64)  # garbage after the magic
    assert files.load(1, expected=meta(3, 710, kind)) is None
    files.append(1, 3, *batch(706), "m")
    assert files.load(1, expected=meta(3, 711, kind)) is None, "the store's count is checked too"
    assert len(files.load(1, expected=meta(3, 710, kind))) == 710


def test_a_published_vectors_file_only_ever_grows(tmp_path):
    """Two readers of one base each apply the same deltas and a held index keeps growing: none of them may
    write to the shared re-rank file (another process maps it: truncating it under them would crash them).
    A compaction by the holder of the current base appends its rows in place (past every reader's view);
    one by the holder of an older view of the file copies everything to a new file instead."""
    kind = KINDS[1]
    files, base_vectors = based(tmp_path, kind)
    shared = files.directory / IndexMeta.read(files.paths(1)[1]).vectors
    size = shared.stat().st_size
    files.append(1, 2, *batch(701), "m")
    one, two = (files.load(1, expected=meta(2, 705, kind)) for _ in range(2))
    one.add(*batch(706))
    assert shared.stat().st_size == size
    assert found_top1(one, np.arange(701, 711), np.concatenate([batch(701)[1], batch(706)[1]]))
    assert found_top1(two, np.arange(1, 50), base_vectors[:49])
    files.save(one, meta(3, 710, kind))  # compaction on the current base: extended in place, deltas gone
    assert IndexMeta.read(files.paths(1)[1]).vectors == shared.name and not deltas.pending(files.directory, 1)
    assert shared.stat().st_size == size + 10 * DIM * 4
    assert found_top1(two, np.arange(1, 50), base_vectors[:49]), "a reader of the shorter view is unharmed"
    fresh = files.load(1, expected=meta(3, 710, kind))
    assert found_top1(fresh, np.arange(701, 711), np.concatenate([batch(701)[1], batch(706)[1]]))
    two.add(*batch(706))  # two still sees 700 shared rows of a file that now has 710: it must not write there
    files.save(two, meta(3, 710, kind))
    now = IndexMeta.read(files.paths(1)[1])
    assert now.vectors != shared.name and not shared.exists()
    assert found_top1(fresh, np.arange(701, 711), np.concatenate([batch(701)[1], batch(706)[1]])), \
        "a reader keeps its open (now unlinked) file"
    again = files.load(1, expected=meta(3, 710, kind))
    assert found_top1(again, np.arange(701, 711), np.concatenate([batch(701)[1], batch(706)[1]]))
    assert found_top1(again, np.arange(1, 50), base_vectors[:49])


@pytest.mark.parametrize("kind", KINDS)
def test_discard_leaves_no_copy_of_any_vector(tmp_path, kind):
    files, base_vectors = based(tmp_path, kind)
    ids, vectors = batch(701)
    files.append(1, 2, ids, vectors, "m")
    files.discard(1)
    on_disk = b"".join(p.read_bytes() for p in files.directory.iterdir() if p.is_file())
    assert not any(v.tobytes() in on_disk for v in np.concatenate([base_vectors[:20], vectors]))
    assert not files.append(1, 3, *batch(706), "m"), "no delta without a base: the next reader rebuilds"
    assert files.load(1, expected=meta(3, 710, kind)) is None


def test_compaction_rule(tmp_path, monkeypatch):
    files, _ = based(tmp_path, "Flat", n=50)
    assert not files.needs_base(1, 1)
    monkeypatch.setattr(deltas, "MAX_PENDING", 3)
    for generation in range(2, 5):
        files.append(1, generation, *batch(100 + 10 * generation), "m")
        assert not files.needs_base(1, generation)
    files.append(1, 5, *batch(200), "m")
    assert files.needs_base(1, 5), "more than MAX_PENDING deltas: compact"
    monkeypatch.setattr(deltas, "MAX_PENDING", 100)
    files.append(1, 6, np.arange(300, 1300), unit(1000, 3), "m")
    assert files.needs_base(1, 6), "deltas holding more than max(1000, 10% of the base) faces: compact"


def test_delta_files_are_bounded_and_checked(tmp_path):
    ids, vectors = batch(1)
    path = deltas.write(tmp_path, 7, 9, ids, vectors, "m")
    assert deltas.read(path, gallery_id=7, generation=9, model_id="m", dim=DIM)[0].tolist() == ids.tolist()
    for wrong in [dict(gallery_id=8), dict(generation=10), dict(model_id="x"), dict(dim=DIM * 2)]:
        asked = {"gallery_id": 7, "generation": 9, "model_id": "m", "dim": DIM, **wrong}
        assert deltas.read(path, **asked) is None
    header = path.read_bytes().replace(b'"count": 5', b'"count": 99999999')
    path.write_bytes(header)
    assert deltas.read(path, gallery_id=7, generation=9, model_id="m", dim=DIM) is None
    assert FaissIndex  # the module under test is the one the engine uses


def test_auto_crossing_its_size_in_deltas_asks_for_a_new_base(tmp_path, monkeypatch):
    """Every reader would otherwise convert (and train) Flat -> compressed while loading the deltas."""
    from faceledger.index import spec

    monkeypatch.setattr(spec, "AUTO_FLAT_MAX", 1500)
    monkeypatch.setattr(spec, "AUTO_COMPRESSED", "PQ{m}x4fs;rerank=100")
    files, _ = based(tmp_path, "auto", n=1400)
    assert IndexMeta.read(files.paths(1)[1]).kind == "Flat"
    files.append(1, 2, *batch(1401, n=50), "m")
    assert not files.needs_base(1, 2)
    files.append(1, 3, *batch(1451, n=60), "m")
    assert files.needs_base(1, 3), "1,510 faces: auto is no longer Flat"
    index = files.load(1, expected=meta(3, 1510, "auto"))
    assert index.kind.startswith("PQ8x4fs") and len(index) == 1510


def test_an_index_made_under_an_earlier_auto_recipe_keeps_it_and_its_deltas(tmp_path, monkeypatch):
    """A new release may change what `auto` builds above its size (round 5 measured IVF4096 for it). An index
    built before keeps its recipe (its meta records it) and takes deltas as usual; asking for a new base
    on every batch would rewrite a 10M-face base each time."""
    from faceledger.index import spec

    monkeypatch.setattr(spec, "AUTO_FLAT_MAX", 500)
    monkeypatch.setattr(spec, "AUTO_COMPRESSED", "PQ{m}x4fs;rerank=100")
    files, _ = based(tmp_path, "auto", n=700)
    assert IndexMeta.read(files.paths(1)[1]).kind.startswith("PQ8x4fs")
    monkeypatch.setattr(spec, "AUTO_COMPRESSED", "IVF16,PQ{m}x4fs;nprobe=4;rerank=100")  # the new release
    files.append(1, 2, *batch(701, n=50), "m")
    assert not files.needs_base(1, 2)
    index = files.load(1, expected=meta(2, 750, "auto"))
    assert index.kind.startswith("PQ8x4fs") and len(index) == 750
    _, found = index.search(batch(701, n=50)[1][:3], 1)
    assert found[:, 0].tolist() == [701, 702, 703]


def test_a_delta_that_cannot_be_written_leaves_a_gap_not_an_error(tmp_path, monkeypatch):
    """The batch is committed when its delta is written: a full disk must not turn it into a failed
    enrolment; the next reader finds the gap and rebuilds from the store."""
    files, _ = based(tmp_path, "Flat", n=50)

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(deltas.os, "fsync", full)
    assert not files.append(1, 2, *batch(51), "m")
    assert not list(files.directory.glob("*.tmp")) and not deltas.pending(files.directory, 1)
    assert files.needs_base(1, 2) and files.load(1, expected=meta(2, 55, "Flat")) is None
