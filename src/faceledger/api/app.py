"""create_app(settings): the FastAPI app over one Engine, created at start-up and shared by all requests."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Settings
from ..engine import Engine
from . import routes, routes_calibration, routes_evidence, routes_scan, routes_video, signin, web, web_video
from .docs_offline import install_docs
from .deps import install_error_handlers
from .security import Guard
from .sessions_store import WebSessions

log = logging.getLogger("faceledger.api")

DESCRIPTION = """Accountable face search and verification. Every route but /healthz needs
`Authorization: Bearer TOKEN` (a token from `faceledger user add`); each role may do what it may on the
command line. Errors are RFC 9457 problem details (`application/problem+json`). See docs/api.md."""


class RetentionKeeper:
    """While the server runs, the scheduled purge runs by itself: every `every` seconds it checks whether
    the last purge is older than FACELEDGER_PURGE_INTERVAL_HOURS, and purges (ledgered) when it is."""

    def __init__(self, engine: Engine, every: float) -> None:
        self.engine, self.every = engine, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faceledger-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.engine.purge_if_overdue()
            except Exception:
                log.exception("scheduled purge failed; retrying in %.0f s", self.every)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The app. It opens one Engine on `settings` (or uses `engine`, which the caller then owns)."""
    settings = settings or (engine.settings if engine else Settings())
    owned = engine is None
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.pipeline.load()  # load the models before the first request, not during it
        engine.sweep_video_jobs()  # a job this data directory's last server was running is reported failed
        keeper = RetentionKeeper(engine, settings.maintenance_check_seconds)
        keeper.start()
        yield
        keeper.stop()
        if owned:
            engine.close()

    app = FastAPI(title="faceledger", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served from local files: docs_offline.py
    app.state.engine = engine
    app.state.settings = settings
    app.state.web_sessions = web_sessions = WebSessions.from_settings(engine, settings)
    app.include_router(routes.router)
    app.include_router(routes_calibration.router)
    app.include_router(routes_video.router)
    app.include_router(routes_evidence.router)
    app.include_router(routes_scan.router)
    app.include_router(signin.router)
    app.include_router(web.router)
    app.include_router(web_video.router)
    install_docs(app, title="faceledger")  # before /static: its assets are mounted under /static/docs
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.get("/healthz", tags=["health"], summary="Liveness (no token needed)")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__, "model_id": engine.model_id}

    install_error_handlers(app)
    app.add_middleware(Guard, engine=engine, settings=settings, web_sessions=web_sessions)  # outermost: before routing and body parsing
    return app
