"""create_app(settings): the FastAPI app over one Engine, created at start-up and shared by all requests."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from ..engine import Engine
from ..errors import FaceledgerError
from . import routes, web
from .problems import classify, problem
from .security import Guard, is_api

log = logging.getLogger("faceledger.api")

DESCRIPTION = """Accountable face search and verification. Every route but /healthz needs
`Authorization: Bearer TOKEN` (a token from `faceledger user add`); each role may do what it may on the
command line. Errors are RFC 9457 problem details (`application/problem+json`). See docs/api.md."""


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The app. It opens one Engine on `settings` (or uses `engine`, which the caller then owns)."""
    settings = settings or (engine.settings if engine else Settings())
    owned = engine is None
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.pipeline.load()  # load the models before the first request, not during it
        yield
        if owned:
            engine.close()

    app = FastAPI(title="faceledger", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.engine = engine
    app.state.settings = settings
    app.include_router(routes.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.get("/healthz", tags=["health"], summary="Liveness (no token needed)")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__, "model_id": engine.model_id}

    def respond(request: Request, status: int, detail: str, slug: str | None = None, headers=None, **extra):
        if is_api(request.url.path) or "text/html" not in request.headers.get("accept", ""):
            return problem(status, detail, slug=slug, headers=headers, **extra)
        return web.error_page(request, status, detail)

    @app.exception_handler(FaceledgerError)
    async def faceledger_error(request: Request, exc: FaceledgerError):
        status, slug = classify(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="faceledger"'} if status == 401 else None
        return respond(request, status, str(exc), slug, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], "message": e["msg"]}
                    for e in exc.errors()]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return respond(request, 422, detail or "the request is not valid", "validation", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return respond(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(request, 500, "unexpected server error; the server log has the details", "internal-error")

    app.add_middleware(Guard, engine=engine, settings=settings)  # outermost: before routing and body parsing
    return app
