"""One process at a time per milvus-lite file, with a clear error for the second one.

milvus-lite is embedded: the process that opens a `.db` holds it (an exclusive lock inside the data
directory) until that process exits. A second process that opens the same file while the first still
runs cannot use it. faceledger takes its own lock beside the file (`<file>.lock`, which also names the
holder) before milvus-lite opens it, waits a few seconds for a short-lived command to finish, and
otherwise refuses with `MilvusLiteBusy`, which says what to do. Sequential processes (one CLI command
after another) each get the file in turn: the lock dies with its process.

The lock is held for the rest of the process's life, as milvus-lite holds the file: engines opened
again in the same process reuse it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..errors import FaceledgerError

WAIT_S = 10.0
"""How long a process waits for another one to let go of a milvus-lite file before refusing."""

_HELD: dict[str, int] = {}  # milvus-lite path -> descriptor of its lock file, for this process's life


class MilvusLiteBusy(FaceledgerError):
    """The milvus-lite index file is open in another process; milvus-lite serves one process per file."""


def busy_message(db_path: str, holder: str) -> str:
    return (f"the milvus-lite index {db_path} is in use by another process ({holder}); milvus-lite serves "
            "one process per file, so this command cannot use it while that process (e.g. `faceledger "
            "serve`) runs. Stop that process and retry, or, to run several processes at once, use a Milvus "
            "server: FACELEDGER_INDEX=milvus://HOST:PORT (see docs/scaling.md). The store is the truth: what "
            "this command already committed is kept, and the index catches up from the store on its next use")


def lock_path(db_path: str) -> Path:
    path = Path(db_path)
    return path.with_name(path.name + ".lock")


def hold(db_path: str, *, wait_s: float | None = None) -> None:
    """Take this process's lock on a milvus-lite file, or raise MilvusLiteBusy naming the holder."""
    if db_path in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - milvus-lite itself is not installed on Windows
        return
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    deadline = time.monotonic() + (WAIT_S if wait_s is None else wait_s)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                holder = _holder(path)
                os.close(fd)
                raise MilvusLiteBusy(busy_message(db_path, holder)) from None
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:3]) if sys.argv and sys.argv[0] else "python"
    os.pwrite(fd, f"pid {os.getpid()}: {command}"[:300].encode(), 0)
    _HELD[db_path] = fd


def held(db_path: str) -> bool:
    return db_path in _HELD


def _holder(path: Path) -> str:
    try:
        text = " ".join(path.read_text(errors="replace").split())
    except OSError:
        text = ""
    return text or "not a faceledger process, or one that is starting"
