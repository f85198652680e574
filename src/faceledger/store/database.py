"""Opening the SQL store: the SQLAlchemy engine, its sessions, and the schema brought to this code's revision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import sessionmaker

from ..errors import FaceledgerError
from .schema import SchemaChange, prepare
from .pragmas import sqlite_pragmas as _sqlite_pragmas


@dataclass
class Store:
    """An open store: the SQLAlchemy engine, its session factory, and what opening it changed in the
    schema (None: nothing; else a `SchemaChange` the engine ledgers)."""

    db: SqlEngine
    sessions: sessionmaker
    schema_change: SchemaChange | None = None


def open_store(url: str, *, auto_upgrade: bool = True) -> Store:
    """Connect and bring the schema to this code's revision (see `store.schema.prepare`); clear errors if
    the database is unreachable, behind with automatic upgrades off, or written by a newer faceledger."""
    engine = connect(url)
    try:
        change = prepare(engine, auto_upgrade=auto_upgrade)
    except OperationalError as exc:
        engine.dispose()
        raise FaceledgerError(f"cannot open database {engine.url!r}: {exc.orig}") from None
    except BaseException:
        engine.dispose()
        raise
    return Store(db=engine, sessions=sessionmaker(engine, expire_on_commit=False), schema_change=change)


def connect(url: str) -> SqlEngine:
    """A SQLAlchemy engine for `url` (SQLite pragmas set), without touching the schema."""
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise FaceledgerError(f"cannot use database URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_database(url: str) -> tuple[SqlEngine, sessionmaker]:
    """Connect, bring the schema up to date, and return (engine, session factory); see `open_store`."""
    store = open_store(url)
    return store.db, store.sessions

