"""What the `faceledger` command and its `evaluate` sub-app share: the consoles, the settings built from
--home, this process's one Engine and user, and errors at the edge (one red line, exit code 2).

Nothing heavy is imported here: Settings (pydantic-settings) and the Engine (SQLAlchemy, FAISS, OpenCV)
are imported on first use, so `faceledger --help` and argument errors answer without loading them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

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


def set_home(home: Optional[Path]) -> None:
    """Remember --home (or FACELEDGER_HOME); Settings are built from it when first needed."""
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


def me() -> Optional[Principal]:
    """The user the CLI acts as: FACELEDGER_TOKEN's holder, else the local operator (None)."""
    if "principal" not in state:
        token = os.environ.get("FACELEDGER_TOKEN")
        state["principal"] = engine().authenticate(token) if token else None
    return state["principal"]


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
