"""The people of a gallery: the engine's rename / merge / move / remove (roles, ledger, bad input, the
index kept right) and the web pages over them (TestClient; the browser flow is in test_web_browser.py)."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient

from faceledger.errors import AlreadyExists, Conflict, MissingField, NotFound, PermissionDenied
from faceledger.policy import Principal

from .conftest import LFW_DIR, OPEN_FACES, open_test_engine
from .web_clients import signed_in

ENROLLER = Principal("enroller-p", "enroller")
ANALYST = Principal("analyst-p", "analyst")


def lfw(person: str, n: int = 3):
    return sorted((LFW_DIR / person).glob("*.jpg"))[:n]


@pytest.fixture
def world(tmp_path):
    """Gallery "g": Tony Blair (3 faces), Colin Powell (2), one Powell photo enrolled as "C. Powell" by
    mistake, and Ardern (1)."""
    engine = open_test_engine(tmp_path / "home")
    engine.create_gallery("g")
    for subject, files in (("Tony Blair", lfw("Tony_Blair")), ("Colin Powell", lfw("Colin_Powell", 2)),
                           ("C. Powell", lfw("Colin_Powell", 3)[2:]), ("Jacinda Ardern", [OPEN_FACES / "ardern_2018.jpg"])):
        engine.enroll(files, gallery="g", subject=subject, source="test", legal_basis="research")
    tokens = {role: engine.add_user(f"{role}-p", role=role)[1] for role in ("enroller", "analyst", "admin")}
    yield engine, tokens
    engine.close()


def sid(engine, name: str) -> int:
    return engine.list_subjects("g", query=name, exact=True)["subjects"][0]["subject_id"]


def test_list_subjects_pages_and_finds_by_name(world):
    engine, _ = world
    page = engine.list_subjects("g", limit=2, by=ANALYST)
    assert page["total"] == 4 and [s["name"] for s in page["subjects"]] == ["C. Powell", "Colin Powell"]
    assert page["subjects"][1]["faces"] == 2 and len(page["subjects"][1]["face_ids"]) == 2
    assert [s["name"] for s in engine.list_subjects("g", query="powell")["subjects"]] == ["C. Powell", "Colin Powell"]
    assert engine.list_subjects("g", query="%")["total"] == 0  # a wildcard is a character, not a pattern
    assert engine.list_subjects("g", offset=4)["subjects"] == []


def test_rename_and_its_bad_input(world):
    engine, _ = world
    blair = sid(engine, "Tony Blair")
    assert engine.rename_subject("g", blair, "Anthony Blair", by=ENROLLER)["name"] == "Anthony Blair"
    assert engine.audit_entries(action="subject.rename")[-1]["payload"]["before"] == "Tony Blair"
    with pytest.raises(AlreadyExists, match="already has a subject called 'Colin Powell'"):
        engine.rename_subject("g", blair, "Colin Powell", by=ENROLLER)
    with pytest.raises(MissingField):
        engine.rename_subject("g", blair, "  ", by=ENROLLER)
    with pytest.raises(PermissionDenied):
        engine.rename_subject("g", blair, "Someone", by=ANALYST)
    assert engine.audit_entries(action="denied")[-1]["payload"]["attempted"] == "subject.edit"
    with pytest.raises(NotFound):
        engine.rename_subject("g", 99999, "x", by=ENROLLER)


def test_merge_moves_every_face_and_search_finds_the_merged_subject(world):
    engine, _ = world
    mistake, powell = sid(engine, "C. Powell"), sid(engine, "Colin Powell")
    with pytest.raises(Conflict, match="into itself"):
        engine.merge_subjects("g", powell, powell, by=ENROLLER)
    merged = engine.merge_subjects("g", mistake, powell, by=ENROLLER)
    assert merged["faces"] == 3 and len(merged["images"]) == 3
    assert engine.list_subjects("g", query="C. Powell", exact=True)["total"] == 0
    entry = engine.audit_entries(action="subject.merge")[-1]["payload"]
    assert (entry["subject"], entry["into"], entry["faces"]) == ("C. Powell", "Colin Powell", 1)
    probe = sorted((LFW_DIR / "Colin_Powell").glob("*.jpg"))[3]
    found = engine.search(probe, gallery="g", purpose="p", case="c")
    assert found.candidates[0].subject == "Colin Powell"


def test_move_and_remove_a_face(world):
    engine, _ = world
    blair, ardern = sid(engine, "Tony Blair"), sid(engine, "Jacinda Ardern")
    faces = [f for im in engine.subject("g", blair)["images"] for f in im["face_ids"]]
    engine.move_face("g", faces[0], ardern, by=ENROLLER)
    assert engine.subject("g", ardern)["faces"] == 2 and engine.subject("g", blair)["faces"] == 2
    assert engine.audit_entries(action="face.move")[-1]["payload"]["to"] == "Jacinda Ardern"
    with pytest.raises(Conflict, match="already belongs"):
        engine.move_face("g", faces[0], ardern, by=ENROLLER)
    with pytest.raises(MissingField):
        engine.remove_face("g", faces[1], reason="", by=ENROLLER)
    before = engine.gallery_info("g")
    engine.remove_face("g", faces[1], reason="not him", by=ENROLLER)
    after = engine.gallery_info("g")
    assert (after["faces"], after["images"]) == (before["faces"] - 1, before["images"] - 1)
    assert engine.audit_entries(action="face.remove")[-1]["payload"]["reason"] == "not him"
    with pytest.raises(Conflict, match="last face"):
        engine.remove_face("g", faces[2], reason="x", by=ENROLLER)
    with pytest.raises(Conflict, match="only face"):
        engine.move_face("g", faces[2], ardern, by=ENROLLER)
    # the removed face is gone from the index: a search never names it
    probe = sorted((LFW_DIR / "Tony_Blair").glob("*.jpg"))[1]
    result = engine.search(probe, gallery="g", purpose="p", case="c", investigative=False)
    assert all(c.face_id != faces[1] for c in result.candidates)
    assert engine.audit_verify().ok


# -- the pages -----------------------------------------------------------------------------------------

def browser_for(world, role: str) -> tuple[TestClient, str]:
    engine, tokens = world
    return signed_in(engine, tokens[role])


def test_gallery_page_lists_people_with_faces_and_finds_by_name(world):
    client, _ = browser_for(world, "admin")
    page = client.get("/galleries/g").text
    assert "Tony Blair" in page and "Jacinda Ardern" in page and page.count("/crop") == 7
    found = client.get("/galleries/g", params={"q": "pow"}).text
    assert "Colin Powell" in found and "Tony Blair" not in found
    assert "Nobody called" in client.get("/galleries/g", params={"q": "nobody"}).text


def test_enroller_sees_people_without_faces_and_edits_them(world):
    engine, _ = world
    client, csrf = browser_for(world, "enroller")
    assert "/crop" not in client.get("/galleries/g").text  # enrollers do not compare faces
    blair = sid(engine, "Tony Blair")
    done = client.post(f"/galleries/g/people/{blair}/rename", data={"new_name": "T. Blair", "csrf": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/galleries/g/people/{blair}"
    taken = client.post(f"/galleries/g/people/{blair}/rename", data={"new_name": "Colin Powell", "csrf": csrf})
    assert taken.status_code == 409 and "already has a subject" in taken.text and 'value="Colin Powell"' in taken.text
    itself = client.post(f"/galleries/g/people/{blair}/merge", data={"into": "T. Blair", "csrf": csrf})
    assert itself.status_code == 409 and "into itself" in itself.text
    unknown = client.post(f"/galleries/g/people/{blair}/merge", data={"into": "Nobody", "csrf": csrf})
    assert unknown.status_code == 404 and 'value="Nobody"' in unknown.text
    mistake, powell = sid(engine, "C. Powell"), sid(engine, "Colin Powell")
    merged = client.post(f"/galleries/g/people/{mistake}/merge", data={"into": "Colin Powell", "csrf": csrf},
                         follow_redirects=False)
    assert merged.headers["location"] == f"/galleries/g/people/{powell}"
    ardern = sid(engine, "Jacinda Ardern")
    only = engine.subject("g", ardern)["images"][0]["face_ids"][0]
    last = client.post(f"/galleries/g/faces/{only}/remove", data={"back": ardern, "reason": "test", "csrf": csrf})
    assert last.status_code == 409 and "last face" in last.text and "--" not in last.text.split("<main>")[1]
    no_reason = client.post(f"/galleries/g/faces/{only}/remove", data={"back": ardern, "reason": "", "csrf": csrf})
    assert no_reason.status_code == 422 and "Reason" in no_reason.text


def test_analyst_may_read_people_but_not_change_them(world):
    engine, _ = world
    client, csrf = browser_for(world, "analyst")
    blair = sid(engine, "Tony Blair")
    page = client.get(f"/galleries/g/people/{blair}").text
    assert "source: test" in page and "rename-form" not in page
    assert page.count("legal basis: research") == 3  # provenance once per image
    refused = client.post(f"/galleries/g/people/{blair}/rename", data={"new_name": "X", "csrf": csrf})
    assert refused.status_code == 403 and engine.subject("g", blair)["name"] == "Tony Blair"
    face = engine.subject("g", blair)["images"][0]["face_ids"][0]
    assert client.post(f"/galleries/g/faces/{face}/move", data={"back": blair, "to": "Jacinda Ardern",
                                                               "csrf": csrf}).status_code == 403
    assert client.post(f"/galleries/g/faces/{face}/remove", data={"back": blair, "reason": "x",
                                                                 "csrf": csrf}).status_code == 403
    assert client.post(f"/galleries/g/people/{blair}/rename", data={"new_name": "X"}).status_code == 403  # no CSRF


def test_finding_people_by_name_pages_in_sql_on_both_databases(engine):
    """The subject list's name search and paging (store/queries.py) on SQLite and PostgreSQL alike."""
    import numpy as np

    from faceledger.enrollment import PrecomputedFace

    names = ["Ada Lovelace", "ada byron", "Grace Hopper", "100% Real", "under_score", "Alan Turing"]
    rng = np.random.default_rng(3)
    engine.enroll_embeddings([PrecomputedFace(subject=n, sha256=f"{i:064x}", name=f"e{i}",
                                              embedding=rng.standard_normal(128).astype(np.float32),
                                              model_id=engine.model_id) for i, n in enumerate(names)],
                             gallery="g", source="s", legal_basis="b")
    found = engine.list_subjects("g", query="ADA")
    assert found["total"] == 2 and [s["name"] for s in found["subjects"]] == ["Ada Lovelace", "ada byron"]
    assert [s["name"] for s in engine.list_subjects("g", query="%")["subjects"]] == ["100% Real"]
    assert [s["name"] for s in engine.list_subjects("g", query="_")["subjects"]] == ["under_score"]
    page = engine.list_subjects("g", query="a", limit=2, offset=2)
    assert page["total"] == 5 and len(page["subjects"]) == 2  # every name but "under_score" has an "a"
    past = engine.list_subjects("g", query="a", limit=2, offset=10)
    assert past["total"] == 5 and past["subjects"] == []
    pages = [engine.list_subjects("g", limit=4, offset=offset) for offset in (0, 4)]
    shown = [s["name"] for p in pages for s in p["subjects"]]
    assert pages[1]["total"] == 6 and sorted(shown) == sorted(names)  # every name once, whatever the collation
    assert engine.list_subjects("g", query="grace hopper", exact=True)["total"] == 0  # exact means exact
    assert engine.list_subjects("g", query="Grace Hopper", exact=True)["subjects"][0]["faces"] == 1


