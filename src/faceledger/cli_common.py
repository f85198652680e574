"""What the `faceledger` command and its `evaluate` sub-app share: the consoles, the settings built from
--home, this process's one Engine and user, and errors at the edge (one red line, exit code 2; with
--json, one JSON object on stdout instead: `{"error": {"kind": ..., "message": ...}}`, same exit code).

Nothing heavy is imported here: Settings and the Engine (SQLAlchemy, FAISS, OpenCV)
are imported on first use, so `faceledger --help` and argument errors answer without loading them.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
from collections.abc import Callable
from importlib import import_module
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .errors import FaceledgerError, NotFound

if TYPE_CHECKING:
    from .config import Settings
    from .engine import Engine
    from .pipeline import FacePipeline
    from .policy import Principal

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
state: dict = {}
"""This process's home, settings, engine and principal; emptied when the command ends."""

JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def switch(on: bool, off: bool, flag: str, default: bool | None = None) -> bool | None:
    """A setting given by two plain switches, `flag` and `--no-...`: True, False, or `default` when
    neither is given; both at once is a usage error (exit 2), not whichever came last.

    Declared as two options rather than typer's `--x/--no-x`, so that `--help` lists each on its own row:
    typer puts the `--no-` form in a column of its own, and with names as long as
    `--keep-probe-for-review` the two columns do not fit 80 columns, so rich cuts them ("--no-keep-pro…")."""
    if on and off:
        raise typer.BadParameter(f"give {flag} or --no-{flag.removeprefix('--')}, not both")
    return True if on else False if off else default


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
    """This process's one Engine, opened on first use (models load once, when a command first needs them).

    A data directory that did not exist is created, and the command says so on stderr with its absolute
    path: a mistyped --home (or FACELEDGER_HOME) is seen at once, not after an empty answer."""
    if "engine" not in state:
        Engine = imported_quietly("faceledger.engine").Engine
        home = settings().home
        state["new_home"] = not home.exists()
        state["engine"] = Engine(settings(), pipeline=state.get("pipeline"))
        if state["new_home"]:
            err.print(f"new data directory {home_path()} created", highlight=False, soft_wrap=True)
    return state["engine"]


def pipeline() -> FacePipeline:
    """This process's face pipeline, built from the settings, its models loading on a background thread
    from now on (FacePipeline.start_loading; the engine, when opened, uses this one), so that what the
    command does next (imports, reading the store) overlaps the loading. Its derived files (the SFace graph
    optimised for this CPU) are kept in the data directory's cache/, as the engine keeps them: call it only
    on a data directory that exists (the engine makes a new one, and says so)."""
    if "pipeline" not in state:
        FacePipeline = imported_quietly("faceledger.pipeline").FacePipeline
        from . import caches

        caches.use_dir(settings().home / "cache")
        state["pipeline"] = FacePipeline.from_settings(settings())
        state["pipeline"].start_loading()
    return state["pipeline"]


def imported_quietly(name: str):
    """Import a module (the first time: the engine, SQLAlchemy, OpenCV, ONNX Runtime, FAISS, the services)
    without the garbage collector.

    That first import loads most of what a command runs: several hundred modules whose objects live as
    long as the process. While they load, the collector would walk the growing heap again and again and
    find almost nothing to free (about a tenth of a search's CPU time, benchmarks/cli_start.py). So it is
    paused for the import (unless it was off already) and what was loaded is then moved to the permanent
    generation (`gc.freeze()`), which later collections, and the one at exit, do not scan; new objects
    are collected as before."""
    if name in sys.modules:
        return sys.modules[name]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return import_module(name)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def home_path() -> str:
    """The data directory of this command, absolute (for messages)."""
    return str(settings().home.resolve())


def me() -> Principal | None:
    """The user the CLI acts as: FACELEDGER_TOKEN's holder, else the local operator (None)."""
    if "principal" not in state:
        token = os.environ.get("FACELEDGER_TOKEN")
        state["principal"] = engine().authenticate(token) if token else None
    return state["principal"]


WIDE = 100
"""Terminals narrower than this (e.g. COLUMNS=80) get tables without their `optional` columns."""


class Rows:
    """A table for the terminal: a long cell folds onto more lines instead of ending in "…", and in a
    terminal narrower than WIDE the `optional` columns are left out."""

    def __init__(self, *headers: str, optional: tuple[str, ...] = ()) -> None:
        from rich.table import Column, Table

        narrow = out.width < WIDE
        self.keep = [i for i, header in enumerate(headers) if not (narrow and header in optional)]
        self.table = Table(*(Column(headers[i], overflow="fold") for i in self.keep))

    def add_row(self, *cells) -> None:
        self.table.add_row(*(cells[i] for i in self.keep))

    @property
    def row_count(self) -> int:
        return self.table.row_count

    def __rich__(self):
        return self.table


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


def wants_json() -> bool:
    """Whether the command line asks for JSON (read from argv: a usage error comes before any parsing)."""
    args = sys.argv[1:]
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def fail(exc: Exception, exit_code: int = 2) -> None:
    """An error at the edge, never a traceback: one red line on stderr, or with --json one JSON object
    on stdout (`{"error": {"kind": "NotFound", "message": "..."}}`); exit code 2 unless given.

    An unknown name (gallery, user, entry) names the data directory it was looked up in (and, when this
    command has just created it, asks whether --home is right)."""
    message = exc.format_message() if isinstance(exc, typer.TyperException) else str(exc)
    if isinstance(exc, NotFound) and "engine" in state:
        message += (f" (looked in the data directory {home_path()}, new: created by this command; is --home or "
                    "FACELEDGER_HOME right?)" if state.get("new_home") else f" (data directory {home_path()})")
    if wants_json():
        sys.stdout.write(json.dumps({"error": {"kind": type(exc).__name__, "message": message}}) + "\n")
        sys.stdout.flush()
    else:
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


def _freeze_at_exit() -> None:
    """At interpreter exit, leave the objects of the finished command out of the exit's garbage collections.

    A command ends with a large heap (SQLAlchemy's and the models' object graphs) that the
    interpreter's exit would otherwise walk for cycles: about a fifth of a search's CPU time
    (benchmarks/cli_start.py). `gc.freeze()` moves them to the permanent generation, which those passes do
    not scan. Everything else about the exit stays: atexit handlers, weakref finalizers, flushing; the
    engine itself is closed by `run` before. Registered with atexit, so a process that runs commands
    in-process (the tests) is unaffected until it ends itself."""
    if not getattr(_freeze_at_exit, "registered", False):
        _freeze_at_exit.registered = True
        atexit.register(gc.freeze)


def run(app: Callable[..., object]) -> None:
    """Run a Typer app as a command: errors become one red line and exit 2 (with --json, a JSON object on
    stdout; usage errors too, with click's exit code); the engine is closed after."""
    _freeze_at_exit()
    try:
        if not wants_json():
            app()
            return
        try:
            code = app(standalone_mode=False)
        except typer.TyperException as exc:  # usage errors (click's), with click's exit code
            fail(exc, exc.exit_code)
        except typer.Abort:
            fail(FaceledgerError("aborted"), 1)
        else:
            if isinstance(code, int) and code:
                sys.exit(code)
    except FaceledgerError as exc:
        fail(exc)
    except Exception as exc:  # a bug or an OS error: a traceback (exit 1), or with --json a JSON object
        if not wants_json():
            raise
        fail(exc, 1)
    finally:
        opened = state.pop("engine", None)
        state.clear()  # (a pipeline still loading finishes on its own thread)
        if opened is not None:
            opened.close()
