"""The Video page of the web app: upload a video for search (a background job), watch its progress, read
the timeline of its face tracks, open a matched track's best shots and candidates (each matched track is a
reviewable search: its candidates are reviewed on the ordinary result page), and make a redacted copy.

The pages need no script: a job's page refreshes itself (a meta refresh) until the job has finished, and
the timeline is drawn with SVG attributes (the CSP forbids inline styles). Forms carry the session's CSRF
token as every other form does; the engine checks roles and ledgers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from ..engine import Engine
from ..errors import AuthenticationFailed, FaceledgerError, PermissionDenied
from ..policy import Principal
from .deps import EngineDep, Me, check_csrf
from .pages import render
from .problems import classify
from .wording import plain_words

router = APIRouter(include_in_schema=False)

SAMPLING = (100, 200, 500, 1000)
"""The sampling steps (ms) the form offers; 200 ms is the default of `faceledger video search`."""
REFRESH_S = 2


def _form_page(request: Request, engine: Engine, by: Principal, *, form: dict, error: str | None = None,
               status: int = 200) -> HTMLResponse:
    return render(request, "video.html", status=status, galleries=engine.list_galleries(by=by), form=form,
                  error=error, sampling=SAMPLING, jobs=engine.list_video_jobs(limit=20, by=by))


@router.get("/video")
def video_page(request: Request, engine: EngineDep, by: Me, gallery: str | None = None) -> HTMLResponse:
    return _form_page(request, engine, by, form={"gallery": gallery, "every_ms": 200})


@router.post("/video")
def video_submit(
    request: Request, engine: EngineDep, by: Me,
    video: Annotated[UploadFile | None, File()] = None,
    gallery: Annotated[str | None, Form()] = None,
    purpose: Annotated[str | None, Form()] = None,
    case: Annotated[str | None, Form()] = None,
    authorisation: Annotated[str | None, Form()] = None,
    every_ms: Annotated[float, Form(ge=20, le=10_000)] = 200,
    investigative: Annotated[bool, Form()] = False,
    csrf: Annotated[str | None, Form()] = None,
):
    check_csrf(request, csrf)
    form = {"gallery": gallery, "purpose": purpose, "case": case, "authorisation": authorisation,
            "every_ms": every_ms, "investigative": investigative}
    if video is None or not video.filename:
        return _form_page(request, engine, by, form=form, error="choose a video to search", status=422)
    try:
        video.file.seek(0)
        job = engine.submit_video_search(video.file, name=video.filename, gallery=gallery or "", purpose=purpose,
                                         case=case, every_ms=every_ms, investigative=investigative,
                                         authorisation=authorisation or None, by=by)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        return _form_page(request, engine, by, form=form, error=plain_words(str(exc)), status=classify(exc)[0])
    return RedirectResponse(f"/video/jobs/{job['id']}", 303)


@router.get("/video/jobs/{job_id}")
def video_job(request: Request, engine: EngineDep, by: Me, job_id: str, error: str | None = None) -> HTMLResponse:
    job = engine.video_job(job_id, by=by)
    return render(request, "video_job.html", job=job, timeline=timeline(job), refresh=REFRESH_S, error=error)


@router.post("/video/jobs/{job_id}/redact")
def video_redact(
    request: Request, engine: EngineDep, by: Me, job_id: str,
    video: Annotated[UploadFile | None, File()] = None,
    keep_track: Annotated[list[int] | None, Form()] = None,
    csrf: Annotated[str | None, Form()] = None,
):
    check_csrf(request, csrf)
    job = engine.video_job(job_id, by=by)
    if video is None or not video.filename:
        return render(request, "video_job.html", status=422, job=job, timeline=timeline(job), refresh=REFRESH_S,
                      error="choose the same video again: the server deleted its copy when the search ended")
    try:
        video.file.seek(0)
        redaction = engine.submit_video_redact(video.file, name=video.filename, search_job=job_id,
                                               keep_tracks=tuple(keep_track or ()), by=by)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        return render(request, "video_job.html", status=classify(exc)[0], job=job, timeline=timeline(job),
                      refresh=REFRESH_S, error=plain_words(str(exc)))
    return RedirectResponse(f"/video/jobs/{redaction['id']}", 303)


def timeline(job: dict) -> dict | None:
    """The tracks of a finished search laid out over the video's duration (per mille, for SVG bars):
    matched tracks with their shots and candidates, bystander tracks with their time range only."""
    result = job.get("result") or {}
    if job["kind"] != "search" or "tracks" not in result:
        return None
    tracks = result["tracks"]
    duration = (result.get("video") or {}).get("duration_s") or max((t["last_s"] for t in tracks), default=0) or 1.0
    rows = []
    for t in tracks:
        start = min(1000, round(1000 * t["first_s"] / duration))
        width = max(6, min(1000 - start, round(1000 * (t["last_s"] - t["first_s"]) / duration)))
        rows.append({**t, "x": start, "width": width, "matched": t["status"] == "candidates",
                     "shot_count": len(t.get("shots_jpeg") or []) or (1 if t.get("thumbnail_jpeg") else 0)})
    matched = [r for r in rows if r["matched"]]
    return {"duration": duration, "rows": rows, "matched": matched,
            "bystanders": [r for r in rows if not r["matched"]], "ticks": _ticks(duration)}


def _ticks(duration: float) -> list[dict]:
    """Up to six round time marks under the timeline."""
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if duration / s <= 6), 3600)
    marks, t = [], 0.0
    while t <= duration + 1e-9:
        minutes, seconds = divmod(int(t), 60)
        marks.append({"x": round(1000 * t / duration), "label": f"{minutes}:{seconds:02d}"})
        t += step
    return marks