def test_gallery_page_pages_through_many_people_with_counts(tmp_path):
    import numpy as np

    from faceledger.enrollment import PrecomputedFace

    engine = open_test_engine(tmp_path / "home")
    engine.create_gallery("big")
    rng = np.random.default_rng(5)
    engine.enroll_embeddings([PrecomputedFace(subject=f"Person {i:04d}", sha256=f"{i:064x}", name=f"e{i}",
                                              embedding=rng.standard_normal(128).astype(np.float32),
                                              model_id=engine.model_id) for i in range(1, 1101)],
                             gallery="big", source="s", legal_basis="b")
    token = engine.add_user("reader", role="auditor")[1]
    client, _ = signed_in(engine, token)
    first = client.get("/galleries/big").text
    assert "1,100 people" in first and "1–48 of 1,100" in first and "Person 0048" in first and "Person 0049" not in first
    assert "offset=48" in first and "offset=1056" in first and "Previous" not in first  # Next and Last
    last = client.get("/galleries/big", params={"offset": 1056}).text
    assert "1,057–1,100 of 1,100" in last and "Person 1100" in last and "Next" not in last
    found = client.get("/galleries/big", params={"q": "10", "offset": 48}).text
    assert "49–" in found and "whose name holds “10”" in found and "q=10" in found.split('rel="prev"')[0]
    engine.close()
