"""Users in the web app (admins): who has which role, add a user (the token is shown once), disable or
enable one, give one a new token. Each is the engine's call with the signed-in admin as `by=`, so the
role check and the ledger entry are the engine's, as for `faceledger user ...`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import AuthenticationFailed, FaceledgerError, PermissionDenied
from ..policy import ROLES
from .deps import EngineDep, Me, check_csrf
from .pages import render
from .problems import classify
from .wording import plain_words

router = APIRouter(include_in_schema=False)

ROLE_MEANING = {
    "admin": "everything: users, galleries, search, erasure, audit",
    "enroller": "enrols photos and edits the people of a gallery",
    "analyst": "searches and verifies",
    "reviewer": "confirms or rejects candidates (never their own searches)",
    "auditor": "reads the audit log and the transparency report",
}


def _page(request: Request, engine, by, *, status: int = 200, error: str | None = None,
          issued: dict | None = None, form: dict | None = None) -> HTMLResponse:
    users = engine.list_users(by=by)
    response = render(request, "users.html", status=status, users=users, roles=ROLES, meaning=ROLE_MEANING,
                      error=error, issued=issued, form=form or {})
    if issued:
        response.headers["Cache-Control"] = "no-store"  # the token is on this page, once
    return response


def _refused(exc: FaceledgerError) -> bool:
    return isinstance(exc, (AuthenticationFailed, PermissionDenied))


@router.get("/admin/users")
def users(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    return _page(request, engine, by)


@router.post("/admin/users")
def add_user(request: Request, engine: EngineDep, by: Me, name: Annotated[str, Form()],
             role: Annotated[str, Form()], csrf: Annotated[str | None, Form()] = None) -> HTMLResponse:
    check_csrf(request, csrf)
    try:
        user, token = engine.add_user(name, role=role, by=by)
    except FaceledgerError as exc:
        if _refused(exc):
            raise
        return _page(request, engine, by, status=classify(exc)[0], error=plain_words(str(exc)),
                     form={"name": name, "role": role})
    return _page(request, engine, by, issued={**user, "token": token, "new": True})


@router.post("/admin/users/{name}/token")
def rotate(request: Request, engine: EngineDep, by: Me, name: str,
           csrf: Annotated[str | None, Form()] = None) -> HTMLResponse:
    check_csrf(request, csrf)
    try:
        user, token = engine.rotate_token(name, by=by)
    except FaceledgerError as exc:
        if _refused(exc):
            raise
        return _page(request, engine, by, status=classify(exc)[0], error=plain_words(str(exc)))
    return _page(request, engine, by, issued={**user, "token": token, "new": False})


@router.post("/admin/users/{name}/{state}")
def set_disabled(request: Request, engine: EngineDep, by: Me, name: str, state: str,
                 csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    if state not in ("disable", "enable"):
        raise FaceledgerError(f"unknown change {state!r}: disable or enable")
    try:
        engine.set_user_disabled(name, state == "disable", by=by)
    except FaceledgerError as exc:
        if _refused(exc):
            raise
        return _page(request, engine, by, status=classify(exc)[0], error=plain_words(str(exc)))
    return RedirectResponse(f"/admin/users#user-{name}", 303)
