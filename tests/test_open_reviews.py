"""The table of open reviews (schema 0005): the queue it gives is the queue the ledger gives (searches with
candidates not all settled), before and after an upgrade that fills it from the ledger, through erasure
and retention, on SQLite and PostgreSQL, and across processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select

from faceledger import migrations
from faceledger.api import create_app
from faceledger.errors import FaceledgerError, NotFound
from faceledger.policy import Principal
from faceledger.services.context import utcnow
from faceledger.store import OpenReview, Review
from faceledger.store.open_reviews import queue_search
from faceledger.store.schema import schema_status

from .conftest import gallery_files, held_out_probes, never_enrolled, open_test_engine
from .servers import running_serve

ANALYST = Principal("ana", "analyst")
REV1 = Principal("rev1", "reviewer")
REV2 = Principal("rev2", "reviewer")
PROBE = held_out_probes()[0]
HTML = {"Accept": "text/html"}


def lead(eng, gallery, case: str) -> str:
    result = eng.search(PROBE, gallery=gallery, purpose="fraud", case=case, top_k=2, investigative=True, by=ANALYST)
    assert len(result.candidates) == 2
    return result.ledger_entry


def ledger_queue(eng) -> list[dict]:
    """The queue as the ledger says it is (what the queue computed before its table): each search entry with
    candidates, oldest first, unless every candidate has a confirm or reject."""
    with eng.sessions() as s:
        reviews = s.execute(select(Review.search_entry_id, Review.candidate_rank, Review.decision)).all()
    queue = []
    for entry in eng.ledger.entries(action="search"):
        count = len(entry["payload"].get("candidates") or [])
        mine = [r for r in reviews if r[0] == entry["entry_id"]]
        done = len({r[1] for r in mine if r[2] in ("confirm", "reject") and 1 <= r[1] <= count})
        if count and done < count:
            p = entry["payload"]
            queue.append({"ledger_entry": entry["entry_id"], "searched_by": entry["actor"],
                          "searched_at": entry["created_at"], "gallery": p.get("gallery"), "purpose": p.get("purpose"),
                          "case": p.get("case"), "mode": p.get("mode"), "candidates": count, "settled": done,
                          "awaiting": count - done, "status": "in review" if mine else "unreviewed"})
    return queue


def without_probe(queue: dict) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "probe_image"} for item in queue["searches"]]


QUERIES = ({}, {"gallery": "b"}, {"gallery": "a"}, {"case": "STRASSE"}, {"case": "k-"}, {"case": "%"},
           {"older_than_hours": 1}, {"limit": 2, "offset": 1})


def queues(eng) -> list[dict]:
    return [eng.review_queue(by=REV1, **({"limit": 500} | query)) for query in QUERIES]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Searches in every state the queue knows: untouched, in review, settled, several galleries, no
    candidate, a probe expired by retention, a subject erased."""
    home = tmp_path_factory.mktemp("open-reviews") / "home"
    eng = open_test_engine(home)
    for name, policy in {"a": {}, "b": {}, "short": {"probe_retain_days": 1}}.items():
        eng.create_gallery(name, allow_investigative=True, **policy)
        eng.enroll(gallery_files()[:6], gallery=name, subject_from_folder=True, source="LFW", legal_basis="research")
    e = {"untouched": lead(eng, "a", "K-1"), "partly": lead(eng, "a", "Straße-7"), "settled": lead(eng, "b", "K-3"),
         "both": lead(eng, ["a", "b"], "K-4"), "expired": lead(eng, "short", "K-5")}
    stranger = eng.search(never_enrolled()[0], gallery="a", purpose="fraud", case="K-6", by=ANALYST)
    assert stranger.candidates == ()
    eng.review(e["partly"], candidate=1, decision="confirm", by=REV1)
    eng.review(e["settled"], candidate=1, decision="confirm", by=REV1)
    eng.review(e["settled"], candidate=2, decision="reject", by=REV2)
    eng.review(e["both"], candidate=1, decision="inconclusive", by=REV1)
    yield eng, home, e
    eng.close()


