"""Review: the probe crop kept for the reviewer and deleted (ledgered) once the search is reviewed or its
retention ends; blind review; the review queue; the bad input of issue 13 — through the engine, the CLI,
the JSON API, and a CLI review next to a running `faceledger serve`."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from faceledger.api import create_app
from faceledger.errors import (
    AlreadyExists,
    Conflict,
    FaceledgerError,
    Gone,
    NotFound,
    PermissionDenied,
)
from faceledger.policy import Principal
from faceledger.services.context import utcnow
from faceledger.store import Probe, Review

from .conftest import gallery_files, held_out_probes, never_enrolled, open_test_engine
from .servers import running_serve

ANALYST = Principal("ana", "analyst")
REV1 = Principal("rev1", "reviewer")
REV2 = Principal("rev2", "reviewer")
PROBE = held_out_probes()[0]  # the fourth photo of the first enrolled person
GALLERIES = {"open": {}, "blind": {"blind_review": True}, "hashonly": {"keep_probe_for_review": False},
             "keeps": {"keep_probe_images": True}, "short": {"probe_retain_days": 1}}


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    """Five galleries of the same two people (six photos), one per review policy; investigative allowed,
    so a search can show two candidates."""
    engine = open_test_engine(tmp_path_factory.mktemp("review") / "home")
    for name, policy in GALLERIES.items():
        engine.create_gallery(name, allow_investigative=True, **policy)
        engine.enroll(gallery_files()[:6], gallery=name, subject_from_folder=True, source="LFW",
                      legal_basis="research")
    yield engine
    engine.close()


def lead_search(eng, gallery: str, *, case: str = "R-1", by=ANALYST):
    """An investigative search with two candidates (the person, then the other one)."""
    result = eng.search(PROBE, gallery=gallery, purpose="fraud", case=case, top_k=2, investigative=True, by=by)
    assert len(result.candidates) == 2
    return result.ledger_entry


def stored_crop(eng, entry: str) -> bytes | None:
    with eng.sessions() as s:
        return s.execute(select(Probe.review_image).where(Probe.entry_id == entry)).scalar()


# -- policy --------------------------------------------------------------------------------------------

def test_review_policy_is_part_of_the_gallery_policy_and_its_changes_are_ledgered(eng):
    info = eng.gallery_info("open")
    assert (info["keep_probe_for_review"], info["blind_review"]) == (True, False)  # the defaults
    assert eng.gallery_info("blind")["blind_review"] is True
    assert eng.gallery_info("hashonly")["keep_probe_for_review"] is False
    eng.create_gallery("flip")
    after = eng.update_gallery("flip", blind_review=True, keep_probe_for_review=False)
    assert (after["blind_review"], after["keep_probe_for_review"]) == (True, False)
    change = eng.ledger.entries(action="gallery.update")[-1]["payload"]
    assert change["before"]["blind_review"] is False and change["after"]["blind_review"] is True
    assert change["before"]["keep_probe_for_review"] is True and change["after"]["keep_probe_for_review"] is False
    with pytest.raises(PermissionDenied):
        eng.update_gallery("flip", blind_review=False, by=REV1)


def test_cli_flags_set_and_clear_the_review_policy(tmp_path, capsys, monkeypatch):
    from .test_cli import run
    home = tmp_path / "home"
    code, out, err = run(capsys, monkeypatch, home, "gallery", "create", "c", "--blind-review",
                         "--no-keep-probe-for-review", "--json")
    assert code == 0, err
    assert (json.loads(out)["blind_review"], json.loads(out)["keep_probe_for_review"]) == (True, False)
    code, out, err = run(capsys, monkeypatch, home, "gallery", "update", "c", "--no-blind-review",
                         "--keep-probe-for-review")
    assert code == 0, err
    assert "open review" in out and "a face crop until reviewed" in out
    # a switch and its --no- form are two options (so --help fits 80 columns): both at once is refused
    code, out, err = run(capsys, monkeypatch, home, "gallery", "update", "c", "--blind-review", "--no-blind-review",
                         "--json")
    assert code == 2 and json.loads(out) == {"error": {"kind": "BadParameter", "message": (
        "Invalid value: give --blind-review or --no-blind-review, not both")}}
    code, out, err = run(capsys, monkeypatch, home, "gallery", "create", "d", "--no-keep-probe-images",
                         "--keep-probe-images")
    assert code == 2 and "not both" in err
    code, out, err = run(capsys, monkeypatch, home, "gallery", "create", "d", "--no-investigative", "--json")
    assert code == 0, err
    assert (json.loads(out)["allow_investigative"], json.loads(out)["keep_probe_for_review"]) == (False, True)


def test_cli_blind_review_by_key_then_the_scores(tmp_path, capsys, monkeypatch):
    from .test_cli import run
    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.create_gallery("b", allow_investigative=True, blind_review=True)
    engine.enroll(gallery_files()[:6], gallery="b", subject_from_folder=True, source="LFW", legal_basis="research")
    entry = lead_search(engine, "b", case="CLI-B")
    keys = [c["key"] for c in engine.search_record(entry, by=REV1)["candidates"]]
    monkeypatch.setenv("FACELEDGER_TOKEN", engine.add_user("cli-blind", role="reviewer")[1])
    engine.close()
    code, out, err = run(capsys, monkeypatch, home, "result", entry)
    assert code == 0, err
    assert "hidden" in out and "0." not in out  # no score printed
    code, out, err = run(capsys, monkeypatch, home, "result", entry, "--json")
    assert sorted(c["key"] for c in json.loads(out)) == sorted(keys) and "score" not in out
    code, _, err = run(capsys, monkeypatch, home, "review", entry, "--candidate", "1", "--decision", "reject")
    assert code == 2 and "by its key" in err
    code, out, err = run(capsys, monkeypatch, home, "review", entry, "--key", keys[0], "--decision", "reject")
    assert code == 0 and f"candidate {keys[0]} (" in out, err  # still blind: named by its key
    code, out, err = run(capsys, monkeypatch, home, "review", entry, "--key", keys[1], "--decision", "reject")
    assert code == 0 and re.search(r"candidate [12] \(", out), err  # the last decision: its rank is shown
    code, out, err = run(capsys, monkeypatch, home, "result", entry)
    assert code == 0 and "hidden" not in out and "rejected" in out


# -- the probe kept for review -------------------------------------------------------------------------

def test_the_probe_crop_is_kept_until_every_candidate_is_settled_then_deleted_and_ledgered(eng):
    entry = lead_search(eng, "open")
    crop = eng.review_probe(entry, by=REV1)
    assert crop == stored_crop(eng, entry) and crop[:2] == b"\xff\xd8"  # a JPEG ...
    image = Image.open(io.BytesIO(crop))
    assert max(image.size) <= 320 and len(crop) < 60_000  # ... of the face, bounded; not the photo
    assert max(image.size) < max(Image.open(PROBE).size)
    record = eng.search_record(entry, by=REV1)
    assert record["probe_image"]["kept"] is True and record["scores_hidden"] is False

    eng.review(entry, candidate=1, decision="confirm", by=REV1)
    eng.review(entry, candidate=2, decision="inconclusive", by=REV1)  # does not settle candidate 2
    assert stored_crop(eng, entry) is not None
    assert eng.review_queue(by=REV2)["searches"][0]["ledger_entry"] == entry
    done = eng.review(entry, candidate=2, decision="reject", by=REV2)
    assert done["status"][1]["status"] == "rejected"
    assert stored_crop(eng, entry) is None
    deletion = eng.ledger.entries(action="probe.image.delete")[-1]
    assert deletion["actor"] == "rev2" and deletion["payload"]["reason"] == "reviewed"
    assert deletion["payload"]["search"] == entry
    with pytest.raises(Gone, match="deleted on .* after the search was reviewed"):
        eng.review_probe(entry, by=REV1)
    assert eng.search_record(entry, by=REV1)["probe_image"]["kept"] is False
    with eng.sessions() as s:  # the hash and embedding stay until the probe's retention ends
        assert s.execute(select(Probe.sha256).where(Probe.entry_id == entry)).scalar()
    assert entry not in [q["ledger_entry"] for q in eng.review_queue(by=REV1)["searches"]]
    assert eng.audit_verify().ok


def test_nothing_is_kept_without_candidates_or_where_the_policy_keeps_only_a_hash(eng):
    stranger = eng.search(never_enrolled()[0], gallery="open", purpose="fraud", case="R-2", by=ANALYST)
    assert not stranger.candidates and stored_crop(eng, stranger.ledger_entry) is None
    with pytest.raises(Gone, match="no candidate"):
        eng.review_probe(stranger.ledger_entry, by=REV1)
    entry = lead_search(eng, "hashonly")
    assert stored_crop(eng, entry) is None
    with pytest.raises(Gone, match="keeps only a hash and an embedding"):
        eng.review_probe(entry, by=REV1)


def test_a_gallery_that_keeps_probe_images_keeps_the_crop_after_review(eng):
    entry = lead_search(eng, "keeps")
    for rank in (1, 2):
        eng.review(entry, candidate=rank, decision="reject", by=REV1)
    assert stored_crop(eng, entry) is not None
    with eng.sessions() as s:
        assert s.execute(select(Probe.image).where(Probe.entry_id == entry)).scalar() == PROBE.read_bytes()


def test_retention_deletes_the_probe_with_its_image_and_says_so(eng):
    entry = lead_search(eng, "short")
    assert stored_crop(eng, entry) is not None
    summary = eng.purge(now=utcnow() + timedelta(days=2))  # "short" keeps probes one day; the others 30
    assert summary["probes"] == 1
    deletion = eng.ledger.entries(action="probe.image.delete")[-1]
    assert (deletion["payload"]["reason"], deletion["payload"]["searches"]) == ("retention", [entry])
    with eng.sessions() as s:
        assert s.execute(select(Probe.id).where(Probe.entry_id == entry)).first() is None
    with pytest.raises(Gone, match=r"the probe was deleted on \d{4}-\d\d-\d\d .* when its retention ended"):
        eng.review_probe(entry, by=REV1)  # a reviewer opening it afterwards
    assert eng.search_record(entry, by=REV1)["probe_image"]["kept"] is False


# -- blind review --------------------------------------------------------------------------------------

def test_blind_review_hides_rank_and_score_until_the_reviewer_has_decided_on_every_candidate(eng):
    entry = lead_search(eng, "blind", case="B-1")
    seen_by_analyst = eng.review_status(entry, by=ANALYST)
    assert [c["rank"] for c in seen_by_analyst] == [1, 2] and "score" in seen_by_analyst[0]
    blind = eng.search_record(entry, by=REV1)
    assert blind["blind_review"] is True and blind["scores_hidden"] is True
    for c in blind["candidates"]:
        assert set(c) == {"key", "subject", "subject_id", "face_id", "gallery", "label", "reviews"}
    assert [c["key"] for c in blind["candidates"]] == sorted(c["key"] for c in blind["candidates"])
    assert blind["candidates"] == eng.search_record(entry, by=REV1)["candidates"]  # stable order
    first, second = blind["candidates"]
    with pytest.raises(FaceledgerError, match="reviews blind: name the candidate by its key"):
        eng.review(entry, candidate=1, decision="confirm", by=REV1)  # a rank would reveal who came first
    answer = eng.review(entry, key=first["key"], decision="reject", by=REV1)
    assert answer["candidate"] is None and all("score" not in c for c in answer["status"])
    assert "score" not in json.dumps(answer)
    answer = eng.review(entry, key=second["key"], decision="confirm", by=REV1)
    assert [c["rank"] for c in answer["status"]] == [1, 2] and "score" in answer["status"][0]
    assert eng.search_record(entry, by=REV1)["scores_hidden"] is False
    assert eng.search_record(entry, by=REV2)["scores_hidden"] is True  # each reviewer decides blind
    with eng.sessions() as s:
        assert {r.blind for r in s.execute(select(Review).where(Review.search_entry_id == entry)).scalars()} == {True}
    ledgered = [e["payload"] for e in eng.ledger.entries(action="review") if e["payload"]["search"] == entry]
    assert [p["blind"] for p in ledgered] == [True, True] and all("score" in p for p in ledgered)
    with pytest.raises(AlreadyExists):
        eng.review(entry, key=first["key"], decision="confirm", by=REV1)


# -- the queue -----------------------------------------------------------------------------------------

def test_the_queue_lists_searches_awaiting_review_oldest_first_filtered_and_paged(eng):
    entries = [lead_search(eng, "open", case=f"Q-{i}") for i in range(3)]
    entries.append(lead_search(eng, "hashonly", case="Q-3"))
    queue = eng.review_queue(case="q-", by=REV1)
    assert [s["ledger_entry"] for s in queue["searches"]] == entries and queue["total"] == 4
    first = queue["searches"][0]
    assert (first["gallery"], first["case"], first["purpose"], first["searched_by"]) == ("open", "Q-0", "fraud", "ana")
    assert (first["candidates"], first["awaiting"], first["status"], first["probe_image"]) == (2, 2, "unreviewed", "kept")
    assert queue["searches"][3]["probe_image"] == "not kept"
    assert [s["case"] for s in eng.review_queue(gallery="hashonly", case="Q", by=REV1)["searches"]] == ["Q-3"]
    page = eng.review_queue(case="Q-", limit=2, offset=2, by=REV1)
    assert [s["ledger_entry"] for s in page["searches"]] == entries[2:] and page["total"] == 4
    eng.review(entries[0], candidate=1, decision="confirm", by=REV1)
    assert eng.review_queue(case="Q-0", by=REV1)["searches"][0]["status"] == "in review"
    assert eng.review_queue(case="Q-", older_than_hours=24, by=REV1)["total"] == 0  # all made just now
    assert eng.review_queue(case="Q-", older_than_hours=0, by=REV1)["total"] == 4
    assert eng.review_queue(case="no such case", by=REV1) == {
        "total": 0, "limit": 20, "offset": 0, "searches": [],
        "filters": {"gallery": None, "case": "no such case", "older_than_hours": None}}
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"older_than_hours": -1}):
        with pytest.raises(FaceledgerError):
            eng.review_queue(by=REV1, **bad)
    with pytest.raises(PermissionDenied):
        eng.review_queue(by=Principal("eno", "enroller"))


# -- bad input -----------------------------------------------------------------------------------------

def test_bad_reviews_are_refused_plainly_and_change_nothing(eng):
    entry = lead_search(eng, "open", case="BAD-1")
    before = len(eng.ledger.entries(action="review"))
    with pytest.raises(NotFound, match="no candidate 3 .it has 2."):
        eng.review(entry, candidate=3, decision="confirm", by=REV1)
    with pytest.raises(NotFound, match="no candidate with key"):
        eng.review(entry, key="0123456789ab", decision="confirm", by=REV1)
    with pytest.raises(FaceledgerError, match="rank or by its key"):
        eng.review(entry, candidate=1, key="0123456789ab", decision="confirm", by=REV1)
    with pytest.raises(PermissionDenied, match="'review' needs one of: reviewer"):
        eng.review(entry, candidate=1, decision="confirm", by=ANALYST)
    assert eng.ledger.entries(action="denied")[-1]["payload"]["attempted"] == "review"
    # Roles are single, so a stored user cannot be both; a caller of the Python API could still claim the
    # searcher's name with the reviewer role: refused and ledgered.
    with pytest.raises(Conflict, match="second person"):
        eng.review(entry, candidate=1, decision="confirm", by=Principal("ana", "reviewer"))
    assert "own search" in eng.ledger.entries(action="denied")[-1]["payload"]["reason"]
    with pytest.raises(NotFound, match="no search"):
        eng.review_probe("not-an-entry", by=REV1)
    with pytest.raises(PermissionDenied):
        eng.review_probe(entry, by=Principal("aud", "auditor"))
    assert len(eng.ledger.entries(action="review")) == before and stored_crop(eng, entry) is not None


# -- the JSON API --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(eng):
    tokens = {role: eng.add_user(f"api-{role}", role=role)[1] for role in ("admin", "analyst", "reviewer", "auditor")}
    client = TestClient(create_app(engine=eng))
    return client, lambda role: {"Authorization": f"Bearer {tokens[role]}"}


def search_via_api(client, auth, gallery: str, case: str) -> str:
    response = client.post("/api/v1/search", headers=auth("analyst"), files={
        "image": (PROBE.name, PROBE.read_bytes(), "image/jpeg")}, data={
        "gallery": gallery, "purpose": "fraud", "case": case, "investigative": "true", "top_k": "2"})
    assert response.status_code == 200, response.text
    return response.json()["ledger_entry"]


def test_api_gallery_bodies_carry_the_review_policy(api):
    client, auth = api
    made = client.post("/api/v1/galleries", headers=auth("admin"), json={"name": "api-g", "blind_review": True})
    assert made.status_code == 201 and made.json()["blind_review"] is True
    assert made.json()["keep_probe_for_review"] is True
    patched = client.patch("/api/v1/galleries/api-g", headers=auth("admin"), json={"keep_probe_for_review": False})
    assert patched.json()["keep_probe_for_review"] is False and patched.json()["blind_review"] is True
    bad = client.patch("/api/v1/galleries/api-g", headers=auth("admin"), json={"blind_review": "sometimes"})
    assert bad.status_code == 422


def test_api_probe_queue_and_blind_review(api):
    client, auth = api
    entry = search_via_api(client, auth, "open", "API-1")
    probe = client.get(f"/api/v1/searches/{entry}/probe", headers=auth("reviewer"))
    assert probe.status_code == 200 and probe.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/v1/searches/{entry}/probe", headers=auth("auditor")).status_code == 403
    queue = client.get("/api/v1/reviews/queue", headers=auth("reviewer"), params={"case": "API-1"}).json()
    assert [s["ledger_entry"] for s in queue["searches"]] == [entry]
    assert client.get("/api/v1/reviews/queue", headers=auth("reviewer"), params={"limit": 0}).status_code == 422
    for rank in (1, 2):
        made = client.post("/api/v1/reviews", headers=auth("reviewer"),
                           json={"search": entry, "candidate": rank, "decision": "reject"})
        assert made.status_code == 201, made.text
    gone = client.get(f"/api/v1/searches/{entry}/probe", headers=auth("reviewer"))
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert "after the search was reviewed" in gone.json()["detail"]
    missing = client.post("/api/v1/reviews", headers=auth("reviewer"),
                          json={"search": entry, "candidate": 7, "decision": "reject"})
    assert missing.status_code == 404 and "no candidate 7" in missing.json()["detail"]

    blind = search_via_api(client, auth, "blind", "API-2")
    record = client.get(f"/api/v1/searches/{blind}", headers=auth("reviewer")).json()
    assert record["scores_hidden"] is True and "score" not in json.dumps(record["candidates"])
    key = record["candidates"][0]["key"]
    by_rank = client.post("/api/v1/reviews", headers=auth("reviewer"), json={"search": blind, "candidate": 1,
                                                                            "decision": "confirm"})
    assert by_rank.status_code == 422 and "by its key" in by_rank.json()["detail"]
    answer = client.post("/api/v1/reviews", headers=auth("reviewer"), json={"search": blind, "key": key,
                                                                           "decision": "inconclusive"}).json()
    assert "score" not in json.dumps(answer)
    assert "score" in json.dumps(client.get(f"/api/v1/searches/{blind}", headers=auth("analyst")).json())


# -- across processes ----------------------------------------------------------------------------------

def test_a_cli_review_deletes_the_probe_a_running_serve_shows(tmp_path):
    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", allow_investigative=True)
    engine.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    _, reviewer = engine.add_user("cli-rev", role="reviewer")
    entry = engine.search(PROBE, gallery="g", purpose="fraud", case="X-1", top_k=1, investigative=True,
                          by=ANALYST).ledger_entry
    engine.close()
    auth = {"Authorization": f"Bearer {reviewer}"}
    with running_serve(home, tmp_path / "serve.log") as (base, _process):
        assert httpx.get(f"{base}/api/v1/searches/{entry}/probe", headers=auth).status_code == 200
        done = subprocess.run(
            [sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home), "review", entry,
             "--candidate", "1", "--decision", "confirm", "--json"],
            env={**os.environ, "FACELEDGER_TOKEN": reviewer}, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        gone = httpx.get(f"{base}/api/v1/searches/{entry}/probe", headers=auth)
        assert gone.status_code == 410 and "after the search was reviewed" in gone.json()["detail"]
        queue = httpx.get(f"{base}/api/v1/reviews/queue", headers=auth).json()
        assert queue["total"] == 0


# -- PostgreSQL ----------------------------------------------------------------------------------------

def test_the_review_cycle_on_postgresql(tmp_path, postgres):
    """The queue's batched read, the blind view, the deletion of the crop and its ledger look-up, on the
    other database (the rest of this module runs on SQLite)."""
    engine = open_test_engine(tmp_path / "home", db=postgres.create_database())
    try:
        engine.create_gallery("b", allow_investigative=True, blind_review=True, probe_retain_days=1)
        engine.enroll(gallery_files()[:6], gallery="b", subject_from_folder=True, source="LFW",
                      legal_basis="research")
        entries = [lead_search(engine, "b", case=f"PG-{i}") for i in range(2)]
        queue = engine.review_queue(gallery="b", case="pg-", by=REV1)
        assert [s["ledger_entry"] for s in queue["searches"]] == entries and queue["searches"][0]["probe_image"] == "kept"
        keys = [c["key"] for c in engine.search_record(entries[0], by=REV1)["candidates"]]
        assert engine.search_record(entries[0], by=REV1)["scores_hidden"] is True
        for key in keys:
            engine.review(entries[0], key=key, decision="reject", by=REV1)
        with pytest.raises(Gone, match="after the search was reviewed"):
            engine.review_probe(entries[0], by=REV1)
        assert [s["ledger_entry"] for s in engine.review_queue(case="PG", by=REV1)["searches"]] == entries[1:]
        engine.purge(now=utcnow() + timedelta(days=2))
        with pytest.raises(Gone, match="when its retention ended"):
            engine.review_probe(entries[1], by=REV1)
        assert engine.audit_verify().ok
    finally:
        engine.close()
