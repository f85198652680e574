"""API v1: JSON routes. Each one authenticates (done by the Guard middleware), calls one engine method in
a worker thread (FastAPI runs plain `def` routes in its thread pool) and returns what the engine returns."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from ..errors import FaceledgerError
from ..policy import DECISIONS
from .deps import MAX_DAYS, MAX_ID, EngineDep, Me, as_utc, bearer, read_upload

router = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer)])


# -- who am I ------------------------------------------------------------------------------------------

@router.get("/me", tags=["users"], summary="The user this token belongs to")
def me(by: Me) -> dict:
    return {"user": by.name, "role": by.role}


# -- search and verify ---------------------------------------------------------------------------------

@router.post("/search", tags=["search"], summary="1:N search of a gallery (open-set, or investigative)")
def search(
    engine: EngineDep, by: Me,
    image: Annotated[UploadFile, File(description="the probe photo")],
    gallery: Annotated[list[str], Form(description="gallery to search; repeat the field to search several "
                                                 "as one (N = every face compared)")],
    purpose: Annotated[str | None, Form(description="why this search is made (required, ledgered)")] = None,
    case: Annotated[str | None, Form(description="case or ticket reference (required, ledgered)")] = None,
    top_k: Annotated[int, Form(ge=1, le=100)] = 10,
    investigative: Annotated[bool, Form()] = False,
    authorisation: Annotated[str | None, Form()] = None,
    largest_face: Annotated[bool, Form(description="probe with the largest of several faces")] = False,
    face: Annotated[int | None, Form(ge=1, description="probe with face N of the photo (numbers as "
                                     "POST /api/v1/faces gives them: 1 is the largest)")] = None,
) -> dict:
    """The body is `faceledger search --json`'s: decision, threshold, candidates with false-match rates,
    and the ledger entry. A missing purpose or case is 422 and is ledgered as a denied attempt."""
    name, data = read_upload(image)
    if face is not None and largest_face:
        raise FaceledgerError("choose one of `face` and `largest_face`")
    on_multiple = f"index:{face}" if face is not None else "largest" if largest_face else "refuse"
    result = engine.search(data, image_name=name, gallery=gallery[0] if len(gallery) == 1 else gallery,
                           purpose=purpose, case=case, top_k=top_k,
                           investigative=investigative, authorisation=authorisation,
                           on_multiple=on_multiple, by=by)
    return result.as_json()


@router.post("/faces", tags=["search"], summary="Every face in a photo with its number, box and quality")
def faces(engine: EngineDep, by: Me, image: Annotated[UploadFile, File(description="a photo")]) -> dict:
    """Nothing is compared, so nothing is ledgered. Pass a face's `number` as `face` to /search to
    search with that face of a photo holding several."""
    name, data = read_upload(image)
    loaded, found = engine.faces(data, name=name, by=by)
    height, width = loaded.rgb.shape[:2]
    return {"image": name, "width": width, "height": height, "sha256": loaded.sha256,
            "faces": [{"number": i, "usable": f.quality.usable, **f.as_dict()} for i, f in enumerate(found, 1)]}


@router.post("/verify", tags=["search"], summary="1:1 verification of two photos")
def verify(
    engine: EngineDep, by: Me,
    image_a: Annotated[UploadFile, File()],
    image_b: Annotated[UploadFile, File()],
    purpose: Annotated[str | None, Form()] = None,
    case: Annotated[str | None, Form()] = None,
    authorisation: Annotated[str | None, Form()] = None,
) -> dict:
    (name_a, a), (name_b, b) = read_upload(image_a), read_upload(image_b)
    return engine.verify(a, b, names=(name_a, name_b), purpose=purpose, case=case, authorisation=authorisation,
                         by=by).as_json()


@router.get("/searches", tags=["review"], summary="Recent searches that returned candidates, newest first")
def recent_searches(
    engine: EngineDep, by: Me, limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(max_length=36, description="the next page: searches older than this one "
                                                                  "(the last ledger_entry of a page)")] = None,
) -> list[dict]:
    return engine.recent_searches(limit=limit, before=before or None, by=by)


@router.get("/searches/{entry}", tags=["review"], summary="A past search: candidates and review status")
def search_record(engine: EngineDep, by: Me, entry: str) -> dict:
    return engine.search_record(entry, by=by)


@router.get("/searches/{entry}/probe", tags=["review"], summary="The probe's face kept for review (JPEG)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}},
                                                410: {"description": "deleted or never kept, and why"}})
def search_probe(engine: EngineDep, by: Me, entry: str) -> Response:
    """Kept until every candidate has a reviewer's decision or the probe's retention ends; after that (or
    where the gallery keeps no probe image) 410 Gone, the detail saying which."""
    return Response(engine.review_probe(entry, by=by), media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.get("/reviews/queue", tags=["review"], summary="Searches awaiting a reviewer's decision, oldest first")
def review_queue(
    engine: EngineDep, by: Me,
    gallery: str | None = None,
    case: Annotated[str | None, Query(max_length=200, description="part of the case reference")] = None,
    older_than_hours: Annotated[float | None, Query(ge=0, le=MAX_DAYS * 24)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict:
    return engine.review_queue(gallery=gallery or None, case=case or None, older_than_hours=older_than_hours,
                               limit=limit, offset=offset, by=by)


class ReviewIn(BaseModel):
    search: str = Field(description="the search's ledger entry id")
    candidate: int | None = Field(None, ge=1, le=1000, description="candidate rank (1 = best)")
    key: str | None = Field(None, max_length=64, description="the candidate's key (blind review: no rank shown)")
    decision: Literal[DECISIONS]  # type: ignore[valid-type]
    note: str | None = None


@router.post("/reviews", tags=["review"], status_code=201, summary="A reviewer's decision on a candidate")
def review(engine: EngineDep, by: Me, body: ReviewIn) -> dict:
    """On a blind-review gallery the answer carries no rank or score until the reviewer has decided on
    every candidate of the search."""
    return engine.review(body.search, candidate=body.candidate, key=body.key, decision=body.decision,
                         note=body.note, by=by)


@router.get("/faces/{face_id}/crop", tags=["galleries"], summary="JPEG of an enrolled face",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def face_crop(engine: EngineDep, by: Me, face_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    return Response(engine.face_crop(face_id, by=by), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=300"})


# -- galleries and enrolment ---------------------------------------------------------------------------

class GalleryIn(BaseModel):
    name: str
    purposes: list[str] = Field(default_factory=list, description="purposes a search may state; none: any")
    allow_investigative: bool = False
    target_fpir: float | None = Field(None, gt=0, lt=1)
    retain_days: int | None = Field(None, ge=1, le=MAX_DAYS)
    probe_retain_days: int | None = Field(None, ge=0, le=MAX_DAYS)
    keep_probe_images: bool = False
    keep_probe_for_review: bool = Field(True, description="keep a face crop of the probe until it is reviewed")
    blind_review: bool = Field(False, description="reviewers decide before they see rank and score")


class GalleryPatch(BaseModel):
    purposes: list[str] | None = Field(None, description="[] accepts any stated purpose")
    allow_investigative: bool | None = None
    target_fpir: float | None = Field(None, gt=0, lt=1)
    retain_days: int | None = Field(None, ge=1, le=MAX_DAYS)
    probe_retain_days: int | None = Field(None, ge=0, le=MAX_DAYS)
    keep_probe_images: bool | None = None
    keep_probe_for_review: bool | None = None
    blind_review: bool | None = None


@router.get("/galleries", tags=["galleries"], summary="Galleries with sizes and policy")
def list_galleries(engine: EngineDep, by: Me) -> list[dict]:
    return engine.list_galleries(by=by)


@router.post("/galleries", tags=["galleries"], status_code=201, summary="Create a gallery and its policy (admin)")
def create_gallery(engine: EngineDep, by: Me, body: GalleryIn) -> dict:
    return engine.create_gallery(body.name, purposes=body.purposes, allow_investigative=body.allow_investigative,
                                 target_fpir=body.target_fpir, retain_days=body.retain_days,
                                 probe_retain_days=body.probe_retain_days,
                                 keep_probe_images=body.keep_probe_images,
                                 keep_probe_for_review=body.keep_probe_for_review, blind_review=body.blind_review,
                                 by=by)


@router.get("/galleries/{name}", tags=["galleries"], summary="One gallery's size and policy")
def gallery_info(engine: EngineDep, by: Me, name: str) -> dict:
    return engine.gallery_info(name, by=by)


@router.patch("/galleries/{name}", tags=["galleries"], summary="Change a gallery's policy (admin; ledgered)")
def update_gallery(engine: EngineDep, by: Me, name: str, body: GalleryPatch) -> dict:
    return engine.update_gallery(name, by=by, **body.model_dump(exclude_unset=True))


@router.get("/galleries/{name}/images", tags=["galleries"], summary="Enrolled images with provenance and expiry")
def gallery_images(engine: EngineDep, by: Me, name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> dict:
    return engine.gallery_images(name, limit=limit, offset=offset, by=by)


@router.post("/galleries/{name}/enroll", tags=["galleries"], summary="Enrol uploaded photos of one subject")
def enroll(
    engine: EngineDep, by: Me, name: str,
    images: Annotated[list[UploadFile], File(description="one or more photos of the subject")],
    subject: Annotated[str | None, Form()] = None,
    source: Annotated[str | None, Form(description="where the images come from (provenance)")] = None,
    legal_basis: Annotated[str | None, Form(description="consent, court order, public record, ...")] = None,
    retain_until: Annotated[date | None, Form(description="delete on this date (YYYY-MM-DD)")] = None,
    on_multiple: Annotated[Literal["refuse", "largest", "all"], Form()] = "refuse",
) -> dict:
    """Same rules as `faceledger enroll`: an image already in the gallery (same sha256) is a duplicate; files
    without a usable face are listed under failures, the rest are enrolled."""
    report = engine.enroll_uploads([read_upload(u) for u in images], gallery=name, subject=subject, source=source,
                                   legal_basis=legal_basis, retain_until=as_utc(retain_until),
                                   on_multiple=on_multiple, by=by)
    return report.as_json()


# -- erasure and retention -----------------------------------------------------------------------------

@router.post("/erase", tags=["retention"], summary="Erase a person, by photo or by subject (admin); a receipt")
def erase(
    engine: EngineDep, by: Me,
    reason: Annotated[str | None, Form(description="e.g. the erasure request's reference (required)")] = None,
    face: Annotated[UploadFile | None, File(description="a photo of the person")] = None,
    subject: Annotated[str | None, Form(description="subject name or id (with gallery)")] = None,
    gallery: Annotated[str | None, Form(description="only this gallery (default: all)")] = None,
) -> dict:
    name, data = read_upload(face) if face is not None else (None, None)
    return engine.erase(reason=reason, face=data, image_name=name, subject=subject, gallery=gallery, by=by)


@router.post("/purge", tags=["retention"], summary="Delete expired records now (admin)")
def purge(engine: EngineDep, by: Me) -> dict:
    return engine.purge(by=by)


# -- audit and reports ---------------------------------------------------------------------------------

@router.get("/audit", tags=["audit"], summary="Ledger entries, oldest first, filtered (admin, auditor)")
def audit_list(
    engine: EngineDep, by: Me,
    user: str | None = None, action: str | None = None, purpose: str | None = None, case: str | None = None,
    since: date | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[dict]:
    return engine.audit_entries(actor=user, action=action, purpose=purpose, case=case, since=as_utc(since),
                                limit=limit, by=by)


@router.get("/audit/verify", tags=["audit"], summary="Walk the ledger's hash chain (admin, auditor)")
def audit_verify(engine: EngineDep, by: Me) -> dict:
    check = engine.audit_verify(by=by)
    return {"ok": check.ok, "entries": check.entries, "problems": check.problems, "head_hash": check.head_hash}


@router.get("/audit/export", tags=["audit"], summary="The ledger with its hashes, as JSON lines or CSV; ledgered",
            response_class=PlainTextResponse)
def audit_export(engine: EngineDep, by: Me, format: Literal["jsonl", "csv"] = "jsonl",
                 since: date | None = None) -> PlainTextResponse:
    text = engine.audit_export(format, since=as_utc(since), by=by)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return PlainTextResponse(text, media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="faceledger-ledger.{format}"'})


@router.get("/reports/transparency", tags=["audit"], summary="Transparency report figures (admin, auditor)")
def transparency(engine: EngineDep, by: Me, since: date | None = None) -> dict:
    return engine.transparency_summary(since=as_utc(since), by=by)
