"""Signed anchors detect what the chain and head file alone cannot: an attacker who controls the data
directory cutting the tail and rewriting the head, deleting everything, or re-chaining after an edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from faceledger.anchors import (
    AnchorError,
    anchor_ledger,
    generate_keys,
    load_private_key,
    load_public_key,
    make_anchor,
    read_anchors,
    verify_against_anchors,
)
from faceledger.config import Settings
from faceledger.ledger import GENESIS, Ledger, entry_hash
from faceledger.store import LedgerEntry, open_database

from .test_cli import run


@pytest.fixture
def keys(tmp_path):
    private, public = generate_keys(tmp_path / "keys", data_dir=tmp_path / "home")
    return load_private_key(private, data_dir=tmp_path / "home"), load_public_key(public)


@pytest.fixture
def anchored(tmp_path, database_url, keys):
    """A ledger of 8 entries with an anchor over entry 6 (entries 1-5, the anchor entry 6, then 7-8)."""
    home = tmp_path / "home"
    home.mkdir()
    _, sessions = open_database(Settings(home=home, db=database_url).database_url)
    ledger = Ledger(sessions, home / "ledger.head")
    for i in range(5):
        ledger.record(actor="alice", action="search", payload={"i": i})
    anchor = anchor_ledger(ledger, keys[0], actor="auditor")
    for i in range(2):
        ledger.record(actor="alice", action="search", payload={"i": 10 + i})
    return ledger, sessions, [anchor], keys[1]


def _rechain_from(sessions, first: int) -> None:
    """The attacker's re-chaining: recompute every hash from entry `first` on, so the chain is valid."""
    with sessions() as s:
        rows = list(s.execute(select(LedgerEntry).order_by(LedgerEntry.seq)).scalars())
        prev = GENESIS
        for row in rows:
            if row.seq >= first:
                row.prev_hash = prev
                row.hash = entry_hash(row.seq, row.entry_id, row.created_at, row.actor, row.action, row.payload, prev)
            prev = row.hash
        s.commit()


def test_an_untouched_ledger_is_consistent_with_its_anchors(anchored):
    ledger, _, anchors, public = anchored
    assert verify_against_anchors(ledger, anchors, public) == []
    assert ledger.entries(action="audit.anchor")[0]["seq"] == anchors[0]["seq"] == 6


def test_cut_tail_and_rewritten_head_pass_the_chain_but_not_the_anchors(anchored):
    ledger, sessions, anchors, public = anchored
    with sessions() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.seq >= 4))
        s.commit()
    ledger.head_path.write_text(f"3 {ledger.last()[1]}\n")  # the attacker rewrites the head file too
    assert ledger.verify().ok  # the limitation without anchors
    problems = verify_against_anchors(ledger, anchors, public)
    assert any("entry 6" in p and "missing" in p and "ends at entry 3" in p for p in problems)


def test_deleting_everything_and_the_head_is_detected(anchored):
    ledger, sessions, anchors, public = anchored
    with sessions() as s:
        s.execute(delete(LedgerEntry))
        s.commit()
    ledger.head_path.unlink()
    check = ledger.verify()
    assert check.ok and check.entries == 0  # "intact: 0 entries" without anchors
    problems = verify_against_anchors(ledger, anchors, public)
    assert any("missing" in p and "is empty" in p for p in problems)


def test_an_edit_with_every_later_hash_recomputed_is_detected(anchored):
    ledger, sessions, anchors, public = anchored
    with sessions() as s:
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == 2).values(actor="mallory"))
        s.commit()
    _rechain_from(sessions, 2)
    ledger.head_path.write_text(f"{ledger.last()[0]} {ledger.last()[1]}\n")
    assert ledger.verify().ok  # the limitation without anchors
    problems = verify_against_anchors(ledger, anchors, public)
    assert any("entry 6" in p and "different hash" in p for p in problems)


