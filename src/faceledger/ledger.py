"""Append-only, hash-chained audit log: append, verify, read.

Every entry's hash covers its sequence number, id, time, actor, action, payload and the previous
entry's hash, so an edited, removed or reordered entry breaks the chain. Removing entries from the
end leaves a valid chain, so the newest (seq, hash) is also written to a head file outside the
database; `verify` reports a ledger that ends before the head it last wrote. (Whoever can write the
data directory can rewrite both; signed anchors kept elsewhere catch that: see anchors.py.)

Appends are safe across processes: `append` takes the database-wide write lock (store/writing.py)
before it reads the last entry, and holds it until the caller's transaction ends.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .chain import GENESIS, ChainEntry, HeadFile, canonical_json, entry_hash, new_entry
from .errors import FaceledgerError
from .store import LedgerEntry
from .store.writing import WriteConflict, hold_write_lock, is_transient

__all__ = ["GENESIS", "Ledger", "LedgerCheck", "canonical_json", "entry_as_dict", "entry_hash"]


@dataclass
class LedgerCheck:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    head_hash: str = GENESIS


class Ledger:
    """The ledger table plus its head file."""

    def __init__(self, sessions: sessionmaker, head_path: Path, *, writer: sessionmaker | None = None) -> None:
        self._sessions = sessions
        self._writer = writer or sessions
        self.head_path = Path(head_path)
        self.head = HeadFile(self.head_path)
        self.lock = threading.RLock()
        """Held while an entry is appended and committed, so two threads never take the same seq.
        Other processes are kept out by the database's write lock, which `append` takes."""
        self.actor_context: dict[str, dict] = {}
        """Extra facts recorded (as payload["acting_from"]) with every entry by that actor, e.g. the OS
        user and host behind `local-operator` (accounts.local_seat)."""

    def append(self, session: Session, *, actor: str, action: str, payload: dict) -> ChainEntry:
        """Add an entry inside the caller's transaction (committed with the act it records).

        Takes the database-wide write lock first (BEGIN IMMEDIATE on SQLite, an advisory lock on
        PostgreSQL), so no other process can append between this read of the last entry and the
        caller's commit."""
        hold_write_lock(session)
        columns = LedgerEntry.__table__.c  # a plain SQL statement (no ORM step): every search appends
        last = session.execute(select(columns.seq, columns.hash).order_by(columns.seq.desc()).limit(1)).first()
        entry = new_entry(tuple(last) if last else None, actor=actor, action=action, payload=payload,
                          acting_from=self.actor_context.get(actor))
        # a plain INSERT on the session's connection (no ORM unit of work: a search's write transaction,
        # held under the write lock, spent about a tenth of its Python time flushing), seen by every later
        # statement of the transaction, committed with it
        session.execute(LedgerEntry.__table__.insert(), [entry.columns()])
        return entry

    def record(self, *, actor: str, action: str, payload: dict, attempts: int = 5) -> ChainEntry:
        """Append and commit on its own. The write lock makes a collision impossible; as a backstop, a
        transient failure (database locked past the busy timeout, a duplicate seq) is retried."""
        last_error: Exception | None = None
        for _ in range(attempts):
            with self.lock, self._writer() as session:
                try:
                    entry = self.append(session, actor=actor, action=action, payload=payload)
                    session.commit()
                except (IntegrityError, OperationalError) as exc:
                    session.rollback()
                    if not is_transient(exc):
                        raise
                    last_error = exc
                    continue
            self.note_committed(entry)
            return entry
        raise WriteConflict(f"could not append to the ledger: too many concurrent writers ({last_error})")

    def note_committed(self, entry: ChainEntry) -> None:
        """Advance the head file after the entry's transaction committed."""
        with self.lock:
            self.head.advance(entry.seq, entry.hash)

    def read_head(self) -> tuple[int, str] | None:
        return self.head.read()

    def verify(self) -> LedgerCheck:
        """Walk the whole chain; list every broken link, bad hash, gap, and a truncated tail."""
        problems: list[str] = []
        prev_hash, expected_seq, count = GENESIS, 1, 0
        hashes: dict[int, str] = {}
        head = self.read_head()  # before the walk: a head written meanwhile names an entry the walk sees
        with self._sessions() as session:
            for entry in session.execute(select(LedgerEntry).order_by(LedgerEntry.seq)).scalars():
                count += 1
                problems.extend(_check_entry(entry, expected_seq, prev_hash))
                hashes[entry.seq] = entry.hash
                prev_hash, expected_seq = entry.hash, entry.seq + 1
        problems.extend(self._check_head(hashes, head))
        return LedgerCheck(ok=not problems, entries=count, problems=problems, head_hash=prev_hash)

    def _check_head(self, hashes: dict[int, str], head: tuple[int, str] | None) -> list[str]:
        if head is None:
            return []
        seq, digest = head
        if seq not in hashes:
            return [f"the ledger ends at entry {max(hashes, default=0)} but entry {seq} was written: "
                    "entries were removed from the end"]
        if hashes[seq] != digest:
            return [f"entry {seq} differs from the one recorded in the head file"]
        return []

    def hashes_at(self, seqs) -> dict[int, str]:
        """The stored hash of each of these entries that exists (for checking signed anchors)."""
        wanted = sorted(set(seqs))
        if not wanted:
            return {}
        with self._sessions() as session:
            rows = session.execute(select(LedgerEntry.seq, LedgerEntry.hash).where(LedgerEntry.seq.in_(wanted)))
            return {seq: digest for seq, digest in rows}

    def last(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest entry, or None for an empty ledger."""
        with self._sessions() as session:
            row = session.execute(select(LedgerEntry.seq, LedgerEntry.hash).order_by(LedgerEntry.seq.desc())
                                  .limit(1)).first()
        return (row[0], row[1]) if row else None

    def entries(self, *, since: datetime | None = None, action: str | None = None, actor: str | None = None,
                purpose: str | None = None, case: str | None = None, limit: int | None = None) -> list[dict]:
        """Entries oldest first, filtered; `limit` keeps the newest ones."""
        query = select(LedgerEntry).order_by(LedgerEntry.seq)
        if action:
            query = query.where(LedgerEntry.action == action)
        if actor:
            query = query.where(LedgerEntry.actor == actor)
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            query = query.where(LedgerEntry.created_at >= since.astimezone(UTC).isoformat())
        with self._sessions() as session:
            rows = [entry_as_dict(row) for row in session.execute(query).scalars()]
        if purpose:
            rows = [r for r in rows if r["payload"].get("purpose") == purpose]
        if case:
            rows = [r for r in rows if r["payload"].get("case") == case]
        return rows[-limit:] if limit else rows

    def export(self, fmt: str, *, since: datetime | None = None) -> str:
        """The ledger as JSON lines or CSV (payload as canonical JSON in one column), hashes included."""
        rows = self.entries(since=since)
        if fmt == "jsonl":
            return "".join(canonical_json(row) + "\n" for row in rows)
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                writer.writerow([canonical_json(row[c]) if c == "payload" else row[c] for c in EXPORT_COLUMNS])
            return buffer.getvalue()
        raise FaceledgerError(f"export format must be jsonl or csv, not {fmt!r}")


EXPORT_COLUMNS = ("seq", "entry_id", "created_at", "actor", "action", "payload", "prev_hash", "hash")


def _check_entry(entry: LedgerEntry, expected_seq: int, prev_hash: str) -> list[str]:
    problems = []
    if entry.seq != expected_seq:
        problems.append(f"entry {entry.seq}: expected entry {expected_seq} here (an entry is missing or moved)")
    if entry.prev_hash != prev_hash:
        problems.append(f"entry {entry.seq}: does not link to the entry before it")
    recomputed = entry_hash(entry.seq, entry.entry_id, entry.created_at, entry.actor, entry.action,
                            entry.payload, entry.prev_hash)
    if recomputed != entry.hash:
        problems.append(f"entry {entry.seq}: content does not match its hash (edited)")
    return problems


def entry_as_dict(entry: LedgerEntry) -> dict:
    return {
        "seq": entry.seq,
        "entry_id": entry.entry_id,
        "created_at": entry.created_at,
        "actor": entry.actor,
        "action": entry.action,
        "payload": json.loads(entry.payload),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
