"""The store's schema revision: where a database stands, and bringing it to the code's revision.

Every store records its Alembic revision (table `faceledger_schema_version`). On open:

- an empty database is made by the migrations (never by `create_all`);
- a store of a release made before migrations existed (faceledger tables, no version table) is
  checked, table by table and column by column, against revision 0001, stamped 0001, then upgraded;
- a store behind the code is upgraded when `auto_upgrade` is on, else refused with the command to run;
- a store ahead of the code (a revision this code does not know) is always refused: a newer
  faceledger wrote it, and nothing is ever downgraded automatically.

Two processes opening the same new store at once must not both create it: the decision and the
migration run under one lock, a transaction-scoped advisory lock on PostgreSQL and `BEGIN IMMEDIATE`
(the database's write lock) on SQLite, and the state is read again once the lock is held.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError

from .. import migrations
from ..migrations import head_from_files
from ..errors import SchemaBehind, SchemaMismatch, SchemaTooNew

State = Literal["empty", "unversioned", "behind", "current", "ahead"]
LOCK_KEY = zlib.crc32(b"faceledger.schema")
"""The PostgreSQL advisory lock held while the schema is decided and migrated."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    """The store's revision; None when it records none (empty, or made before migrations)."""
    head: str
    """The newest revision this code knows."""
    state: State


@dataclass(frozen=True)
class SchemaChange:
    """What opening the store changed in its schema; the engine ledgers it."""

    previous_state: State
    from_revision: str | None
    to_revision: str
    applied: list[str] = field(default_factory=list)
    stamped: str | None = None
    """The revision recorded, without running it, for a store made before migrations existed."""

    @property
    def created(self) -> bool:
        """True when the store was new: nothing of anyone's data changed."""
        return self.previous_state == "empty"

    def as_payload(self) -> dict:
        return {"previous_state": self.previous_state, "from_revision": self.from_revision,
                "to_revision": self.to_revision, "applied": list(self.applied), "stamped": self.stamped}


def schema_status(sql_engine: SqlEngine) -> SchemaStatus:
    """Where the store stands against this code's revisions (reads only)."""
    with sql_engine.connect() as conn:
        return _status(conn)


def upgrade(sql_engine: SqlEngine) -> list[str]:
    """Bring the store to the newest revision (`faceledger db upgrade`); returns the revisions applied."""
    change = prepare(sql_engine, auto_upgrade=True)
    return list(change.applied) if change else []


def prepare(sql_engine: SqlEngine, *, auto_upgrade: bool) -> SchemaChange | None:
    """Make the store usable by this code, or raise why it is not; None when nothing had to change."""
    if at_head(sql_engine):
        return None
    status = schema_status(sql_engine)
    if status.state == "current":
        return None
    _refuse(status, auto_upgrade)  # without waiting for the lock when the answer is already no
    with _locked(sql_engine) as conn:
        status = _status(conn)  # again: another process may have done it while we waited
        if status.state == "current":
            return None
        _refuse(status, auto_upgrade)
        return _migrate(conn, status, auto_upgrade)


def at_head(sql_engine: SqlEngine) -> bool:
    """True when the store records exactly this code's newest revision (one query, no Alembic); False
    means "not known to be": the full check decides."""
    head = head_from_files()
    if head is None:
        return False
    try:
        with sql_engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).all()
    except DBAPIError:
        return False  # no version table (new or pre-migration store): the full path says which
    return [tuple(row) for row in rows] == [(head,)]


def _refuse(status: SchemaStatus, auto_upgrade: bool) -> None:
    if status.state == "ahead":
        raise SchemaTooNew(
            f"the store is at schema revision {status.current!r}, which this faceledger does not know (the newest "
            f"it knows is {status.head!r}): a newer faceledger wrote it; install that version or newer to use it")
    if status.state == "behind" and not auto_upgrade:
        raise _behind(status.current, status.head)


def _behind(current: str | None, head: str) -> SchemaBehind:
    return SchemaBehind(
        f"the store is at schema revision {current!r} and this faceledger needs {head!r}; back it up, then run "
        "`faceledger db upgrade` (automatic upgrades are off: FACELEDGER_AUTO_UPGRADE)")


