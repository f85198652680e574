"""The SQL store: engine/session setup and the queries the engine needs."""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import OperationalError, ArgumentError
from sqlalchemy.orm import sessionmaker

from ..errors import FaceledgerError
from .models import (
    Base, FaceCrop, FaceRecord, Gallery, ImageRecord, LedgerEntry, Maintenance, Probe, Review, Subject, User,
)

__all__ = [
    "Base", "FaceCrop", "FaceRecord", "Gallery", "ImageRecord", "LedgerEntry", "Maintenance", "Probe", "Review", "Subject",
    "User", "open_database", "writer_sessions", "dispose_writer", "hold_write_lock", "retry_transaction", "WriteConflict",
]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def open_database(url: str) -> tuple[SqlEngine, sessionmaker]:
    """Connect, create missing tables, and return (engine, session factory); clear error if unreachable."""
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise FaceledgerError(f"cannot use database URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise FaceledgerError(f"cannot open database {engine.url!r}: {exc.orig}") from None
    return engine, sessionmaker(engine, expire_on_commit=False)


from .writing import WriteConflict, dispose_writer, hold_write_lock, retry_transaction, writer_sessions  # noqa: E402
