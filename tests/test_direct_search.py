"""The CLI's direct search (direct_search.py, stdlib sqlite3) against the engine's (SQLAlchemy), row by row.

Each case copies one prepared data directory twice, searches one copy directly and the other through the
engine with the same arguments, and compares what each wrote: the ledger entry (every payload field), the
probe row (every column, raw as stored: JSON text, datetime text, blobs), the review-queue rows, the head
file, and the result. Only what must differ between two runs is set aside, after it has been checked:
entry ids and hashes (each copy's chain is verified instead), and the times (their format is compared, and
each probe's expiry against its creation). Then every case where the direct path must stand aside is
checked to write nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceledger import caches, direct_search
from faceledger.config import Settings
from faceledger.migrations import head_from_files
from faceledger.pipeline import FacePipeline
from faceledger.store.direct import REVISION

from .conftest import LFW_DIR, OPEN_FACES, gallery_files, held_out_probes, never_enrolled, open_test_engine

OPERATOR = "test-analyst"
STORED_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
EXPIRING = LFW_DIR / "Mother_Teresa" / "Mother_Teresa_0001.jpg"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A data directory with three galleries of different policies, two users with tokens, and a face whose
    retention date has passed but which no purge has removed yet; every cache warm, as after a first search."""
    root = tmp_path_factory.mktemp("direct")
    home = root / "home"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files(), gallery="g", subject_from_folder=True, source="LFW sample", legal_basis="research")
    eng.enroll([EXPIRING], gallery="g", subject="expiring", source="LFW sample", legal_basis="research",
               retain_until=datetime.now(UTC) + timedelta(days=30))
    eng.create_gallery("h", purposes=["door access"], allow_investigative=True, keep_probe_images=True)
    eng.enroll([OPEN_FACES / "macron_2014.jpg", OPEN_FACES / "ardern_2018.jpg", *gallery_files()[:6]], gallery="h",
               subject_from_folder=True, source="open faces", legal_basis="consent")
    eng.create_gallery("r", keep_probe_for_review=False)
    eng.enroll(gallery_files()[3:9], gallery="r", subject_from_folder=True, source="LFW sample",
               legal_basis="research")
    tokens = {"analyst": eng.add_user("analyst-t", role="analyst")[1],
              "reviewer": eng.add_user("reviewer-t", role="reviewer")[1]}
    for name, purpose in (("g", "warm"), ("h", "door access"), ("r", "warm")):
        eng.search(held_out_probes()[0], gallery=name, purpose=purpose, case="WARM-1")
    eng.close()
    with sqlite3.connect(home / "faceledger.db") as con:  # the retention date passes; no purge has run since
        assert con.execute("UPDATE images SET retain_until = ? WHERE name = ?",
                    ((datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f"), str(EXPIRING))).rowcount == 1
    two_faces = root / "two-faces.jpg"
    left, right = (np.asarray(Image.open(p).convert("RGB")) for p in (held_out_probes()[1], held_out_probes()[2]))
    Image.fromarray(np.hstack([left, right])).save(two_faces, quality=95)
    return home, tokens, two_faces


def _settings(home: Path) -> Settings:
    return Settings(home=home, operator=OPERATOR)


def _direct(home: Path, image, *, token: str | None = None, **asked):
    settings = _settings(home)
    caches.use_dir(home / "cache")
    return direct_search.search(settings, FacePipeline.from_settings(settings), image, token=token, **asked)


def _engine(home: Path, image, *, token: str | None = None, **asked):
    eng = open_test_engine(home)
    try:
        return eng.search(image, **asked, by=eng.authenticate(token) if token else None)
    finally:
        eng.close()


def _copy(prepared_home: Path, to: Path) -> Path:
    shutil.copytree(prepared_home, to)
    return to


def _written(home: Path, after_seq: int) -> dict:
    """What a search wrote: its ledger entries, probe rows and review-queue rows, raw as stored."""
    with sqlite3.connect(home / "faceledger.db") as con:
        con.row_factory = sqlite3.Row
        entries = [dict(r) for r in con.execute("SELECT * FROM ledger WHERE seq > ? ORDER BY seq", (after_seq,))]
        ids = [e["entry_id"] for e in entries]
        marks = ",".join("?" * len(ids))
        probes = [dict(r) for r in con.execute(f"SELECT * FROM probes WHERE entry_id IN ({marks}) ORDER BY id", ids)]
        queue = [dict(r) for r in con.execute(f"SELECT * FROM open_reviews WHERE entry_id IN ({marks})", ids)]
        covered = [dict(r) for r in con.execute(
            f"SELECT * FROM open_review_galleries WHERE entry_id IN ({marks}) ORDER BY gallery", ids)]
    return {"entries": entries, "probes": probes, "queue": queue, "covered": covered,
            "head": (home / "ledger.head").read_text().split()}


def _normalised(written: dict) -> dict:
    """Set aside what two runs cannot share (ids, hashes, times), after checking each is well formed."""
    entries, probes = written["entries"], written["probes"]
    assert len(entries) == 1 and entries[0]["action"] == "search"
    entry = dict(entries[0])
    assert written["head"] == [str(entry["seq"]), entry["hash"]]  # the head file names the new entry
    payload = json.loads(entry["payload"])
    assert entry["payload"] == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expires = datetime.fromisoformat(payload.pop("probe_expires"))
    assert len(probes) == 1
    probe = dict(probes[0])
    assert STORED_TIME.match(probe["created_at"]) and STORED_TIME.match(probe["expires_at"])
    stored_expiry = datetime.strptime(probe.pop("expires_at"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert stored_expiry == expires  # the ledger and the probe row name one expiry, in UTC
    created = datetime.strptime(probe.pop("created_at"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert abs(created - datetime.fromisoformat(entry["created_at"])) < timedelta(seconds=30)
    probe["retained_for"] = expires - created
    assert probe.pop("entry_id") == entry["entry_id"]
    for name in ("id",):
        probe.pop(name)
    queue = []
    for row in written["queue"]:
        row = dict(row)
        assert row.pop("entry_id") == entry["entry_id"] and row.pop("created_at") == entry["created_at"]
        queue.append(row)
    covered = []
    for row in written["covered"]:
        row = dict(row)
        assert row.pop("entry_id") == entry["entry_id"]
        covered.append(row)
    for name in ("entry_id", "created_at", "hash", "prev_hash", "payload"):
        entry.pop(name)
    return {"entry": entry, "payload": payload, "probe": probe, "queue": queue, "covered": covered}


def _last_seq(home: Path) -> int:
    with sqlite3.connect(home / "faceledger.db") as con:
        return con.execute("SELECT max(seq) FROM ledger").fetchone()[0]


def _chain_intact(home: Path) -> None:
    eng = open_test_engine(home)
    try:
        check = eng.audit_verify()
    finally:
        eng.close()
    assert check["ok"] if isinstance(check, dict) else check.ok, check


CASES = {
    "a match": (held_out_probes()[0], {"gallery": "g", "purpose": "door access", "case": "C-1"}, None),
    "no match": (never_enrolled()[1], {"gallery": "g", "purpose": "door access", "case": "C-2"}, None),
    "a face whose retention passed": (EXPIRING, {"gallery": "g", "purpose": "p", "case": "C-3"}, None),
    "two galleries, one refusing": (held_out_probes()[1], {"gallery": ["g", "h", "g"], "purpose": "audit",
                                                           "case": "C-4", "authorisation": "W-9"}, None),
    "investigative, probe image kept": (OPEN_FACES / "macron_2025.jpg", {
        "gallery": "h", "purpose": "door access", "case": "C-5", "investigative": True, "top_k": 3}, None),
    "no review crop kept": (held_out_probes()[2], {"gallery": "r", "purpose": "p", "case": "C-6", "top_k": 1}, None),
    "a token's user": (held_out_probes()[2], {"gallery": "g", "purpose": " p\u00a0", "case": "C-7"}, "analyst"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_direct_search_writes_what_the_engine_writes(prepared, tmp_path, case):
    home, tokens, _ = prepared
    image, asked, user = CASES[case]
    token = tokens[user] if user else None
    before = _last_seq(home)
    direct_home, engine_home = _copy(home, tmp_path / "direct"), _copy(home, tmp_path / "engine")
    direct = _direct(direct_home, image, token=token, **asked)
    engine = _engine(engine_home, image, token=token, **asked)
    assert {**direct.as_json(), "ledger_entry": None} == {**engine.as_json(), "ledger_entry": None}
    assert direct.probe_box == engine.probe_box
    direct_rows, engine_rows = _written(direct_home, before), _written(engine_home, before)
    assert direct_rows["entries"][0]["entry_id"] == direct.ledger_entry
    assert _normalised(direct_rows) == _normalised(engine_rows)
    _chain_intact(direct_home)
    if case == "a face whose retention passed":
        assert "expiring" not in {c.subject for c in direct.candidates}
    if case == "two galleries, one refusing":
        assert [r["gallery"] for r in direct.refused] == ["h"] and direct.galleries == ("g",)


@pytest.mark.parametrize("on_multiple", ["largest", "index:2"])
def test_a_photo_of_two_people_is_probed_alike(prepared, tmp_path, on_multiple):
    home, _, two_faces = prepared
    asked = {"gallery": "g", "purpose": "p", "case": "C-8", "on_multiple": on_multiple}
    before = _last_seq(home)
    direct_home, engine_home = _copy(home, tmp_path / "direct"), _copy(home, tmp_path / "engine")
    direct = _direct(direct_home, two_faces, **asked)
    engine = _engine(engine_home, two_faces, **asked)
    assert direct.probe_box == engine.probe_box
    assert _normalised(_written(direct_home, before)) == _normalised(_written(engine_home, before))


def _snapshot(home: Path) -> dict:
    with sqlite3.connect(home / "faceledger.db") as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    return {"rows": counts, "head": (home / "ledger.head").read_text()}


def _edit_store(statement: str, *args):
    def edit(home: Path) -> None:
        with sqlite3.connect(home / "faceledger.db") as con:
            con.execute(statement, args)
    return edit


def _remove(pattern: str):
    def edit(home: Path) -> None:
        for path in home.glob(pattern):
            path.unlink()
    return edit


ASIDE = {
    "an unknown gallery": ({"gallery": "nope"}, None, None, "unknown"),
    "a purpose the gallery refuses": ({"gallery": "h", "purpose": "marketing"}, None, None, "refused"),
    "no purpose": ({"purpose": "  "}, None, None, "MissingField"),
    "investigative where not allowed": ({"investigative": True}, None, None, "refused"),
    "a role that may not search": ({}, "reviewer", None, "PermissionDenied"),
    "an unknown token": ({}, "flt_not-a-token", None, "token"),
    "an operator not yet made": ({}, None, lambda home: None, "local operator"),
    "a photo without a face": ({"image": OPEN_FACES.parent / "README.md"}, None, None, "Error"),
    "the purge is due": ({}, None, _edit_store("DELETE FROM maintenance WHERE key = 'last_purge_at'"), "purge"),
    "an index file missing": ({}, None, _remove("index/gallery-1.json"), "index"),
    "a calibration sample missing": ({}, None, _remove("calibrations/gallery-1-*.json"), "calibration"),
    "another schema revision": ({}, None, _edit_store("UPDATE faceledger_schema_version SET version_num = '0004'"),
                                "revision"),
    "a data directory others may enter": ({}, None, lambda home: home.chmod(0o755), "0700"),
    "--top-k 0": ({"top_k": 0}, None, None, "top-k"),
}


@pytest.mark.parametrize("case", list(ASIDE))
def test_the_direct_search_stands_aside_and_writes_nothing(prepared, tmp_path, case):
    home, tokens, _ = prepared
    changes, user, edit, reason = ASIDE[case]
    asked = {"gallery": "g", "purpose": "door access", "case": "A-1", **changes}
    image = asked.pop("image", held_out_probes()[0])
    token = tokens.get(user, user) if user else None
    copy = _copy(home, tmp_path / "copy")
    if edit is not None:
        edit(copy)
    before = _snapshot(copy)
    settings = _settings(copy) if case != "an operator not yet made" else Settings(home=copy, operator="someone-new")
    caches.use_dir(copy / "cache")
    with pytest.raises(direct_search.StandAside) as stood:
        direct_search.search(settings, FacePipeline.from_settings(settings), image, token=token, **asked)
    assert reason.lower() in str(stood.value).lower()
    assert _snapshot(copy) == before


def test_the_direct_store_is_written_for_this_codes_schema_revision():
    """A new migration must bring store/direct.py up to it (its tables and encodings): until then every
    search goes through the engine, and this test says so."""
    assert head_from_files() == REVISION