def test_the_table_gives_the_queue_the_ledger_gives_through_review_retention_and_erasure(store):
    eng, _, e = store
    queue = eng.review_queue(limit=500, by=REV1)
    assert without_probe(queue) == ledger_queue(eng)
    assert [s["ledger_entry"] for s in queue["searches"]] == [e[k] for k in ("untouched", "partly", "both", "expired")]
    assert [(s["status"], s["settled"]) for s in queue["searches"][1:3]] == [("in review", 1), ("in review", 0)]
    assert [s["case"] for s in eng.review_queue(gallery="b", by=REV1)["searches"]] == ["K-4"]  # covered a and b
    covered = {x["entry_id"]: x["payload"].get("galleries") or [x["payload"]["gallery"]]
               for x in eng.ledger.entries(action="search")}
    for name in ("a", "b", "short"):
        expected = [item for item in ledger_queue(eng) if name in covered[item["ledger_entry"]]]
        one = eng.review_queue(gallery=name, limit=500, by=REV1)
        assert without_probe(one) == expected and one["total"] == len(expected) > 0
    assert eng.review_queue(gallery="a", case="k-", by=REV1)["total"] == 2  # K-1 and K-4; not Straße-7
    assert [s["case"] for s in eng.review_queue(case="STRASSE", by=REV1)["searches"]] == ["Straße-7"]  # casefold
    assert eng.review_queue(case="%", by=REV1)["total"] == 0  # a wildcard is a character, not a pattern
    before = without_probe(queue)
    assert eng.purge(now=utcnow() + timedelta(days=2))["probes"] == 1  # the "short" gallery's probe
    erased = eng.erase(subject=PROBE.parent.name, gallery="a", reason="request", by=Principal("adm", "admin"))
    assert erased["subjects"]
    after = eng.review_queue(limit=500, by=REV1)
    assert without_probe(after) == before == ledger_queue(eng)  # still awaiting review, as the ledger says
    assert after["searches"][-1]["probe_image"] == "deleted (retention or erasure)"
    with eng.sessions() as s:
        assert s.execute(select(func.count()).select_from(OpenReview)).scalar_one() == 4


def test_a_store_upgraded_to_the_table_shows_the_queue_it_showed(store):
    eng, home, _ = store
    shown = queues(eng)
    with eng.db.begin() as conn:  # back to the revision before the table: what a store of the release holds
        command.downgrade(migrations.config(conn), "0004")
    with eng.db.connect() as conn:
        assert schema_status(eng.db).current == "0004" and "open_reviews" not in inspect(conn).get_table_names()
    again = open_test_engine(home)  # opening it upgrades it, filling the table from the ledger
    try:
        assert schema_status(again.db).current == migrations.head()
        assert again.audit_entries(action="schema.upgrade")[-1]["payload"]["applied"] == ["0005"]
        assert queues(again) == shown
        assert without_probe(again.review_queue(limit=500, by=REV1)) == ledger_queue(again)
    finally:
        again.close()


def test_the_table_is_filled_and_read_alike_on_postgresql(tmp_path, postgres):
    eng = open_test_engine(tmp_path / "home", db=postgres.create_database())
    try:
        for name in ("a", "b"):
            eng.create_gallery(name, allow_investigative=True)
            eng.enroll(gallery_files()[:6], gallery=name, subject_from_folder=True, source="LFW", legal_basis="research")
        entries = [lead(eng, "a", "PG-Straße"), lead(eng, ["a", "b"], "PG_2"), lead(eng, "b", "PG-3")]
        eng.review(entries[2], candidate=1, decision="reject", by=REV1)
        eng.review(entries[2], candidate=2, decision="reject", by=REV1)
        shown = queues(eng)
        assert [s["ledger_entry"] for s in shown[0]["searches"]] == entries[:2]
        assert [s["case"] for s in eng.review_queue(case="pg-strasse", by=REV1)["searches"]] == ["PG-Straße"]
        assert [s["case"] for s in eng.review_queue(case="g_", by=REV1)["searches"]] == ["PG_2"]
        assert [s["case"] for s in eng.review_queue(gallery="b", by=REV1)["searches"]] == ["PG_2"]
        with eng.db.begin() as conn:
            command.downgrade(migrations.config(conn), "0004")
        url = str(eng.db.url.render_as_string(hide_password=False))
    finally:
        eng.close()
    again = open_test_engine(tmp_path / "home", db=url)
    try:
        assert queues(again) == shown and without_probe(again.review_queue(limit=500, by=REV1)) == ledger_queue(again)
    finally:
        again.close()


