"""Enrolment in the web app: the enrol page (drop files or a folder, name the subject or take one folder
per subject, give the provenance) and the batch route its script posts to.

The page's script (static/enrol.js) sends the chosen files a few at a time (`BATCH_FILES` per request,
within the body cap), one request after another, so 500 files never make one huge request and each
request finishes in seconds. Each batch is one `Engine.enroll_uploads` call (each file with its
subject) with the signed-in user as `by=`: the engine checks the role (`enroll`: admin, enroller), the provenance and the
retention date, de-duplicates by sha256, and ledgers each stored batch exactly as for the API and the
CLI. The answer is one row per file: enrolled, duplicate or refused with the reason in plain words.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import FaceledgerError, PermissionDenied
from ..policy import PERMISSIONS
from ..texts import clean_text
from .deps import EngineDep, Me, as_utc, check_csrf, read_upload
from .pages import render
from .problems import classify
from .wording import plain_words

router = APIRouter(include_in_schema=False)

BATCH_FILES = 10
"""Files the page sends per request (fewer when they would pass the body cap)."""
MAX_BATCH_FILES = 50
"""A request with more files than this is refused whole: the page never sends one."""
MODES = ("subject", "folders")
ON_MULTIPLE = {"refuse": "refuse", "largest": "largest"}


@router.get("/galleries/{name}/enrol")
def enrol_page(request: Request, engine: EngineDep, by: Me, name: str) -> HTMLResponse:
    info = engine.gallery_info(name, by=by)
    if by.role not in PERMISSIONS["enroll"]:
        raise PermissionDenied(f"enrolling needs the role {' or '.join(sorted(PERMISSIONS['enroll']))}; "
                               f"you are signed in as {by.role}")
    settings = engine.settings
    today = datetime.now(UTC).date()
    days = info["retain_days"]
    return render(request, "enrol.html", info=info, batch_files=BATCH_FILES,
                  max_body=settings.max_upload_bytes, max_image=settings.max_image_bytes, latest=days,
                  first_date=(today + timedelta(days=1)).isoformat(),
                  last_date=(today + timedelta(days=days)).isoformat() if days else "")


@router.post("/galleries/{name}/enrol")
def enrol_batch(
    request: Request, engine: EngineDep, by: Me, name: str,
    images: Annotated[list[UploadFile], File()],
    paths: Annotated[list[str] | None, Form()] = None,
    mode: Annotated[str, Form()] = "subject",
    subject: Annotated[str | None, Form()] = None,
    source: Annotated[str | None, Form()] = None,
    legal_basis: Annotated[str | None, Form()] = None,
    retain_until: Annotated[str | None, Form()] = None,
    on_multiple: Annotated[str, Form()] = "refuse",
    csrf: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """One batch of the page's upload: {"results": [{file, subject, status, faces, reason}], "ledger_entries"}.
    A problem with the whole batch (role, provenance, retention date, a bad field) is {"detail"} with its
    status, in the web app's words; nothing of the batch is stored then."""
    check_csrf(request, csrf)
    try:
        if mode not in MODES:
            raise FaceledgerError(f"unknown mode {mode!r}: one subject, or one folder per subject")
        if len(images) > MAX_BATCH_FILES:
            raise FaceledgerError(f"send at most {MAX_BATCH_FILES} files per request (the page sends "
                                  f"{BATCH_FILES})")
        until = _date(retain_until)
        names = list(paths or [])
        uploads = [read_upload(upload) for upload in images]
        files = [(names[i] if i < len(names) and names[i] else filename, data)
                 for i, (filename, data) in enumerate(uploads)]
        results, named = _named(files, mode, subject)
        report = engine.enroll_uploads(named, gallery=name, subject=subject if mode == "subject" else None,
                                       source=source,
                                       legal_basis=legal_basis, retain_until=until,
                                       on_multiple=ON_MULTIPLE.get(on_multiple, "refuse"), by=by)
        results += [{"file": o.path.removeprefix("upload:"), "subject": o.subject or "",
                     "status": "refused" if o.status == "failed" else o.status, "faces": o.faces,
                     "reason": reason(o.error, o.path) if o.error else ""} for o in report.outcomes]
    except FaceledgerError as exc:
        return JSONResponse({"detail": plain_words(str(exc))}, status_code=classify(exc)[0])
    return JSONResponse({"results": results, "ledger_entries": report.ledger_entries})


def _date(text: str | None):
    if not text or not text.strip():
        return None
    try:
        return as_utc(date.fromisoformat(text.strip()))
    except ValueError:
        raise FaceledgerError(f"Keep until must be a date (YYYY-MM-DD), not {text.strip()[:40]!r}") from None


def _named(files: list[tuple[str, bytes]], mode: str, subject: str | None
           ) -> tuple[list[dict], list[tuple[str, bytes, str | None]]]:
    """(rows of files refused before enrolment, [(name, bytes, subject)] to enrol) for the chosen mode."""
    refused: list[dict] = []
    named: list[tuple[str, bytes, str | None]] = []
    for path, data in files:
        if mode == "subject":
            named.append((path, data, subject))
            continue
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if len(parts) < 2:
            refused.append({"file": path, "subject": "", "status": "refused", "faces": 0,
                            "reason": "not in a folder: with one folder per subject, each photo must be "
                                      "inside its person's folder"})
            continue
        try:
            who = clean_text(parts[-2], "the folder's name (the subject's name)", "--subject")
        except FaceledgerError as exc:
            refused.append({"file": path, "subject": parts[-2], "status": "refused", "faces": 0,
                            "reason": plain_words(str(exc))})
            continue
        named.append((path, data, who))
    return refused, named


KINDS = (
    ("not an image", "not an image"), ("the file is empty", "not an image"), ("corrupt", "not an image"),
    ("is not supported", "not an image"), ("over the limit", "too large"), ("more memory", "too large"),
    ("none is usable", "face not usable"), ("no face found", "no face"), ("is not usable", "face not usable"),
    ("faces of similar size", "several faces"),
)


def reason(error: str, name: str) -> str:
    """Why a file was refused, for the results table: a short kind, then the engine's detail in plain
    words (without the file name, which the table shows beside it)."""
    detail = error.removeprefix(f"{name}: ")
    kind = next((k for needle, k in KINDS if needle in detail), "refused")
    if kind == "several faces":
        count = detail.split(" ", 1)[0]
        detail = f"{count} faces of similar size; enrol a photo of this person alone, or choose " \
                 "\"enrol the largest face\""
    return f"{kind}: {plain_words(detail)}" if not detail.startswith(kind) else plain_words(detail)
