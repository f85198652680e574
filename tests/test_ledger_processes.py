"""Several processes append to one ledger at once (several CLIs and servers on one database).

Each worker process opens the database on its own and appends entries both on their own
(`Ledger.record`) and inside a transaction that also reads and writes other rows, the way a search
does (read the gallery, append, add a probe row). On SQLite and on PostgreSQL: no exception, the
sequence numbers are exactly 1..total, and the chain verifies.
"""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

import pytest
from sqlalchemy import func, select

from faceledger.accounts import add_user
from faceledger.config import Settings
from faceledger.ledger import Ledger
from faceledger.store import LedgerEntry, User, open_database, writer_sessions

WORKERS = 4
EACH = 24  # entries per worker: half through record(), half inside a transaction with other writes


def _worker(url: str, head: str, number: int, factory: str, start, errors) -> None:
    try:
        engine, sessions = open_database(url)
        writer = writer_sessions(engine) if factory == "writer" else sessions
        ledger = Ledger(sessions, Path(head), writer=writer if factory == "writer" else None)
        start.wait(60)
        for i in range(EACH // 2):
            ledger.record(actor=f"w{number}", action="test.record", payload={"worker": number, "i": i})
            with ledger.lock, writer() as session:
                users = session.execute(select(func.count(User.id))).scalar_one()  # a read first, like search
                entry = ledger.append(session, actor=f"w{number}", action="test.txn",
                                      payload={"worker": number, "i": i, "users_seen": users})
                add_user(session, name=f"w{number}-{i}", role="analyst", created_by=f"w{number}", with_token=False)
                session.commit()
            ledger.note_committed(entry)
        engine.dispose()
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        errors.put(f"worker {number}: {traceback.format_exc()}")


def _run_workers(url: str, head: Path, factory: str) -> list[str]:
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    processes = [context.Process(target=_worker, args=(url, str(head), n, factory, start, errors))
                 for n in range(WORKERS)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(240)
    found = []
    while not errors.empty():
        found.append(errors.get())
    found += [f"worker exited with {p.exitcode}" for p in processes if p.exitcode != 0]
    return found


@pytest.mark.parametrize("factory", ["plain", "writer"])
def test_processes_appending_at_once_keep_one_gap_free_chain(tmp_path, database_url, factory):
    url = Settings(home=tmp_path, db=database_url).database_url
    _, sessions = open_database(url)  # create the tables once, before the workers race
    head = tmp_path / "ledger.head"
    problems = _run_workers(url, head, factory)
    assert not problems, "\n".join(problems)
    with sessions() as session:
        seqs = list(session.execute(select(LedgerEntry.seq).order_by(LedgerEntry.seq)).scalars())
        users = session.execute(select(func.count(User.id))).scalar_one()
    total = WORKERS * EACH
    assert seqs == list(range(1, total + 1))
    assert users == WORKERS * EACH // 2
    check = Ledger(sessions, head).verify()
    assert check.ok, check.problems
    assert Ledger(sessions, head).read_head()[0] == total  # the head file never went backwards
