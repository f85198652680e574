"""A search ranks outside the database's write lock; a gallery that changes between the ranking and the
ledger entry is ranked again inside the transaction, so the ledger records the answer over the
galleries as they are when it is written."""

from __future__ import annotations

from faceledger import open_engine
from faceledger.config import Settings
from faceledger.services import search as search_module

from .conftest import LFW_DIR


def test_a_gallery_changed_while_ranking_is_ranked_again_under_the_lock(tmp_path):
    home = tmp_path / "home"
    people = sorted(p for p in LFW_DIR.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    searched, newcomer = people[:3], people[3]
    engine = open_engine(Settings(home=home, operator="searcher"))
    other = open_engine(Settings(home=home, operator="enroller"))  # its own locks: as another process
    try:
        engine.create_gallery("g", purposes=["test"])
        for person in searched:
            engine.enroll([min(person.glob("*.jpg"))], gallery="g", subject=person.name, source="LFW",
                          legal_basis="research")
        calls = []
        original = search_module.Searching.match_many

        def match_many(self, session, galleries, vector, **kwargs):
            answer = original(self, session, galleries, vector, **kwargs)
            calls.append(answer)
            if len(calls) == 1:  # between the ranking and the write: the newcomer is enrolled elsewhere
                other.enroll([min(newcomer.glob("*.jpg"))], gallery="g", subject=newcomer.name, source="LFW",
                             legal_basis="research")
            return answer

        search_module.Searching.match_many = match_many
        try:
            result = engine.search(max(newcomer.glob("*.jpg")), gallery="g", purpose="test", case="C-1")
        finally:
            search_module.Searching.match_many = original
        assert len(calls) == 2  # ranked again inside the transaction
        assert calls[0].gallery_size == 3 and result.gallery_size == 4
        assert result.decision == "match" and result.candidates[0].subject == newcomer.name
        [entry] = engine.audit_entries(action="search", case="C-1")
        assert entry["payload"]["gallery_size"] == 4 and entry["entry_id"] == result.ledger_entry
        assert entry["payload"]["candidates"][0]["subject"] == newcomer.name

        plain = engine.search(max(newcomer.glob("*.jpg")), gallery="g", purpose="test", case="C-2")
        assert plain.gallery_size == 4 and plain.candidates[0].subject == newcomer.name
    finally:
        other.close()
        engine.close()


def test_concurrent_probes_get_their_own_model_copy_up_to_the_limit(pipeline, tmp_path):
    import threading

    import numpy as np

    from faceledger.imaging import load_image
    from faceledger.services.context import ModelCopies

    copies = ModelCopies(pipeline, Settings(home=tmp_path, model_copies=2))
    image = load_image(min(sorted(p for p in LFW_DIR.iterdir() if p.is_dir())[0].glob("*.jpg")))
    with copies.borrow() as first:
        assert first is pipeline  # the engine's own copy is lent first: one command loads one copy
        with copies.borrow() as second:  # every copy busy: a second one is made
            assert second is not pipeline
            same = [c.single_face(image, name="a").embedding for c in (first, second)]
            assert np.array_equal(same[0], same[1])  # the same models: the same vector
            waited = threading.Event()

            def third() -> None:
                with copies.borrow():  # at the limit: waits for a copy to come back
                    waited.set()

            worker = threading.Thread(target=third)
            worker.start()
            assert not waited.wait(0.5)
        worker.join(30)
        assert waited.is_set()
    assert copies._made == 2
