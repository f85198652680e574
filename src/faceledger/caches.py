"""Where derived files are kept so that a fresh process (each CLI command) need not remake them.

Only pure functions of their inputs go here (a calibration tail fit, an embedding model prepared and
optimised for this CPU), each under a key that covers every input, so a file read back is what would
have been computed: deleting the folder at any time only costs the time to remake them. Off until
`use_dir` names a folder; the engine names `<home>/cache`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

_state: dict[str, Path | None] = {"dir": None}


def use_dir(path: Path | None) -> None:
    """Keep derived files under this folder from now on (None: keep none)."""
    _state["dir"] = Path(path) if path is not None else None


def current_dir() -> Path | None:
    """The folder named by `use_dir` (None: off); worker processes are handed it, so they read what the
    parent's process made (a spawned process starts with caching off)."""
    return _state["dir"]


def folder(kind: str) -> Path | None:
    """The folder for one kind of derived file (not created here), or None when caching is off."""
    root = _state["dir"]
    return root / kind if root is not None else None


def temporary_name(path: Path) -> Path:
    """A name beside `path` that no other process or thread writing the same file at once will use."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")


def prune(where: Path, pattern: str, keep: int) -> None:
    """Remove all but the `keep` most recently written files (or folders) matching `pattern`."""
    try:
        found = sorted(where.glob(pattern), key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        return
    for old in found[:-keep] if keep else found:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()
