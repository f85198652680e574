"""The ledger detects an edited, removed, reordered or truncated entry."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update

from faceledger.config import Settings
from faceledger.ledger import Ledger
from faceledger.store import LedgerEntry, open_database


@pytest.fixture
def ledger(tmp_path, database_url):
    settings = Settings(home=tmp_path, db=database_url)
    _, sessions = open_database(settings.database_url)
    ledger = Ledger(sessions, tmp_path / "ledger.head")
    for i in range(5):
        ledger.record(actor="alice", action="search", payload={"i": i, "purpose": "test"})
    return ledger, sessions


def test_intact_chain_verifies(ledger):
    check = ledger[0].verify()
    assert check.ok and check.entries == 5 and not check.problems


def test_edited_payload_is_detected(ledger):
    led, sessions = ledger
    with sessions() as s:
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 3).values(
            payload=json.dumps({"i": 2, "purpose": "something else"})))
        s.commit()
    check = led.verify()
    assert not check.ok and any("entry 3" in p and "edited" in p for p in check.problems)


def test_edited_actor_is_detected(ledger):
    led, sessions = ledger
    with sessions() as s:
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 2).values(actor="mallory"))
        s.commit()
    assert not led.verify().ok


def test_deleted_entry_is_detected(ledger):
    led, sessions = ledger
    with sessions() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.seq == 2))
        s.commit()
    check = led.verify()
    assert not check.ok and any("missing" in p or "link" in p for p in check.problems)


def test_reordered_entries_are_detected(ledger):
    led, sessions = ledger
    with sessions() as s:
        rows = {r.seq: r for r in s.execute(select(LedgerEntry)).scalars()}
        two, four = rows[2], rows[4]
        fields = ("entry_id", "created_at", "actor", "action", "payload", "prev_hash", "hash")
        a = {f: getattr(two, f) for f in fields}
        b = {f: getattr(four, f) for f in fields}
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 2).values(hash="x" * 64, entry_id="tmp"))
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 4).values(**a))
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 2).values(**b))
        s.commit()
    assert not led.verify().ok


def test_truncated_tail_is_detected_by_the_head_file(ledger):
    led, sessions = ledger
    with sessions() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.seq >= 4))
        s.commit()
    check = led.verify()
    assert not check.ok and any("removed from the end" in p for p in check.problems)


def test_entries_are_readable_and_filterable(ledger):
    led, _ = ledger
    led.record(actor="bob", action="verify", payload={"x": 1})
    assert [e["seq"] for e in led.entries(action="verify")] == [6]
    assert led.entries()[0]["payload"] == {"i": 0, "purpose": "test"}
