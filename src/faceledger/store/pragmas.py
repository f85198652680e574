"""The pragmas of every faceledger SQLite connection: WAL, a busy timeout, foreign keys.

Stdlib only: the SQLAlchemy engines (store/database.py, store/writing.py) and the direct reader and
writer of a search (store/direct.py) set up their connections alike."""

from __future__ import annotations

import sqlite3
import time


def sqlite_pragmas(dbapi_connection, _record) -> None:
    """Every SQLite connection (readers and the writer): WAL, a busy timeout, foreign keys."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: switching a new file to WAL may have to wait
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor, wait_s: float = 30.0) -> None:
    """`PRAGMA journal_mode=WAL`, waiting while another process holds the new file.

    Switching the journal mode needs the file to itself, and SQLite answers "database is locked" at
    once, without its busy handler, while another connection is creating or migrating a new store (two
    processes opening one new data directory: tests/test_schema.py). Once the file is in WAL mode the
    switch is a no-op that never waits.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
