"""A search's reads and writes on a SQLite store through stdlib sqlite3, without SQLAlchemy.

Importing SQLAlchemy and mapping the models costs a one-shot `faceledger search` about a third of its
time (benchmarks/cli_start.py), for a dozen statements. `DirectStore` runs those statements itself, for
the CLI's search on the embedded default store (direct_search.py), and writes its rows exactly as the
ORM writes them on SQLite (tests/test_direct_search.py compares every column):

- datetimes as SQLAlchemy's SQLite DATETIME stores them: "YYYY-MM-DD HH:MM:SS.ffffff", the UTC wall time;
- JSON columns as `json.dumps` with its default separators; booleans as 0/1; bytes as BLOBs;
- the ledger entry through chain.new_entry, the review-queue rows through store/rows.py.

It serves only a store at exactly the schema revision it was written for (`REVISION`); on any other it
declines to open and the caller uses the engine. Writes hold the database's write lock (BEGIN
IMMEDIATE) from reading the ledger's last entry until the commit, as store/writing.py does for the ORM.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..chain import ChainEntry
from ..migrations import VERSION_TABLE, head_from_files
from .pragmas import sqlite_pragmas
from .rows import covered_galleries, open_review_values

REVISION = "0005"
"""The schema revision whose tables and encodings this module writes. When a migration adds one, the
direct path stands aside (the engine serves every search) until this module is brought up to it:
tests/test_direct_search.py fails until then."""

PARAMETER_CHUNK = 900
"""Stay under SQLite's bound-parameter limit in IN (...) lists (as store/queries.py)."""


