"""`faceledger db`: the store's schema revision. These commands open only the store, never the models.

They act as the local operator (whoever can reach the data directory or the database URL); an upgrade
of a store that held data is ledgered as `schema.upgrade`, the same entry the engine writes when it
upgrades a store on start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .errors import FaceledgerError

db_app = typer.Typer(help="The store's schema: its revision, and upgrading it.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
LEDGER_ACTION = "schema.upgrade"

HINTS = {
    "empty": "no store yet: the first command that opens it (or `faceledger db upgrade`) creates it",
    "unversioned": "made by a release before schema revisions; it is checked and stamped when next opened",
    "behind": "older than this faceledger: back it up, then run `faceledger db upgrade`",
    "current": "up to date",
    "ahead": "written by a newer faceledger: install that version (or newer) to use it",
}


def _settings(ctx: typer.Context):
    """Settings as the root command builds them: its --home (or FACELEDGER_HOME), then the environment."""
    from .config import (
        Settings,  # imported when a db command runs, so `faceledger --help` stays light
    )

    home = ctx.find_root().params.get("home")
    return Settings(home=home) if home else Settings()


def _safe(url) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _echo(value: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(value) if as_json else text)


@db_app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The store's schema revision, the newest this faceledger knows, and what to do about a difference."""
    from sqlalchemy.exc import OperationalError

    from .store import connect
    from .store.schema import schema_status

    settings = _settings(ctx)
    url = settings.database_url
    file = _sqlite_file(url)
    if file is not None and not file.exists():  # report, but create nothing
        from .migrations import head

        found = {"database": url, "current": None, "head": head(), "state": "empty"}
    else:
        db = connect(url)
        try:
            result = schema_status(db)
        except OperationalError as exc:
            raise FaceledgerError(f"cannot open database {_safe(db.url)!r}: {exc.orig}") from None
        finally:
            db.dispose()
        found = {"database": _safe(db.url), "current": result.current, "head": result.head,
                 "state": result.state}
    found["hint"] = HINTS[found["state"]]
    _echo(found, as_json, f"{found['database']}: schema {found['current'] or '(none)'}, this faceledger "
                          f"{found['head']}: {found['state']} ({found['hint']})")


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Bring the store's schema to this faceledger's revision (ledgered); refuses a store written by a newer one."""
    from .ledger import Ledger
    from .store import open_store

    settings = _settings(ctx)
    settings.home.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.database_url, auto_upgrade=True)
    try:
        change = store.schema_change
        entry = None
        if change is not None and not change.created:
            ledger = Ledger(store.sessions, settings.home / "ledger.head")
            entry = ledger.record(actor=settings.operator, action=LEDGER_ACTION, payload=change.as_payload())
        from .migrations import head

        value = {"database": _safe(store.db.url), "head": head(),
                 "change": change.as_payload() if change else None,
                 "ledger_entry": entry.entry_id if entry else None}
    finally:
        store.db.dispose()
    if change is None:
        text = f"{value['database']}: already at schema {value['head']}"
    elif change.created:
        text = f"{value['database']}: new store created at schema {value['head']}"
    else:
        parts = [f"recorded schema {change.stamped} (made before schema revisions)"] if change.stamped else []
        if change.applied:
            parts.append(f"upgraded {change.from_revision or change.stamped} -> {change.to_revision} "
                         f"(applied: {', '.join(change.applied)})")
        text = f"{value['database']}: {'; '.join(parts)}; ledger entry {value['ledger_entry']}"
    _echo(value, as_json, text)
