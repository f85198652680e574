"""What the `faceledger` command and its `evaluate` sub-app share: the consoles, the settings built from
--home, this process's one Engine and user, and errors at the edge (one red line, exit code 2).

Nothing heavy is imported here: Settings (pydantic-settings) and the Engine (SQLAlchemy, FAISS, OpenCV)
are imported on first use, so `faceledger --help` and argument errors answer without loading them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .errors import FaceledgerError

if TYPE_CHECKING:
    from .config import Settings
    from .engine import Engine
    from .policy import Principal

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
state: dict = {}
"""This process's home, settings, engine and principal; emptied when the command ends."""

JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def set_home(home: Path | None) -> None:
    """Remember --home (or FACELEDGER_HOME); Settings are built from it when first needed. An engine
    opened on another home in this process is closed, never reused."""
    if "engine" in state and state.get("home") != home:
        state.pop("engine").close()
        state.pop("principal", None)
    state.pop("settings", None)
    state["home"] = home


def settings() -> Settings:
    """The Settings of this command: --home if given, else the environment and defaults."""
    if "settings" not in state:
        from .config import Settings

        home = state.get("home")
        state["settings"] = Settings(home=home) if home else Settings()
    return state["settings"]


def engine() -> Engine:
    """This process's one Engine, opened on first use (models load once, when a command first needs them)."""
    if "engine" not in state:
        from .engine import Engine

        state["engine"] = Engine(settings())
    return state["engine"]


def me() -> Principal | None:
    """The user the CLI acts as: FACELEDGER_TOKEN's holder, else the local operator (None)."""
    if "principal" not in state:
        token = os.environ.get("FACELEDGER_TOKEN")
        state["principal"] = engine().authenticate(token) if token else None
    return state["principal"]


def print_json(value) -> None:
    """`value` as JSON on stdout (dates and paths as strings)."""
    out.print_json(json.dumps(value, default=str))


def parse_date(value: str | None, flag: str = "--retain-until") -> datetime | None:
    """A YYYY-MM-DD option as an aware UTC datetime; a malformed one is a FaceledgerError naming `flag`."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FaceledgerError(f"{flag} {value!r} is not a date (use YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fmt_rate(rate: float) -> str:
    """A false-match rate for people: 1.2e-05 when tiny, else a percentage."""
    return f"{rate:.1e}" if rate < 0.001 else f"{rate:.2%}"


def fail(exc: FaceledgerError) -> None:
    """A FaceledgerError at the edge: one red line on stderr, exit code 2, never a traceback."""
    err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    sys.exit(2)


def run(app: Callable[[], object]) -> None:
    """Run a Typer app as a command: errors become one red line and exit 2; the engine is closed after."""
    try:
        app()
    except FaceledgerError as exc:
        fail(exc)
    finally:
        opened = state.pop("engine", None)
        state.clear()
        if opened is not None:
            opened.close()
