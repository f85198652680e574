"""Write transactions that are safe across processes (several CLIs and servers on one database).

A thread lock only orders the writers of one process. Between processes the database itself must
order them, from the moment a transaction reads what it is about to build on (the ledger's last
entry) until it commits:

- SQLite (WAL): a write transaction must begin with ``BEGIN IMMEDIATE``, which takes the database's
  write lock up front (waiting up to the busy timeout). A deferred transaction that reads and then
  writes fails at once with SQLITE_BUSY_SNAPSHOT when another process committed in between (the busy
  timeout does not help), and the driver's default mode reads *outside* any transaction, so two
  processes can both read "last seq = 7" and both insert 8.
- PostgreSQL: a transaction-scoped advisory lock (``pg_advisory_xact_lock``) on one fixed key, taken
  before the ledger's last entry is read and released by COMMIT or ROLLBACK. Under READ COMMITTED the
  next statement then sees every entry committed before the lock was granted.

``writer_sessions(engine)`` gives a session factory whose every transaction starts holding that lock
(the lock is always taken first, so write transactions cannot deadlock on it); reads keep using the
ordinary factory and stay concurrent. ``hold_write_lock(session)`` takes the lock inside any session
(the ledger calls it before reading its last entry), so an append is safe even in a session from the
ordinary factory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import FaceledgerError
from .pragmas import sqlite_pragmas as _sqlite_pragmas

LEDGER_LOCK_KEY = int.from_bytes(b"fcledger", "big")
"""The PostgreSQL advisory lock key shared by every faceledger process writing to one database."""

T = TypeVar("T")


class WriteConflict(FaceledgerError):
    """Other processes kept the database busy; the write was not made. Try again."""


def writer_sessions(engine: SqlEngine) -> sessionmaker:
    """A session factory for write transactions, each holding the database-wide write lock.

    SQLite: a second engine on the same file whose transactions begin with BEGIN IMMEDIATE (the
    driver's own transaction handling is switched off on that engine only). PostgreSQL and others:
    the same engine, with the advisory lock taken as the first statement of each transaction.
    Dispose of it with ``factory.kw["bind"].dispose()`` when the SQLite engine is closed.
    """
    if engine.dialect.name == "sqlite":
        writer = create_engine(engine.url, future=True)
        event.listen(writer, "connect", _sqlite_pragmas)
        event.listen(writer, "connect", _driver_autocommit)
        event.listen(writer, "begin", _begin_immediate)
        return sessionmaker(writer, expire_on_commit=False)
    if engine.dialect.name == "postgresql":
        writer = engine.execution_options(faceledger_writer=True)
        event.listen(writer, "begin", _advisory_lock)
        return sessionmaker(writer, expire_on_commit=False)
    return sessionmaker(engine, expire_on_commit=False)


def dispose_writer(factory: sessionmaker) -> None:
    """Close the connections of a `writer_sessions` factory's own engine (SQLite); for PostgreSQL the
    writer shares the main engine's pool, which the main engine's dispose() closes."""
    bind = factory.kw.get("bind")
    if bind is not None and not isinstance(bind, OptionEngine):
        bind.dispose()


def _driver_autocommit(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own; _begin_immediate does


def _begin_immediate(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _advisory_lock(connection) -> None:
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_KEY})")


def hold_write_lock(session: Session) -> None:
    """Make sure this session's transaction holds the database-wide write lock (idempotent)."""
    connection = session.connection()
    name = connection.dialect.name
    if name == "sqlite":
        raw = connection.connection.dbapi_connection
        if not raw.in_transaction:  # the driver reads outside a transaction until the first write
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_KEY})")


_TRANSIENT = ("database is locked", "database table is locked", "busy", "deadlock detected",
              "could not serialize", "unique constraint failed: ledger.", 'constraint "ledger_')


def is_transient(exc: BaseException) -> bool:
    """A write that another process's concurrent write made fail, and that may succeed if retried."""
    if not isinstance(exc, (OperationalError, IntegrityError)) or not isinstance(exc, DBAPIError):
        return False
    message = str(exc.orig).lower()
    return any(marker in message for marker in _TRANSIENT)


def retry_transaction(work: Callable[[], T], *, attempts: int = 5, pause: float = 0.05) -> T:
    """Run `work` (one whole write transaction, opening its own session) again when it failed
    transiently; raise WriteConflict after `attempts` tries. `work` must not have effects outside the
    database before its commit (the ledger head file is advanced only after a commit)."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except (OperationalError, IntegrityError) as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise WriteConflict(f"the database stayed busy after {attempts} attempts: {exc.orig}") from None
            time.sleep(pause * attempt)
    raise AssertionError("unreachable")
