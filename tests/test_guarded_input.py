"""What a careless or hostile user must not get through the engine: invisible or oversized text,
expired records, retention dates outside the gallery's policy, identification by erasure preview, and a
subject erased while their probes stay (the hardening issue's items 4, 7, 8 and 9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from faceledger.errors import InvalidText, MissingField, PolicyViolation
from faceledger.services.context import utcnow
from faceledger.store import ImageRecord, Probe
from faceledger.texts import clean_text, ledger_safe

from .conftest import OPEN_FACES, open_test_engine

ARDERN_A, ARDERN_B = OPEN_FACES / "ardern_2018.jpg", OPEN_FACES / "ardern_2022.jpg"


@pytest.fixture
def eng(tmp_path):
    engine = open_test_engine(tmp_path / "home")
    engine.create_gallery("g", retain_days=365)
    engine.enroll([ARDERN_A], gallery="g", subject="Jacinda Ardern", source="s", legal_basis="b")
    yield engine
    engine.close()


@pytest.mark.parametrize("purpose", ["\u200b", "\x00", "\u200b\u200b ", "\ufeff"])
def test_invisible_purpose_does_not_count_as_a_purpose(eng, purpose):
    with pytest.raises((MissingField, InvalidText)):
        eng.search(ARDERN_B, gallery="g", purpose=purpose, case="c-1")
    denied = eng.ledger.entries(action="denied")[-1]["payload"]
    assert denied["attempted"] == "search"
    assert "\x00" not in str(denied) and "\u200b" not in str(denied)  # refused text is escaped in the ledger


def test_purpose_with_an_invisible_character_inside_is_refused(eng):
    with pytest.raises(InvalidText, match="invisible"):
        eng.search(ARDERN_B, gallery="g", purpose="fraud\u200b", case="c-1")


def test_oversized_text_is_refused_and_not_kept(eng):
    huge = "x" * (1 << 20)
    with pytest.raises(InvalidText, match="limit"):
        eng.search(ARDERN_B, gallery="g", purpose=huge, case="c-1")
    with pytest.raises(InvalidText):
        eng.search(ARDERN_B, gallery="g", purpose="fraud", case="c-1", authorisation=huge)
    biggest = max(len(e["payload"].__repr__()) for e in eng.ledger.entries())
    assert biggest < 10_000  # the 1 MiB text is not in the ledger, only a short summary


def test_text_is_normalised():
    assert clean_text("  ﬁle  ", "x", "--case") == "file"  # NFKC folds the ligature
    assert clean_text("line one\nline two", "x", "--note") == "line one\nline two"
    with pytest.raises(InvalidText):
        clean_text("line one\nline two", "x", "--case")
    assert clean_text(None, "x", "--note", required=False) is None
    assert ledger_safe("a\u200bb") == "a\\u200bb" and ledger_safe("y" * 500).endswith("(500 characters)")


def test_enrolment_refuses_retention_outside_the_gallery_policy(eng):
    with pytest.raises(PolicyViolation, match="already passed"):
        eng.enroll([ARDERN_B], gallery="g", subject="x", source="s", legal_basis="b",
                   retain_until=utcnow().replace(year=2020, month=1, day=1))
    with pytest.raises(PolicyViolation, match="at most 365 days"):
        eng.enroll([ARDERN_B], gallery="g", subject="x", source="s", legal_basis="b",
                   retain_until=utcnow().replace(year=9999, month=12, day=31))
    assert eng.gallery_info("g")["images"] == 1
    assert [e["payload"]["attempted"] for e in eng.ledger.entries(action="denied")] == ["enroll", "enroll"]


def test_expired_records_are_never_returned_even_before_the_purge(eng):
    assert eng.search(ARDERN_B, gallery="g", purpose="p", case="c").decision == "match"
    with eng.sessions() as session:  # the retention date passes; no purge has run yet
        for image in session.execute(select(ImageRecord)).scalars():
            image.retain_until = utcnow() - timedelta(minutes=1)
        session.commit()
    result = eng.search(ARDERN_B, gallery="g", purpose="p", case="c")
    assert result.decision == "no_match" and result.candidates == ()


def test_erasure_preview_does_not_identify(eng):
    preview = eng.erase(face=ARDERN_B, reason="request 7", dry_run=True)
    assert preview["subjects"] and "Ardern" not in str(preview)
    assert "Ardern" not in str(eng.ledger.entries(action="erase"))


def test_erasure_by_subject_takes_the_persons_probes(eng):
    for case in ("c1", "c2"):
        assert eng.search(ARDERN_B, gallery="g", purpose="p", case=case).decision == "match"
    eng.search(OPEN_FACES / "macron_2025.jpg", gallery="g", purpose="p", case="c3")  # someone else
    receipt = eng.erase(subject="Jacinda Ardern", gallery="g", reason="request 8")
    assert receipt["probes"] == 2
    with eng.sessions() as session:
        assert session.execute(select(func.count()).select_from(Probe)).scalar_one() == 1


def test_the_data_directory_is_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    open_test_engine(home).close()
    assert home.stat().st_mode & 0o777 == 0o700  # faces and the ledger are not world-readable


def test_an_undecodable_probe_is_ledgered(eng):
    from faceledger.errors import ImageError

    with pytest.raises(ImageError):
        eng.search(b"not an image at all", gallery="g", purpose="p", case="c-9")
    last = eng.ledger.entries(action="search")[-1]["payload"]
    assert last["decision"] == "failed" and last["case"] == "c-9"


def test_a_running_server_purges_by_itself(tmp_path):
    """Retention is enforced while serving, not only when an engine is opened."""
    import time

    from fastapi.testclient import TestClient

    from faceledger.api import create_app

    engine = open_test_engine(tmp_path / "srv", purge_interval_hours=0.0005, maintenance_check_seconds=0.2)
    engine.create_gallery("g")
    engine.enroll([ARDERN_A], gallery="g", subject="Jacinda Ardern", source="s", legal_basis="b",
                  retain_until=utcnow() + timedelta(days=1))
    with engine.sessions() as session:  # a day later
        for image in session.execute(select(ImageRecord)).scalars():
            image.retain_until = utcnow() - timedelta(minutes=1)
        session.commit()
    with TestClient(create_app(engine=engine)):
        deadline = time.monotonic() + 30
        while engine.gallery_info("g")["images"] and time.monotonic() < deadline:
            time.sleep(0.2)
    assert engine.gallery_info("g")["images"] == 0
    assert engine.ledger.entries(action="purge")[-1]["actor"].startswith("system")
    engine.close()
