"""One engine shared by many threads (as the HTTP server shares it): no crash, no duplicate, intact ledger."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from faceledger.policy import Principal

from .conftest import OPEN_FACES, held_out_probes

ADMIN = Principal("root", "admin")
ANALYST = Principal("ana", "analyst")


def test_concurrent_searches_share_the_models_and_the_ledger_safely(enrolled):
    probes = held_out_probes()[:4] * 2
    expected = [p.parent.name for p in probes]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: enrolled.search(p, gallery="g", purpose="p", case="c", by=ANALYST), probes))
    assert [r.candidates[0].subject for r in results] == expected
    assert len({r.ledger_entry for r in results}) == len(probes)
    assert enrolled.audit_verify().ok


def test_concurrent_writers_never_take_the_same_ledger_sequence(engine):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: engine.create_gallery(f"c{i}", by=ADMIN), range(16)))
    check = engine.audit_verify()
    assert check.ok, check.problems
    assert len(engine.list_galleries()) == 17


def test_concurrent_enrolments_of_the_same_image_store_it_once(engine):
    image = OPEN_FACES / "sunak_portrait.jpg"
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: engine.enroll([image], gallery="g", subject="Rishi Sunak", source="s",
                                                        legal_basis="b", by=ADMIN), range(4)))
    assert sorted(r.count("enrolled") for r in reports) == [0, 0, 0, 1]
    assert sum(r.count("duplicate") for r in reports) == 3
    info = engine.gallery_info("g")
    assert info["images"] == 1 and info["faces"] == 1 and engine.audit_verify().ok
