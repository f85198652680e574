"""The web app: server-rendered pages over the same engine calls as the JSON API.

Sign-in and sign-out live in signin.py (a server-side session id in an HttpOnly, SameSite=Strict
cookie); every form post also carries the session's CSRF token in a hidden field (checked by
`deps.check_csrf`), so both defences hold. The engine, the signed-in user and error pages come from the
dependency layer shared with the JSON API (deps.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from ..engine import Engine
from ..enrollment import face_crop_jpeg, load_with
from ..errors import (
    AuthenticationFailed,
    FaceledgerError,
    FaceNotChosen,
    ImageError,
    MultipleFaces,
    NoFaceFound,
    PermissionDenied,
)
from ..policy import DECISIONS
from . import web_admin, web_people, web_review
from .deps import EngineDep, Me, as_utc, check_csrf, read_upload
from .pages import TEMPLATES, render
from .problems import classify
from .web_probe import data_url, decode_upload, encode_upload, overview
from .wording import plain_words

router = APIRouter(include_in_schema=False)
TEMPLATES.env.filters["plain"] = plain_words  # error pages in the web app's words (wording.py)


def probe_view(data: bytes, name: str, box, settings) -> str | None:
    """The probe's face (or the whole probe, small) as a data URL: shown in this response, never stored."""
    try:
        image = load_with(settings, data, name=name)
    except FaceledgerError:
        return None
    return data_url(face_crop_jpeg(image, box or (0, 0, image.width, image.height), max_side=320 if box else 480))


# -- search and results --------------------------------------------------------------------------------

def _search_page(request: Request, engine: Engine, by, *, form: dict, error: str | None = None,
                 photo: str | None = None, status: int = 200) -> HTMLResponse:
    return render(request, "search.html", status=status, galleries=engine.list_galleries(by=by), form=form,
                  error=error, photo=photo)


@router.get("/")
def home(request: Request, engine: EngineDep, by: Me, gallery: str | None = None, purpose: str | None = None,
         case: str | None = None) -> HTMLResponse:
    """The search form; `gallery`, `purpose` and `case` in the query fill it in (the result page's link)."""
    return _search_page(request, engine, by, form={"gallery": gallery, "purpose": purpose, "case": case})


@router.post("/search")
def search(
    request: Request, engine: EngineDep, by: Me,
    gallery: Annotated[str, Form()],
    image: Annotated[UploadFile | None, File()] = None,
    image_data: Annotated[str | None, Form()] = None,
    image_name: Annotated[str | None, Form()] = None,
    face: Annotated[int | None, Form(ge=1)] = None,
    purpose: Annotated[str | None, Form()] = None,
    case: Annotated[str | None, Form()] = None,
    top_k: Annotated[int, Form(ge=1, le=100)] = 10,
    investigative: Annotated[bool, Form()] = False,
    authorisation: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Search with the chosen photo, or with the photo a previous page carried back (`image_data`: after an
    error, or with the face chosen by its number in a photo of several faces)."""
    check_csrf(request, csrf)
    form = {"gallery": gallery, "purpose": purpose, "case": case, "authorisation": authorisation,
            "top_k": top_k, "investigative": investigative}
    if image is not None and image.filename:
        name, data = read_upload(image)
    elif image_data:
        name, data = image_name or "upload", decode_upload(image_data)
    else:
        return _search_page(request, engine, by, form=form, error="choose a photo to search with", status=422)
    try:
        result = engine.search(data, image_name=name, gallery=gallery, purpose=purpose, case=case, top_k=top_k,
                               investigative=investigative, authorisation=authorisation or None,
                               on_multiple=f"index:{face}" if face else "refuse", by=by)
    except MultipleFaces:
        return render(request, "choose_face.html", form=form, photo=encode_upload(data), name=name,
                      view=overview(engine, data, name, by=by))
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        keep = not isinstance(exc, (ImageError, NoFaceFound, FaceNotChosen))
        return _search_page(request, engine, by, form=form, error=plain_words(str(exc)), status=classify(exc)[0],
                            photo={"data": encode_upload(data), "name": name,
                                   "view": probe_view(data, name, None, engine.settings)} if keep else None)
    record = engine.search_record(result.ledger_entry, by=by)
    return render(request, "result.html", record=record, fresh=True, form=form,
                  probe=probe_view(data, name, result.probe_box, engine.settings), decisions=DECISIONS)


# /searches, /searches/{entry} and the review form: web_review.py (with the review queue, /reviews)


# -- verify ----------------------------------------------------------------------------------------------

@router.get("/verify")
def verify_form(request: Request, by: Me) -> HTMLResponse:
    return render(request, "verify.html", result=None, form={}, error=None)


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
    form = {"purpose": purpose, "case": case, "authorisation": authorisation}
    (name_a, a), (name_b, b) = read_upload(image_a), read_upload(image_b)
    try:
        result = engine.verify(a, b, names=(name_a, name_b), purpose=purpose, case=case,
                               authorisation=authorisation or None, by=by)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        return render(request, "verify.html", status=classify(exc)[0], result=None, form=form,
                      error=plain_words(str(exc)))
    views = [probe_view(data, name, None, engine.settings) for name, data in ((name_a, a), (name_b, b))]
    return render(request, "verify.html", result=result.as_json(), views=views, form=form, error=None)


# -- galleries, audit, transparency ------------------------------------------------------------------------

@router.get("/galleries")
def galleries(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    return render(request, "galleries.html", galleries=engine.list_galleries(by=by))


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


router.include_router(web_admin.router)
router.include_router(web_people.router)
router.include_router(web_review.router)
