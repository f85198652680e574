"""REAL PROCESSES: many writers on one PostgreSQL (docs/security.md, "Faults").

Two `faceledger serve` processes on one PostgreSQL database (one data directory for their index files
and ledger head file), clients enrolling, searching, reviewing, erasing and purging through both for a
bounded time, and a `kill -9` of one server half-way (its clients move to the other, retrying an
enrolment that died with it). Then: no 5xx from the surviving server, every enrolment the API
acknowledged is stored once and found by the index, erased subjects and expired images are gone, no
orphan process, and the ledger verifies and is gap-free. The FAISS index is per process (files shared);
with a Milvus server (tests/milvus_server.py), the same run on one shared collection.
`benchmarks/faults_writers.py` is the longer version and measures requests/s.
"""

from __future__ import annotations

import signal

import pytest

from .faults import writers_run

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def _check(result: dict) -> None:
    print({k: v for k, v in result.items() if not k.endswith("_tail")})
    assert result["server_errors_a"] == 0, result["server_a_log_tail"]
    assert result["server_errors_b"] == 0, result["server_b_log_tail"]  # before its kill, B answered as A must
    assert result["acknowledged_enrolments"] > 0 and result["ok_by_kind"].get("search", 0) > 0
    assert result["acknowledged_missing"] == 0, result
    assert result["acknowledged_unsearchable"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["erased_but_present"] == 0 and result["expired_left"] == 0, result
    assert result["unsearchable_faces"] == 0, result
    assert result["orphans"] == 0, result
    assert result["ledger_gap_free"], result
    assert result["audit_ok"], result["audit"]


@pytest.mark.timeout(900)
def test_two_servers_on_one_postgresql_with_a_kill(tmp_path, postgres):
    _check(writers_run(tmp_path, postgres.create_database(), duration_s=40, seed=1, uploads=200))


@pytest.mark.timeout(900)
def test_two_servers_on_one_postgresql_and_one_milvus_with_a_kill(tmp_path, postgres, milvus_server):
    _check(writers_run(tmp_path, postgres.create_database(), duration_s=40, seed=2, uploads=200,
                       index=milvus_server.url))