def sqlite_datetime(value: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite DATETIME type stores it (its own fields; an aware UTC time's
    wall time, which is how every time in the store is kept)."""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}")


def sqlite_json(value) -> str:
    """A JSON column's value as SQLAlchemy's JSON type writes it (`json.dumps`, default separators)."""
    return json.dumps(value)


@dataclass(frozen=True)
class GalleryRow:
    """A row of `galleries` with the types the ORM gives (booleans, the purposes list)."""

    id: int
    name: str
    retain_days: int | None
    target_fpir: float
    model_id: str
    purposes: list
    allow_investigative: bool
    probe_retain_days: int
    keep_probe_images: bool
    allow_live: bool
    blind_review: bool
    keep_probe_for_review: bool
    generation: int


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    token_sha256: str | None
    created_by: str
    disabled: bool


_GALLERY_COLUMNS = ("id, name, retain_days, target_fpir, model_id, purposes, allow_investigative, probe_retain_days, "
                    "keep_probe_images, allow_live, blind_review, keep_probe_for_review, generation")
_USER_COLUMNS = "name, role, token_sha256, created_by, disabled"


class DirectStore:
    """One stdlib sqlite3 connection to a faceledger store at revision REVISION."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    @classmethod
    def open(cls, path: Path) -> DirectStore | None:
        """The store at `path`, or None where the direct path does not serve it: no such file, another
        schema revision (older, newer, or a code base whose migrations moved on), or not in WAL mode."""
        path = Path(path)
        if not path.is_file() or head_from_files() != REVISION:
            return None
        connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            sqlite_pragmas(connection, None)
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            rows = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        except sqlite3.Error:
            connection.close()
            return None
        if str(mode).lower() != "wal" or rows != [(REVISION,)]:
            connection.close()
            return None
        return cls(connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def reading(self) -> Iterator[DirectStore]:
        """A read transaction: every statement inside sees one snapshot of the store."""
        with self._transaction("BEGIN"):
            yield self

    @contextmanager
    def writing(self) -> Iterator[DirectStore]:
        """A write transaction holding the database's write lock from its first statement to its commit."""
        with self._transaction("BEGIN IMMEDIATE"):
            yield self

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        self.connection.execute(begin)
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # -- reads -----------------------------------------------------------------------------------

    def maintenance(self, key: str) -> str | None:
        row = self.connection.execute("SELECT value FROM maintenance WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def user_named(self, name: str) -> UserRow | None:
        return self._user(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", name)

    def user_with_token(self, digest: str) -> UserRow | None:
        return self._user(f"SELECT {_USER_COLUMNS} FROM users WHERE token_sha256 = ?", digest)

    def _user(self, query: str, value: str) -> UserRow | None:
        row = self.connection.execute(query, (value,)).fetchone()
        if row is None:
            return None
        name, role, token, created_by, disabled = row
        return UserRow(name=name, role=role, token_sha256=token, created_by=created_by, disabled=bool(disabled))

    def gallery(self, name: str) -> GalleryRow | None:
        row = self.connection.execute(f"SELECT {_GALLERY_COLUMNS} FROM galleries WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        (gid, name, retain, target, model, purposes, investigative, probe_days, keep_images, live, blind,
         keep_for_review, generation) = row
        return GalleryRow(id=gid, name=name, retain_days=retain, target_fpir=target, model_id=model,
                          purposes=json.loads(purposes) if purposes is not None else None,
                          allow_investigative=bool(investigative), probe_retain_days=probe_days,
                          keep_probe_images=bool(keep_images), allow_live=bool(live), blind_review=bool(blind),
                          keep_probe_for_review=bool(keep_for_review), generation=generation)

    def face_count(self, gallery_id: int) -> int:
        """The gallery's faces (read in the same snapshot as its row: `reading`)."""
        return int(self.connection.execute("SELECT count(*) FROM faces WHERE gallery_id = ?",
                                           (gallery_id,)).fetchone()[0])

    def face_subjects(self, face_ids: set[int], *, live_at: datetime) -> dict[int, tuple[int, str, str]]:
        """face id -> (subject id, subject name, image name), leaving out faces whose image's retention
        date has passed at `live_at` (as store/queries.face_subjects)."""
        found: dict[int, tuple[int, str, str]] = {}
        ordered = sorted(face_ids)
        live = sqlite_datetime(live_at)
        for start in range(0, len(ordered), PARAMETER_CHUNK):
            chunk = ordered[start:start + PARAMETER_CHUNK]
            rows = self.connection.execute(
                "SELECT faces.id, subjects.id, subjects.name, images.name FROM faces "
                "JOIN subjects ON faces.subject_id = subjects.id JOIN images ON faces.image_id = images.id "
                f"WHERE faces.id IN ({', '.join('?' * len(chunk))}) "
                "AND (images.retain_until IS NULL OR images.retain_until >= ?)", (*chunk, live)).fetchall()
            found.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return found

    def last_entry(self) -> tuple[int, str] | None:
        """(seq, hash) of the ledger's newest entry (hold the write lock: see `writing`)."""
        row = self.connection.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    # -- writes ----------------------------------------------------------------------------------

    def add_entry(self, entry: ChainEntry) -> None:
        self._insert("ledger", entry.columns())

    def add_probe(self, entry_id: str, probe: dict) -> None:
        """A `probes` row from search_record's probe columns."""
        self._insert("probes", {
            "entry_id": entry_id, "gallery_id": probe["gallery_id"], "searched_by": probe["searched_by"],
            "sha256": probe["sha256"], "embedding": probe["embedding"], "quality": sqlite_json(probe["quality"]),
            "mode": probe["mode"], "candidates": sqlite_json(probe["candidates"]), "image": probe["image"],
            "created_at": sqlite_datetime(probe["created_at"]), "expires_at": sqlite_datetime(probe["expires_at"]),
            "review_image": probe["review_image"]})

    def queue_search(self, entry: ChainEntry, payload: dict) -> None:
        """The search's review-queue rows (store/open_reviews.queue_search), when it shows candidates."""
        values = open_review_values(entry_id=entry.entry_id, seq=entry.seq, created_at=entry.created_at,
                                    actor=entry.actor, action=entry.action, payload=payload)
        if values is None:
            return
        self._insert("open_reviews", values)
        for name in covered_galleries(payload):
            self._insert("open_review_galleries", {"gallery": name, "seq": entry.seq, "entry_id": entry.entry_id})

    def _insert(self, table: str, values: dict) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        self.connection.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