def _migrate(conn: Connection, status: SchemaStatus, auto_upgrade: bool) -> SchemaChange:
    from alembic import command

    cfg = migrations.config(conn)
    stamped = None
    if status.state == "unversioned":
        _check_first_release(conn)
        command.stamp(cfg, migrations.FIRST)
        stamped = migrations.FIRST
    start = stamped or status.current
    pending = _pending(start)
    if pending and start is not None and not auto_upgrade:
        _commit(conn)  # keep the stamp: it only records what the store already is
        raise _behind(start, status.head)
    if pending:
        command.upgrade(cfg, "head")
    _commit(conn)
    return SchemaChange(previous_state=status.state, from_revision=status.current, to_revision=status.head,
                        applied=pending, stamped=stamped)


def _status(conn: Connection) -> SchemaStatus:
    head = migrations.head()
    tables = set(inspect(conn).get_table_names())
    if migrations.VERSION_TABLE in tables:
        from alembic.migration import MigrationContext

        current = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE}) \
            .get_current_revision()
    else:
        current = None
    if current is None:
        state: State = "unversioned" if tables & set(_first_release_columns()) else "empty"
    elif current == head:
        state = "current"
    elif _known(current):
        state = "behind"
    else:
        state = "ahead"
    return SchemaStatus(current=current, head=head, state=state)


def _known(revision: str) -> bool:
    """Exactly one of this code's revisions (Alembic's own lookup also accepts prefixes and "heads")."""
    return revision in {script.revision for script in migrations.script().walk_revisions()}


def _pending(start: str | None) -> list[str]:
    """Revisions between `start` (exclusive; None: nothing) and head, oldest first."""
    lower = start if start is not None else "base"
    revs = migrations.script().iterate_revisions("head", lower)
    return [rev.revision for rev in reversed(list(revs))]


@lru_cache(maxsize=1)
def _first_release_columns() -> dict[str, frozenset[str]]:
    """Table -> column names of revision 0001, read from a scratch SQLite database migrated to it."""
    from alembic import command

    scratch = create_engine("sqlite://")
    try:
        with scratch.connect() as conn:
            command.upgrade(migrations.config(conn), migrations.FIRST)
            conn.commit()
            found = inspect(conn)
            return {name: frozenset(col["name"] for col in found.get_columns(name))
                    for name in found.get_table_names() if name != migrations.VERSION_TABLE}
    finally:
        scratch.dispose()


def _check_first_release(conn: Connection) -> None:
    """A store without a version table must be exactly revision 0001's tables and columns."""
    found = inspect(conn)
    tables = set(found.get_table_names())
    problems = []
    for name, expected in sorted(_first_release_columns().items()):
        if name not in tables:
            problems.append(f"table {name!r} is missing")
            continue
        have = {col["name"] for col in found.get_columns(name)}
        if have != expected:
            missing, extra = sorted(expected - have), sorted(have - expected)
            problems.append(f"table {name!r}: " + "; ".join(
                part for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "")
                if part))
    if problems:
        raise SchemaMismatch(
            "the database holds faceledger tables but no schema revision, and they are not the schema of the "
            f"release they would come from (revision {migrations.FIRST}): " + ", ".join(problems[:5]))


def _commit(conn: Connection) -> None:
    """Commit the lock's transaction (on SQLite the explicit BEGIN IMMEDIATE, which SQLAlchemy does not see)."""
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        if raw.in_transaction:
            raw.execute("COMMIT")
    conn.commit()


class _locked:
    """A connection holding the schema lock, inside a transaction the caller commits."""

    def __init__(self, sql_engine: SqlEngine) -> None:
        self.engine = sql_engine
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        conn = self.conn = self.engine.connect()
        try:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            elif conn.dialect.name == "sqlite":
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy_timeout) for the write lock
        except BaseException:
            conn.close()
            raise
        return conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        try:
            if conn.dialect.name == "sqlite":
                raw = conn.connection.driver_connection
                if raw.in_transaction:
                    raw.execute("COMMIT" if exc_type is None else "ROLLBACK")
            elif exc_type is not None:
                conn.rollback()
        finally:
            conn.close()
