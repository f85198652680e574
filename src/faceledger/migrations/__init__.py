"""Alembic revisions of the store schema, run from code (no alembic.ini).

`faceledger.store.schema` decides when to run them; this package only knows where they are and how to
hand Alembic a connection. A schema change is a new file in `versions/`, written by hand in the style
of 0001 (explicit `op.*` calls, no models imported), and tested by tests/test_schema.py, which upgrades
a store made by an earlier release and compares the result with the models. To start one:

    python -c "from alembic import command; from faceledger.migrations import config; \\
               command.revision(config(), 'what changes')"
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Alembic is imported when used: a store already at head is recognised without it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "faceledger_schema_version"
"""Alembic's version table, named so that it cannot be another application's `alembic_version` in a
shared PostgreSQL database."""
FIRST = "0001"
"""The schema of the releases made before migrations existed (their stores have no version table)."""


def config(connection=None) -> Config:
    """An Alembic Config for these revisions; `connection` (if given) is the one env.py migrates."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script() -> ScriptDirectory:
    """The revisions (read once per folder and process)."""
    return _script_at(HERE)


@lru_cache(maxsize=4)
def _script_at(folder: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(folder), version_locations=[str(folder / "versions")])


def head() -> str:
    """The newest revision this code knows."""
    return script().get_current_head()


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]+)['\"])\s*$",
                            re.MULTILINE)


def head_from_files() -> str | None:
    """The newest revision, read from the revision files without Alembic; None unless the files form one
    plain chain (each with one `revision` and one `down_revision` line, exactly one head): then the
    caller asks Alembic."""
    return _head_in(HERE)


@lru_cache(maxsize=4)
def _head_in(folder) -> str | None:
    revisions: dict[str, str | None] = {}
    for path in sorted((folder / "versions").glob("*.py")):
        found = dict((name, ident) for name, _, ident in _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if set(found) != {"revision", "down_revision"} or not found["revision"] or found["revision"] in revisions:
            return None
        revisions[found["revision"]] = found["down_revision"] or None
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None