def test_a_search_in_one_process_is_queued_in_a_serve_process_and_a_review_in_another_removes_it(tmp_path):
    home = tmp_path / "home"
    eng = open_test_engine(home)
    eng.create_gallery("g", allow_investigative=True)
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    _, analyst = eng.add_user("cli-ana", role="analyst")
    _, reviewer = eng.add_user("cli-rev", role="reviewer")
    eng.close()

    def cli(token: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                               *args, "--json"], env={**os.environ, "FACELEDGER_TOKEN": token},
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    auth = {"Authorization": f"Bearer {reviewer}"}
    with running_serve(home, tmp_path / "serve.log") as (base, _process):
        assert httpx.get(f"{base}/api/v1/reviews/queue", headers=auth).json()["total"] == 0
        cli(analyst, "search", str(PROBE), "--gallery", "g", "--purpose", "fraud", "--case", "XP-1", "--top-k", "1",
            "--investigative")
        queue = httpx.get(f"{base}/api/v1/reviews/queue", headers=auth).json()
        assert queue["total"] == 1 and queue["searches"][0]["case"] == "XP-1"
        entry = queue["searches"][0]["ledger_entry"]
        cli(reviewer, "review", entry, "--candidate", "1", "--decision", "reject")
        assert httpx.get(f"{base}/api/v1/reviews/queue", headers=auth).json()["total"] == 0


def test_searches_are_listed_a_page_at_a_time_newest_first_in_the_engine_the_api_and_the_web(store):
    """/searches and its API read one page of the ledger's search entries (with candidates) by SQL."""
    eng, _, e = store
    payload = next(x["payload"] for x in eng.ledger.entries(action="search") if x["entry_id"] == e["untouched"])
    with eng.writing() as session:  # 101 more searches like a real one, as the search service writes them
        for i in range(101):
            entry = eng.ledger.append(session, actor="ana", action="search", payload={**payload, "case": f"PAGE-{i}"})
            queue_search(session, entry)
        session.commit()
    eng.ledger.note_committed(entry)
    newest_first = [x["entry_id"] for x in eng.ledger.entries(action="search")[::-1] if x["payload"].get("candidates")]
    pages, before = [], None
    while page := eng.recent_searches(limit=40, before=before, by=ANALYST):
        pages += page
        before = page[-1]["ledger_entry"]
    assert [s["ledger_entry"] for s in pages] == newest_first and len(newest_first) == 101 + 5
    assert next(s for s in pages if s["ledger_entry"] == e["partly"])["unreviewed"] == 1
    with pytest.raises(NotFound):
        eng.recent_searches(before="no-such-entry", by=ANALYST)
    for bad in (0, 501):
        with pytest.raises(FaceledgerError):
            eng.recent_searches(limit=bad, by=ANALYST)

    _, token = eng.add_user("pager", role="analyst")
    client = TestClient(create_app(engine=eng))
    api = client.get("/api/v1/searches", params={"limit": 3, "before": newest_first[0]},
                     headers={"Authorization": f"Bearer {token}"})
    assert [s["ledger_entry"] for s in api.json()] == newest_first[1:4]
    assert client.get("/api/v1/searches", params={"before": "x" * 36},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 404

    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login", headers=HTML).text).group(1)
    client.post("/login", data={"token": token, "csrf": csrf}, headers=HTML, follow_redirects=False)
    first = client.get("/searches", headers=HTML).text
    assert listed(first) == newest_first[:100] and 'id="newest-page"' not in first
    older = re.search(r'href="(/searches\?before=[^"]+)" id="older-page"', first).group(1)
    rest = client.get(older, headers=HTML).text
    assert listed(rest) == newest_first[100:] and 'id="older-page"' not in rest and 'id="newest-page"' in rest


def listed(page: str) -> list[str]:
    return re.findall(r'<a href="/searches/([0-9a-f-]{36})">', page)