def test_changes_after_the_newest_anchor_are_not_detected_by_it(anchored):
    """Documented limitation: an anchor vouches for entries up to its own, not for later ones."""
    ledger, sessions, anchors, public = anchored
    with sessions() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.seq == 8))
        s.commit()
    ledger.head_path.write_text(f"7 {ledger.last()[1]}\n")
    assert ledger.verify().ok and verify_against_anchors(ledger, anchors, public) == []


def test_an_anchor_signed_by_another_key_or_altered_is_refused(anchored, tmp_path):
    ledger, sessions, anchors, public = anchored
    other_private, _ = generate_keys(tmp_path / "other", data_dir=None)
    with sessions() as s:
        s.execute(delete(LedgerEntry))
        s.commit()
    forged = make_anchor(0 + 1, "f" * 64, load_private_key(other_private, data_dir=None))
    problems = verify_against_anchors(ledger, [forged], public)
    assert any("another key" in p and "not used" in p for p in problems)
    assert not any("entry 1" in p for p in problems)  # a refused anchor is not evidence either way
    altered = {**anchors[0], "hash": "0" * 64}
    assert any("does not verify" in p for p in verify_against_anchors(ledger, [altered], public))


def test_anchors_must_not_go_backwards(anchored, keys):
    ledger, _, anchors, public = anchored
    earlier = make_anchor(3, ledger.hashes_at([3])[3], keys[0], time="2000-01-01T00:00:00+00:00")
    problems = verify_against_anchors(ledger, [anchors[0], earlier], public)
    assert any("goes backwards" in p for p in problems)
    assert verify_against_anchors(ledger, [earlier, anchors[0]], public) == []


def test_keys_and_anchors_inside_the_data_directory_are_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(AnchorError, match="inside the data directory"):
        generate_keys(home / "keys", data_dir=home)
    private, _ = generate_keys(tmp_path / "keys", data_dir=home)
    (home / "stolen.pem").write_bytes(private.read_bytes())
    with pytest.raises(AnchorError, match="inside the data directory"):
        load_private_key(home / "stolen.pem", data_dir=home)
    with pytest.raises(AnchorError, match="already exists"):
        generate_keys(tmp_path / "keys", data_dir=home)
    assert oct(private.stat().st_mode & 0o777) == "0o600"


# -- through the CLI -------------------------------------------------------------------------------

def test_cli_keygen_anchor_and_verify(tmp_path, capsys, monkeypatch):
    home, keys, anchors_file = tmp_path / "home", tmp_path / "keys", tmp_path / "anchors.jsonl"
    assert run(capsys, monkeypatch, home, "gallery", "create", "g")[0] == 0
    code, _, err = run(capsys, monkeypatch, home, "audit", "keygen", "--out", home / "keys")
    assert code == 2 and "inside the data directory" in err
    assert run(capsys, monkeypatch, home, "audit", "keygen", "--out", keys)[0] == 0
    private, public = keys / "anchor-private.pem", keys / "anchor-public.pem"
    code, out, err = run(capsys, monkeypatch, home, "audit", "anchor", "--key", private, "--out", anchors_file)
    assert code == 0, err
    assert json.loads(out) == read_anchors(anchors_file)[0]
    code, _, err = run(capsys, monkeypatch, home, "audit", "anchor", "--key", private, "--out", home / "a.jsonl")
    assert code == 2 and "inside the data directory" in err
    verify = ("audit", "verify", "--anchors", anchors_file, "--public-key", public)
    code, out, err = run(capsys, monkeypatch, home, *verify)
    assert code == 0 and "ledger intact" in out and "consistent with 1 signed anchor" in err
    _, sessions = open_database(Settings(home=home).database_url)
    with sessions() as s:
        s.execute(delete(LedgerEntry))
        s.commit()
    Path(home / "ledger.head").unlink()
    assert run(capsys, monkeypatch, home, "audit", "verify")[0] == 0  # the limitation without anchors
    code, _, err = run(capsys, monkeypatch, home, *verify)
    assert code == 2 and "missing" in err
