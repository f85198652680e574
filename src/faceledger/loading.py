"""Loading a model once, from whichever thread asks first, or ahead of time on a background thread.

`LoadOnce` wraps a load function (a detector's or embedder's `load`). `ensure()` runs it, or waits for
the run already going on another thread; `prefetch()` runs it unless it is done or running, keeping any
exception instead of raising it. A run that succeeded is never repeated. A run that failed raises its
exception, on their own threads, in every caller that waited for it, or in the next `ensure()` when it
ran ahead of time with nobody waiting (so a model file that fails its sha256 check on a background thread
is reported to the caller exactly as if the caller had loaded it); once raised it is forgotten, and a
later `ensure()` tries again (the user may have fixed the file).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class _Run:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class LoadOnce:
    """One successful run of `load`, shared by every thread (see the module docstring)."""

    def __init__(self, load: Callable[[], object]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ensure(self) -> None:
        """Loaded when this returns; the failed run's exception (this thread's, or the one waited for) else."""
        if self._loaded:
            return
        run, mine = self._claim()
        if run is None:
            return
        if mine:
            self._execute(run)
        else:
            run.done.wait()
        if run.error is not None:
            with self._lock:
                if self._run is run:
                    self._run = None  # reported: a later call tries again
            raise run.error

    def prefetch(self) -> None:
        """Run the load here unless it is done or running; an exception is kept for `ensure()`."""
        if self._loaded:
            return
        run, mine = self._claim()
        if mine:
            self._execute(run)

    def _claim(self) -> tuple[_Run | None, bool]:
        """(the run to wait for or to execute, whether this thread executes it); (None, False) when loaded."""
        with self._lock:
            if self._loaded:
                return None, False
            if self._run is not None:
                return self._run, False
            self._run = _Run()
            return self._run, True

    def _execute(self, run: _Run) -> None:
        try:
            self._load()
        except BaseException as error:  # noqa: BLE001 - handed to the caller, on the caller's thread
            run.error = error
        else:
            with self._lock:
                self._loaded = True
                self._run = None
        finally:
            run.done.set()
