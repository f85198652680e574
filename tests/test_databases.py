"""PostgreSQL as the store and ledger: bad URLs are clear errors; the engine tests run on both databases."""

from __future__ import annotations

import pytest

from faceledger.errors import FaceledgerError

from .conftest import open_test_engine


def test_wrong_postgres_password_is_a_clear_error(postgres, tmp_path):
    url = postgres.url("postgres", password="not-the-password")
    with pytest.raises(FaceledgerError, match="cannot open database") as caught:
        open_test_engine(tmp_path / "home", db=url)
    assert "not-the-password" not in str(caught.value)  # the password is never echoed
    assert "password authentication failed" in str(caught.value)


def test_postgres_that_does_not_answer_is_a_clear_error(tmp_path):
    url = "postgresql+psycopg://u:p@127.0.0.1:1/db?connect_timeout=3"
    with pytest.raises(FaceledgerError, match="cannot open database"):
        open_test_engine(tmp_path / "home", db=url)


def test_engine_on_postgres_keeps_ids_and_ledger(postgres, tmp_path):
    from .conftest import gallery_files, held_out_probes

    eng = open_test_engine(tmp_path / "home", db=postgres.create_database())
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    result = eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c")
    assert result.decision == "match" and result.gallery_size == 6
    assert eng.audit_verify().ok and eng.stats()["database"].startswith("postgresql+psycopg://faceledger:***@")
    eng.close()
