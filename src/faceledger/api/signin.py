"""Sign-in and sign-out of the web app: server-side sessions (sessions_store.py) and the login CSRF token.

The sign-in form is protected by a double-submit token: GET /login sets a random pre-session cookie
(HttpOnly, SameSite=Strict, only sent to /login) and the form carries a token derived from it, which
POST /login checks. A page of another site can therefore not sign a browser in as someone else (login
CSRF). A successful sign-in sets the session cookie (a random session id, never the API token) and
drops the pre-session cookie; sign-out deletes the session row, so the cookie is dead even if copied.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ..errors import AuthenticationFailed
from .deps import check_csrf, current_user
from .pages import render
from .session import COOKIE, LOGIN_COOKIE, csrf_ok, csrf_token

router = APIRouter(include_in_schema=False)

LOGIN_FORM_SECONDS = 3600
EXPIRED_FORM = ("the sign-in form has expired or did not come from this site (its security token is missing or "
                "wrong); try again")


def _secure(request: Request) -> bool:
    """Secure cookies when the settings say so (behind a TLS proxy) or the request itself came over https."""
    return bool(request.app.state.settings.cookie_secure) or request.url.scheme == "https"


def _safe_next(target: str | None) -> str:
    target = target or "/"
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def login_page(request: Request, *, status: int = 200, next: str = "/", error: str | None = None) -> HTMLResponse:
    """The sign-in form with a fresh (or the current) pre-session cookie and the token derived from it."""
    pre_session = request.cookies.get(LOGIN_COOKIE) if status == 200 else None
    pre_session = pre_session or secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, next=_safe_next(next), error=error,
                      login_csrf=csrf_token(pre_session))
    response.set_cookie(LOGIN_COOKIE, pre_session, httponly=True, samesite="strict", path="/login",
                        secure=_secure(request), max_age=LOGIN_FORM_SECONDS)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return login_page(request, next=next)


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=512)],
                next: Annotated[str, Form(max_length=2000)] = "/",
                csrf: Annotated[str | None, Form(max_length=200)] = None):
    if not csrf_ok(request.cookies.get(LOGIN_COOKIE), csrf):
        return login_page(request, status=403, next=next, error=EXPIRED_FORM)
    try:
        signed_in = await run_in_threadpool(request.app.state.web_sessions.open, token)
    except AuthenticationFailed as exc:
        return login_page(request, status=401, next=next, error=str(exc))
    response = RedirectResponse(_safe_next(next), 303)
    lifetime = int(request.app.state.web_sessions.lifetime.total_seconds())
    response.set_cookie(COOKIE, signed_in.session_id, httponly=True, samesite="strict", path="/",
                        secure=_secure(request), max_age=lifetime)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    if getattr(request.state, "auth_via", None) == "cookie":
        await run_in_threadpool(request.app.state.web_sessions.close, request.state.token, current_user(request))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response
