"""Review in the web app: the review queue (`/reviews`: searches awaiting a decision, filtered by gallery,
case and age, oldest first, as cards), a search's page with the probe kept for review beside each
candidate (or, plainly, why it is gone), blind review, the decision form, and the evidence package's
download (a POST form: the export is ledgered). Every decision is one
engine call with the signed-in user as `by=`; the engine checks the role and ledgers it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import FaceledgerError
from ..policy import DECISIONS
from .deps import MAX_DAYS, MAX_ID, EngineDep, Me, check_csrf
from .pages import may, render
from .routes_evidence import Entry, evidence_download

router = APIRouter(include_in_schema=False)
PAGE = 20
SEARCHES_PAGE = 100
UNITS = {"hours": 1, "days": 24}


@router.get("/reviews")
def queue(
    request: Request, engine: EngineDep, by: Me,
    gallery: str = "",
    case: Annotated[str, Query(max_length=200)] = "",
    older_than: Annotated[str, Query(max_length=20, description="empty: any age")] = "",
    unit: Literal["hours", "days"] = "hours",
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> HTMLResponse:
    """Searches awaiting review, oldest first; the filters stay in the form and in the page links."""
    hours = _hours(older_than, unit)
    page = engine.review_queue(gallery=gallery or None, case=case or None, older_than_hours=hours,
                               limit=PAGE, offset=offset, by=by)
    filters = {key: value for key, value in (("gallery", gallery), ("case", case),
               ("older_than", older_than.strip()), ("unit", unit)) if value}
    return render(request, "reviews.html", page=page, filters=filters,
                  galleries=[g["name"] for g in engine.list_galleries(by=by)])


def _hours(older_than: str, unit: str) -> float | None:
    """The age filter as hours (an empty field: any age); a bad value is a plain error."""
    if not older_than.strip():
        return None
    try:
        value = float(older_than)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_DAYS:
        raise FaceledgerError(f"the age must be a number of {unit} from 0 to {MAX_DAYS}, not {older_than.strip()!r}")
    return value * UNITS[unit] or None


@router.get("/searches")
def searches(request: Request, engine: EngineDep, by: Me,
             before: Annotated[str, Query(max_length=36, description="searches older than this one")] = ""):
    """Recent searches with candidates, a page at a time (newest first; "Older" goes on from the page's
    last one); a reviewer's way in is the queue."""
    if may(by, "review"):
        return RedirectResponse("/reviews", 303)
    found = engine.recent_searches(limit=SEARCHES_PAGE + 1, before=before or None, by=by)
    older = found[SEARCHES_PAGE - 1]["ledger_entry"] if len(found) > SEARCHES_PAGE else None
    return render(request, "searches.html", searches=found[:SEARCHES_PAGE], older=older, paged=bool(before))


@router.get("/searches/{entry}")
def search_record(request: Request, engine: EngineDep, by: Me, entry: str) -> HTMLResponse:
    """A past search for its reviewer: the probe kept for review beside each candidate's face, or why it is
    not there; on a blind-review gallery, no rank or score until the reviewer has decided on each one."""
    record = engine.search_record(entry, by=by)
    kept = record["probe_image"]["kept"] and may(by, "face.view")
    return render(request, "result.html", record=record, fresh=False, decisions=DECISIONS,
                  probe=f"/api/v1/searches/{entry}/probe" if kept else None)


@router.post("/searches/{entry}/review")
def review(
    request: Request, engine: EngineDep, by: Me, entry: str,
    decision: Annotated[str, Form()],
    candidate: Annotated[int | None, Form(ge=1, le=1000)] = None,
    key: Annotated[str | None, Form(max_length=64)] = None,
    note: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
):
    check_csrf(request, csrf)
    if candidate is None and not key:
        raise FaceledgerError("choose a candidate to review")
    done = engine.review(entry, candidate=candidate, key=key or None, decision=decision, note=note or None, by=by)
    anchor = f"candidate-{done['candidate']}" if done["candidate"] else f"candidate-{done['key']}"
    return RedirectResponse(f"/searches/{entry}#{anchor}", 303)


@router.post("/searches/{entry}/evidence")
def evidence(request: Request, engine: EngineDep, by: Me, entry: Entry,
             csrf: Annotated[str | None, Form(max_length=64)] = None):
    """The result page's "Download evidence package" button: the package as an attachment (ledgered)."""
    check_csrf(request, csrf)
    return evidence_download(engine.export_evidence(entry, by=by))
