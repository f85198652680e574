"""What a fresh CLI process reads instead of remaking (caches.py): a tail fit and the optimised SFace
graph. Each read-back must be exactly what would have been computed, and a damaged file is remade."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger import caches
from faceledger.calibration import fit_cache, packaged_calibration
from faceledger.calibration.tail import fit_tail
from faceledger.embed import sface_ort
from faceledger.models import SFACE_2021DEC


@pytest.fixture
def cache_dir(tmp_path):
    caches.use_dir(tmp_path / "cache")
    yield tmp_path / "cache"
    caches.use_dir(None)


def same_fit(a, b) -> bool:
    return a.summary() == b.summary() and a.exceed_fraction == b.exceed_fraction and np.array_equal(a.boot, b.boot)


def test_a_tail_fit_read_back_is_the_fit_and_a_damaged_or_changed_one_is_refitted(cache_dir):
    cal = packaged_calibration("sface-2021dec")
    fresh = fit_tail(cal.counts, cal.bin_width, reps=12)
    first = fit_cache.cached_fit_tail(cal.counts, cal.bin_width, reps=12)
    [stored] = (cache_dir / "tail-fits").glob("tail-*.npz")
    assert same_fit(first, fresh)

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although the fit was kept")

    original = fit_cache.fit_tail
    fit_cache.fit_tail = no_refit
    try:
        assert same_fit(fit_cache.cached_fit_tail(cal.counts, cal.bin_width, reps=12), fresh)
    finally:
        fit_cache.fit_tail = original

    stored.write_bytes(b"not an npz file")
    assert same_fit(fit_cache.cached_fit_tail(cal.counts, cal.bin_width, reps=12), fresh)
    other = fit_cache.cached_fit_tail(cal.counts, cal.bin_width, reps=13)  # another option: another key
    assert len(other.boot) != len(fresh.boot) or not np.array_equal(other.boot, fresh.boot)
    assert len(list((cache_dir / "tail-fits").glob("tail-*.npz"))) == 2


def test_the_optimised_sface_graph_read_back_gives_the_same_vectors_bit_for_bit(cache_dir):
    crops = np.random.default_rng(7).integers(0, 256, size=(3, 3, 112, 112)).astype(np.float32)
    caches.use_dir(None)
    reference = sface_ort.create_session(SFACE_2021DEC).run(None, {"data": crops})[0]
    caches.use_dir(cache_dir)
    made = sface_ort.create_session(SFACE_2021DEC)
    [saved] = (cache_dir / "models").glob("sface-*")  # a folder: the graph and its (prepacked) weights
    assert sorted(p.name for p in saved.iterdir()) == ["graph.data", "graph.onnx"]
    assert np.array_equal(made.run(None, {"data": crops})[0], reference)

    original = sface_ort.prepare_graph
    sface_ort.prepare_graph = lambda data: (_ for _ in ()).throw(AssertionError("graph prepared again"))
    try:
        read_back = sface_ort.create_session(SFACE_2021DEC)
    finally:
        sface_ort.prepare_graph = original
    assert np.array_equal(read_back.run(None, {"data": crops})[0], reference)

    weights = saved / "graph.data"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the weights: the entry's sha256 no longer matches its name
    weights.write_bytes(bytes(data))
    remade = sface_ort.create_session(SFACE_2021DEC)
    assert np.array_equal(remade.run(None, {"data": crops})[0], reference)
    assert [p.name for p in (cache_dir / "models").glob("sface-*")] == [saved.name]


def test_a_shipped_model_changed_after_caching_is_still_refused(cache_dir, tmp_path):
    import shutil

    from faceledger.errors import ModelNotAvailable
    from faceledger.models import locate

    folder = tmp_path / "models"
    folder.mkdir()
    copy = folder / SFACE_2021DEC.filename
    shutil.copyfile(locate(SFACE_2021DEC), copy)
    sface_ort.create_session(SFACE_2021DEC, folder)  # verified, optimised and kept
    assert list((cache_dir / "models").glob("sface-*"))
    with open(copy, "r+b") as fh:  # one bit flipped near the end of the file
        fh.seek(-16, 2)
        byte = fh.read(1)
        fh.seek(-16, 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelNotAvailable, match="sha256"):
        sface_ort.create_session(SFACE_2021DEC, folder)


def test_a_cached_graph_that_loads_but_fails_its_sha256_is_not_used_but_remade(cache_dir):
    """The session is built while the entry is hashed (embed/optimised_cache.py); it is handed out only
    when the digest matches the name. Here the entry holds another valid graph (YuNet's), which ONNX
    Runtime would happily run, or truncated weights, or no weights at all: each is refused and the graph
    made again from the shipped model, bit for bit as before."""
    from faceledger.detect.yunet_ort import prepared_graph

    crops = np.random.default_rng(8).integers(0, 256, size=(2, 3, 112, 112)).astype(np.float32)
    reference = sface_ort.create_session(SFACE_2021DEC).run(None, {"data": crops})[0]
    [saved] = (cache_dir / "models").glob("sface-*")
    intact = {p.name: p.read_bytes() for p in saved.iterdir()}
    prepared = []
    original = sface_ort.prepare_graph

    def counted(data: bytes) -> bytes:
        prepared.append(len(data))
        return original(data)

    damages = [lambda: (saved / "graph.onnx").write_bytes(prepared_graph()),
               lambda: (saved / "graph.data").write_bytes(intact["graph.data"][: len(intact["graph.data"]) // 3]),
               lambda: (saved / "graph.data").unlink()]
    for damage in damages:
        damage()
        sface_ort.prepare_graph = counted
        try:
            session = sface_ort.create_session(SFACE_2021DEC)
        finally:
            sface_ort.prepare_graph = original
        assert [i.name for i in session.get_inputs()] == ["data"]
        assert np.array_equal(session.run(None, {"data": crops})[0], reference)
        assert {p.name: p.read_bytes() for p in saved.iterdir()} == intact  # remade under the same name
    assert len(prepared) == len(damages)


def test_an_entry_of_the_flat_layout_is_removed_when_the_new_one_is_saved(cache_dir):
    """Before the weights were prepacked an entry was one file, sface-<key>-<digest>.onnx (38.6 MB)."""
    folder = cache_dir / "models"
    folder.mkdir(parents=True)
    (folder / "sface-0123-4567.onnx").write_bytes(b"an optimised graph of an earlier release")
    (folder / "yunet-89ab-cdef.onnx").write_bytes(b"the detector's")
    sface_ort.create_session(SFACE_2021DEC)
    assert sorted(p.name.split("-")[0] + ("/" if p.is_dir() else "") for p in folder.iterdir()) == ["sface/", "yunet"]
