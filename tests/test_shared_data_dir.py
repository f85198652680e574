"""REAL PROCESSES: `faceledger serve` and CLI `faceledger search` processes on one data directory.

The CLI searches run without SQLAlchemy (direct_search.py, stdlib sqlite3; required here), the server's
through the engine: two writers of one ledger that share only the database's write lock and the head
file's lock.

The issue this guards: while clients searched through the API, CLI searches on the same data
directory failed with "UNIQUE constraint failed: ledger.seq" (CLI tracebacks, API 500s). Here a
server runs in a subprocess, four threads search through HTTP, and CLI search processes run at the
same time on the same SQLite file. Every request must succeed and the ledger must stay one
gap-free, intact chain. Slow-ish: each CLI process loads the models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from faceledger.config import Settings
from faceledger.ledger import Ledger
from faceledger.store import LedgerEntry, open_database

from .conftest import gallery_files, held_out_probes, open_test_engine
from .servers import running_serve

CLI_SEARCHES = 8
HTTP_CLIENTS = 4


@pytest.fixture
def served(tmp_path):
    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g")
    engine.enroll(gallery_files()[:12], gallery="g", subject_from_folder=True, source="LFW sample",
                  legal_basis="research")
    token = engine.add_user("analyst-http", role="analyst")[1]
    _ = engine.operator  # the CLI's local operator exists before the CLIs race (see the module docstring)
    # one search first: it keeps the gallery's calibration sample, so every CLI search below can run
    # without SQLAlchemy (direct_search.py), beside the server's
    engine.search(held_out_probes()[0], gallery="g", purpose="shared dir", case="WARM")
    engine.close()
    with running_serve(home, tmp_path / "server.log",
                       # the clients search as fast as they can for as long as the CLIs run: this
                       # test is about writers colliding, not the per-token rate limit
                       env={"FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}, start_within=90) as (base, _process):
        yield home, base, token


def _http_search(base: str, token: str, n: int) -> tuple[int, str]:
    probe = held_out_probes()[n % 3]
    with open(probe, "rb") as handle:
        response = httpx.post(base + "/api/v1/search", headers={"Authorization": f"Bearer {token}"},
                              data={"gallery": "g", "purpose": "shared dir", "case": f"H-{n}"},
                              files={"image": (probe.name, handle.read(), "image/jpeg")}, timeout=120)
    return response.status_code, response.text[-500:]


def _cli_search(home, n: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACELEDGER_OPERATOR": "test-analyst", "FACELEDGER_DIRECT_SEARCH": "require"}
    env.pop("FACELEDGER_TOKEN", None)
    return subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                           "search", str(held_out_probes()[n % 3]), "--gallery", "g", "--purpose", "shared dir",
                           "--case", f"C-{n}", "--json"], check=False, capture_output=True, text=True, env=env,
                          timeout=240)


def test_real_cli_and_server_search_one_data_directory_at_once(served):
    home, base, token = served
    cli_done = threading.Event()

    def http_client(n: int) -> list[tuple[int, str]]:
        results = [_http_search(base, token, n)]
        while not cli_done.is_set():  # keep the server writing for as long as any CLI search runs
            results.append(_http_search(base, token, n + len(results)))
        return results

    with ThreadPoolExecutor(HTTP_CLIENTS) as http_pool, ThreadPoolExecutor(4) as cli_pool:
        http_futures = [http_pool.submit(http_client, n) for n in range(HTTP_CLIENTS)]
        cli_results = list(cli_pool.map(lambda n: _cli_search(home, n), range(CLI_SEARCHES)))
        cli_done.set()
        http = [result for future in http_futures for result in future.result()]
    assert [status for status, _ in http] == [200] * len(http), [t for s, t in http if s != 200]
    failed = [r.stderr[-1500:] for r in cli_results if r.returncode != 0]
    assert not failed, "\n---\n".join(failed)
    _, sessions = open_database(Settings(home=home).database_url)
    with sessions() as session:
        seqs = list(session.execute(select(LedgerEntry.seq).order_by(LedgerEntry.seq)).scalars())
        searches = session.execute(select(LedgerEntry).where(LedgerEntry.action == "search")).scalars().all()
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(searches) == len(http) + CLI_SEARCHES + 1
    check = Ledger(sessions, home / "ledger.head").verify()
    assert check.ok, check.problems
