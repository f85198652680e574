"""The ledger's hash chain without the store: how an entry is hashed, and the head file.

Every entry's hash covers its sequence number, id, time, actor, action, payload and the previous entry's
hash (`entry_hash`). `new_entry` makes the next entry from the last one, as every writer of the ledger
must (ledger.py through the ORM, store/direct.py through stdlib sqlite3): one definition of the chain.

The head file holds the newest (seq, hash) outside the database, so removing entries from the end is
seen (`faceledger audit verify`). `HeadFile.advance` is ordered across processes by an flock beside it,
so an older entry never replaces a newer head.

Nothing here imports SQLAlchemy: a search run by the CLI on SQLite appends without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the head file is then ordered per process only
    fcntl = None

GENESIS = "0" * 64


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(seq: int, entry_id: str, created_at: str, actor: str, action: str, payload: str,
               prev_hash: str) -> str:
    material = canonical_json([seq, entry_id, created_at, actor, action, payload, prev_hash])
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class ChainEntry:
    """The columns of one ledger row."""

    seq: int
    entry_id: str
    created_at: str
    actor: str
    action: str
    payload: str
    prev_hash: str
    hash: str

    def columns(self) -> dict:
        return dict(self.__dict__)


def new_entry(last: tuple[int, str] | None, *, actor: str, action: str, payload: dict,
              acting_from: dict | None = None) -> ChainEntry:
    """The entry that follows `last` ((seq, hash) of the newest entry; None for an empty ledger).

    The caller must hold the database's write lock from reading `last` until its commit (store/writing.py).
    `acting_from` (who is behind the actor: accounts.local_seat) is recorded in the payload."""
    if acting_from:
        payload = {**payload, "acting_from": acting_from}
    seq = last[0] + 1 if last else 1
    prev = last[1] if last else GENESIS
    entry_id = str(uuid.uuid4())
    created_at = datetime.now(UTC).isoformat(timespec="microseconds")
    body = canonical_json(payload)
    return ChainEntry(seq=seq, entry_id=entry_id, created_at=created_at, actor=actor, action=action, payload=body,
                      prev_hash=prev, hash=entry_hash(seq, entry_id, created_at, actor, action, body, prev))


class HeadFile:
    """`<home>/ledger.head`: "SEQ HASH" of the newest committed entry, written after each commit."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.path.read_text().split()
            return int(seq), digest
        except (OSError, ValueError):
            return None

    def advance(self, seq: int, digest: str) -> None:
        """Record (seq, digest) unless the file already names a later entry (another process was faster)."""
        with self._locked():
            head = self.read()
            if head is None or seq > head[0]:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(f"{seq} {digest}\n")
                tmp.replace(self.path)

    @contextmanager
    def _locked(self):
        if fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / (self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
