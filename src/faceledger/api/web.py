"""The web app: server-rendered pages over the same engine calls as the JSON API.

Sign-in stores the token in an HttpOnly, SameSite=Strict cookie; every form post also carries the
session's CSRF token in a hidden field (checked by `deps.check_csrf`), so both defences hold. The engine,
the signed-in user and error pages come from the dependency layer shared with the JSON API (deps.py).
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from ..enrollment import face_crop_jpeg, load_with
from ..errors import AuthenticationFailed, FaceledgerError
from ..policy import DECISIONS
from .deps import EngineDep, Me, as_utc, check_csrf, read_upload
from .pages import render
from .session import COOKIE

router = APIRouter(include_in_schema=False)


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def probe_view(data: bytes, name: str, box, settings) -> str | None:
    """The probe's face (or the whole probe, small) as a data URL: shown in this response, never stored."""
    try:
        image = load_with(settings, data, name=name)
    except FaceledgerError:
        return None
    return data_url(face_crop_jpeg(image, box or (0, 0, image.width, image.height), max_side=320 if box else 480))


# -- sign in -------------------------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=next if next.startswith("/") else "/", error=None)


@router.post("/login")
def login(request: Request, engine: EngineDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"):
    try:
        engine.authenticate(token)
    except AuthenticationFailed as exc:
        return render(request, "login.html", status=401, next=next, error=str(exc))
    response = RedirectResponse(next if next.startswith("/") and not next.startswith("//") else "/", 303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", path="/",
                        secure=request.app.state.settings.cookie_secure, max_age=12 * 3600)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- search and results --------------------------------------------------------------------------------

@router.get("/")
def home(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    galleries = engine.list_galleries(by=by)
    return render(request, "search.html", galleries=galleries)


@router.post("/search")
def search(
    request: Request, engine: EngineDep, by: Me,
    image: Annotated[UploadFile, File()],
    gallery: Annotated[str, Form()],
    purpose: Annotated[str | None, Form()] = None,
    case: Annotated[str | None, Form()] = None,
    top_k: Annotated[int, Form(ge=1, le=100)] = 10,
    investigative: Annotated[bool, Form()] = False,
    authorisation: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    check_csrf(request, csrf)
    name, data = read_upload(image)
    result = engine.search(data, image_name=name, gallery=gallery, purpose=purpose, case=case, top_k=top_k,
                           investigative=investigative, authorisation=authorisation or None, by=by)
    record = engine.search_record(result.ledger_entry, by=by)
    return render(request, "result.html", record=record, fresh=True,
                  probe=probe_view(data, name, result.probe_box, engine.settings), decisions=DECISIONS)


@router.get("/searches")
def searches(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    return render(request, "searches.html", searches=engine.recent_searches(limit=100, by=by))


@router.get("/searches/{entry}")
def search_record(request: Request, engine: EngineDep, by: Me, entry: str) -> HTMLResponse:
    return render(request, "result.html", record=engine.search_record(entry, by=by), fresh=False, probe=None,
                  decisions=DECISIONS)


@router.post("/searches/{entry}/review")
def review(
    request: Request, engine: EngineDep, by: Me, entry: str,
    candidate: Annotated[int, Form(ge=1)],
    decision: Annotated[str, Form()],
    note: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
):
    check_csrf(request, csrf)
    engine.review(entry, candidate=candidate, decision=decision, note=note or None, by=by)
    return RedirectResponse(f"/searches/{entry}#candidate-{candidate}", 303)


# -- verify ----------------------------------------------------------------------------------------------

@router.get("/verify")
def verify_form(request: Request, by: Me) -> HTMLResponse:
    return render(request, "verify.html", result=None)


@router.post("/verify")
def verify(
    request: Request, engine: EngineDep, by: Me,
    image_a: Annotated[UploadFile, File()],
    image_b: Annotated[UploadFile, File()],
    purpose: Annotated[str | None, Form()] = None,
    case: Annotated[str | None, Form()] = None,
    authorisation: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    check_csrf(request, csrf)
    (name_a, a), (name_b, b) = read_upload(image_a), read_upload(image_b)
    result = engine.verify(a, b, names=(name_a, name_b), purpose=purpose, case=case,
                           authorisation=authorisation or None, by=by)
    views = [probe_view(data, name, None, engine.settings) for name, data in ((name_a, a), (name_b, b))]
    return render(request, "verify.html", result=result.as_json(), views=views, purpose=purpose, case=case)


# -- galleries, audit, transparency ------------------------------------------------------------------------

@router.get("/galleries")
def galleries(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    return render(request, "galleries.html", galleries=engine.list_galleries(by=by))


@router.get("/galleries/{name}")
def gallery(request: Request, engine: EngineDep, by: Me, name: str, offset: int = 0) -> HTMLResponse:
    return render(request, "gallery.html", info=engine.gallery_info(name, by=by),
                  page=engine.gallery_images(name, limit=60, offset=max(0, offset), by=by))


@router.get("/audit")
def audit(request: Request, engine: EngineDep, by: Me, user: str | None = None, action: str | None = None,
          purpose: str | None = None, case: str | None = None, since: date | None = None) -> HTMLResponse:
    filters = {"user": user or None, "action": action or None, "purpose": purpose or None, "case": case or None}
    entries = engine.audit_entries(actor=filters["user"], action=filters["action"], purpose=filters["purpose"],
                                   case=filters["case"], since=as_utc(since), limit=200, by=by)
    return render(request, "audit.html", entries=entries[::-1], check=engine.audit_verify(by=by),
                  filters=filters, since=since)


@router.get("/transparency")
def transparency(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    return render(request, "transparency.html", summary=engine.transparency_summary(by=by))
