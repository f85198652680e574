"""The people of a gallery in the web app: subjects (paged, found by name) with their faces, and one
subject's page to rename it, merge it into another, move a face to another subject or remove a face.
Each change is one engine call with the signed-in user as `by=`: the engine checks the role
(`subject.edit`: admin, enroller) and ledgers it. Bad input re-renders the page with the error in plain
words and the values typed kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..engine import Engine
from ..errors import AuthenticationFailed, FaceledgerError, NotFound, PermissionDenied
from ..policy import Principal
from . import web_enrol, web_galleries
from .deps import EngineDep, Me, check_csrf
from .pages import render
from .problems import classify
from .wording import plain_words

router = APIRouter(include_in_schema=False)
# The gallery's other pages, registered with these (web.py includes this router): enrolment
# (/galleries/{name}/enrol) and the policy forms (/admin/galleries/new, /galleries/{name}/policy).
router.include_router(web_galleries.router)
router.include_router(web_enrol.router)
PAGE = 48


@router.get("/galleries/{name}")
def people(request: Request, engine: EngineDep, by: Me, name: str, q: str = "", offset: int = 0) -> HTMLResponse:
    info = engine.gallery_info(name, by=by)
    page = engine.list_subjects(name, query=q or None, limit=PAGE, offset=max(0, offset), by=by)
    return render(request, "gallery.html", info=info, page=page)


def _subject_page(request: Request, engine: Engine, by: Principal, gallery: str, subject_id: int, *,
                  error: str | None = None, status: int = 200, form: dict | None = None) -> HTMLResponse:
    return render(request, "subject.html", status=status, subject=engine.subject(gallery, subject_id, by=by),
                  error=error, form=form or {})


@router.get("/galleries/{name}/people/{subject_id}")
def subject(request: Request, engine: EngineDep, by: Me, name: str, subject_id: int) -> HTMLResponse:
    return _subject_page(request, engine, by, name, subject_id)


def _named(engine: Engine, gallery: str, name: str, by: Principal) -> int:
    """The id of the gallery's subject called `name` (what a person types), or NotFound."""
    found = engine.list_subjects(gallery, query=name, exact=True, limit=1, by=by)["subjects"]
    if not found:
        raise NotFound(f"gallery {gallery!r} has no subject called {name.strip()!r}")
    return found[0]["subject_id"]


def _change(request: Request, engine: Engine, by: Principal, gallery: str, back: int, form: dict, act):
    """Run one change; on bad input, the subject's page again with the error and the values typed."""
    try:
        target = act()
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        return _subject_page(request, engine, by, gallery, back, error=plain_words(str(exc)),
                             status=classify(exc)[0], form=form)
    return RedirectResponse(f"/galleries/{gallery}/people/{target}", 303)


@router.post("/galleries/{name}/people/{subject_id}/rename")
def rename(request: Request, engine: EngineDep, by: Me, name: str, subject_id: int,
           new_name: Annotated[str, Form()], csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    return _change(request, engine, by, name, subject_id, {"new_name": new_name}, lambda: engine.rename_subject(
        name, subject_id, new_name, by=by)["subject_id"])


@router.post("/galleries/{name}/people/{subject_id}/merge")
def merge(request: Request, engine: EngineDep, by: Me, name: str, subject_id: int,
          into: Annotated[str, Form()], csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    return _change(request, engine, by, name, subject_id, {"into": into}, lambda: engine.merge_subjects(
        name, subject_id, _named(engine, name, into, by), by=by)["subject_id"])


@router.post("/galleries/{name}/faces/{face_id}/move")
def move(request: Request, engine: EngineDep, by: Me, name: str, face_id: int, back: Annotated[int, Form()],
         to: Annotated[str, Form()], csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    _change_form = {"face": face_id, "to": to}
    return _change(request, engine, by, name, back, _change_form, lambda: (
        engine.move_face(name, face_id, _named(engine, name, to, by), by=by), back)[1])


@router.post("/galleries/{name}/faces/{face_id}/remove")
def remove(request: Request, engine: EngineDep, by: Me, name: str, face_id: int, back: Annotated[int, Form()],
           reason: Annotated[str | None, Form()] = None, csrf: Annotated[str | None, Form()] = None):
    check_csrf(request, csrf)
    return _change(request, engine, by, name, back, {"face": face_id, "reason": reason}, lambda: engine.remove_face(
        name, face_id, reason=reason, by=by)["subject_id"])
