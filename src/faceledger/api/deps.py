"""The one dependency layer of the HTTP side, used by the JSON API (routes.py) and the web app (web.py).

- `EngineDep`: the Engine the app opened at start-up, shared by every request.
- `Me`: the authenticated user. The Guard middleware has already checked the credentials (a bearer token,
  as /api/v1 clients send, or the session cookie the web app sets at sign-in) before routing.
- `check_csrf`: the form CSRF check of cookie sessions (the middleware checks the header for the API).
- `install_error_handlers`: FaceledgerError and every other error become problem+json for the API and
  for non-browser clients, an HTML error page for a browser.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from sqlalchemy.exc import DataError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..config import Settings
from ..engine import Engine
from ..errors import AuthenticationFailed, FaceledgerError, PermissionDenied
from ..policy import Principal
from .pages import error_page
from .problems import classify, problem
from .session import csrf_ok, is_api

log = logging.getLogger("faceledger.api")

MAX_ID = 2**63 - 1
"""The largest row id or offset a database stores (signed 64 bits); larger ones are 422, not a driver error."""
MAX_DAYS = 36_600
"""The longest retention a gallery may state (about 100 years): past it, dates overflow the calendar."""

OUT_OF_RANGE = "a number in the request is out of the range this server can store or compute with"


class OutOfRange(FaceledgerError):
    """A number in the request is too large (or small) to store or to compute a date with: 422."""


# -- the engine and the user ---------------------------------------------------------------------------

# The dependencies are coroutines because they only read what the app and the middleware set: FastAPI
# calls a plain `def` dependency in its thread pool, a hop to a worker thread and back (two thread
# wake-ups and GIL hand-offs) per dependency per request, for an attribute lookup.

async def engine_of(request: Request) -> Engine:
    """The app's one shared Engine."""
    return request.app.state.engine


async def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def current_user(request: Request) -> Principal:
    """The user the Guard middleware authenticated (it refuses the request before this otherwise)."""
    found = getattr(request.state, "principal", None)
    if found is None:
        raise AuthenticationFailed("no token given; send `Authorization: Bearer TOKEN`" if is_api(request.url.path)
                                   else "sign in first")
    return found


async def principal_of(request: Request) -> Principal:
    """`current_user` as a dependency (a coroutine: no thread-pool hop)."""
    return current_user(request)


bearer = HTTPBearer(auto_error=False, description="a token made with `faceledger user add NAME --role ROLE`")
"""The API's security scheme in OpenAPI (/docs); the Guard middleware does the checking."""

EngineDep = Annotated[Engine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
Me = Annotated[Principal, Depends(principal_of)]


def check_csrf(request: Request, sent: str | None) -> None:
    """A form posted with the session cookie must carry the session's CSRF token (bearer clients need none)."""
    if getattr(request.state, "auth_via", None) == "cookie" and not csrf_ok(request.state.token, sent):
        raise PermissionDenied("the form's CSRF token is missing or wrong; reload the page and try again")


# -- request helpers -----------------------------------------------------------------------------------

def read_upload(upload: UploadFile) -> tuple[str, bytes]:
    """(file name, bytes) of an uploaded file."""
    upload.file.seek(0)
    return upload.filename or "upload", upload.file.read()


def as_utc(value: date | datetime | None) -> datetime | None:
    """A date or naive datetime from a form or query, as an aware UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- errors at the edge ----------------------------------------------------------------------------------

def wants_html(request: Request) -> bool:
    """A browser asking for a page (not /api/, and Accept names text/html)."""
    return not is_api(request.url.path) and "text/html" in request.headers.get("accept", "")


def error_response(request: Request, status: int, detail: str, slug: str | None = None,
                   headers: dict | None = None, **extra) -> Response:
    """problem+json (RFC 9457) for the API and non-browser clients; the HTML error page for a browser."""
    if wants_html(request):
        return error_page(request, status, detail)
    return problem(status, detail, slug=slug, headers=headers, **extra)


def translate(request: Request, exc: FaceledgerError) -> Response:
    """A FaceledgerError as the response the client understands, with the status docs/api.md lists."""
    status, slug = classify(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="faceledger"'} if status == 401 else None
    return error_response(request, status, str(exc), slug, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the app translated: no traceback ever reaches a client."""

    @app.exception_handler(FaceledgerError)
    async def faceledger_error(request: Request, exc: FaceledgerError):
        return translate(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], "message": e["msg"]}
                    for e in exc.errors()]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(request, 422, detail or "the request is not valid", "validation", errors=problems)

    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: OverflowError):
        return translate(request, OutOfRange(OUT_OF_RANGE))

    @app.exception_handler(DataError)
    async def database_refused_value(request: Request, exc: DataError):
        return translate(request, OutOfRange(OUT_OF_RANGE))

    @app.exception_handler(StatementError)
    async def statement_error(request: Request, exc: StatementError):
        if isinstance(exc.orig, OverflowError | ValueError):  # a value the database driver cannot bind
            return translate(request, OutOfRange(OUT_OF_RANGE))
        return await unexpected(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "unexpected server error; the server log has the details",
                              "internal-error")
