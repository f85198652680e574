"""API v1: video search and redaction as background jobs (services/video_jobs.py).

A video upload is a multipart body like a photo's, but capped at FACELEDGER_VIDEO_MAX_BYTES instead of
the image cap (the Guard middleware). Starlette spools the file part to a temporary file past 1 MB; the
job copies it to the data directory in chunks, so no video is ever held in memory. The answer is 202
with the job's URL; the job's JSON gives its state and progress, then the result or a plain error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from .deps import EngineDep, Me, bearer

router = APIRouter(prefix="/api/v1/video", dependencies=[Depends(bearer)], tags=["video"])

JobId = Annotated[str, Path(max_length=64, description="the job id the upload answered with")]


def job_json(job: dict) -> dict:
    """A job as the API shows it: its state with the URLs to follow (the runner's id is internal)."""
    base = f"/api/v1/video/jobs/{job['id']}"
    links = {"status_url": base}
    if job["kind"] == "search" and job["state"] == "done":
        links["shot_url"] = base + "/tracks/{track}/shot"
    if job["kind"] == "redact" and job["state"] == "done":
        links["download_url"] = base + "/redacted"
    return {"job": job["id"], **{k: v for k, v in job.items() if k not in ("id", "runner", "role")}, **links}


def accepted(job: dict) -> JSONResponse:
    body = job_json(job)
    return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})


@router.post("/search", status_code=202, summary="Search a recorded video (a background job)",
             responses={202: {"description": "the job: poll status_url"}})
def video_search(
    engine: EngineDep, by: Me,
    video: Annotated[UploadFile, File(description="the video (MP4, MOV, MKV, WebM, AVI)")],
    gallery: Annotated[str, Form(description="gallery to search")],
    purpose: Annotated[str | None, Form(description="why this search is made (required, ledgered)")] = None,
    case: Annotated[str | None, Form(description="case or ticket reference (required, ledgered)")] = None,
    every_ms: Annotated[float, Form(ge=20, le=10_000, description="detect on one frame per this many ms")] = 200,
    top_k: Annotated[int, Form(ge=1, le=100)] = 5,
    investigative: Annotated[bool, Form()] = False,
    authorisation: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Checked as `faceledger video search` is (role, purpose, case, gallery policy) before the upload is
    kept; then 202 and a job whose result, when done, is `faceledger video search --json`'s. The uploaded
    video is deleted when the job ends."""
    video.file.seek(0)
    job = engine.submit_video_search(video.file, name=video.filename or "upload", gallery=gallery,
                                     purpose=purpose, case=case, every_ms=every_ms, top_k=top_k,
                                     investigative=investigative, authorisation=authorisation, by=by)
    return accepted(job)


@router.post("/redact", status_code=202, summary="Redact a searched video, keeping chosen tracks (a job)")
def video_redact(
    engine: EngineDep, by: Me,
    video: Annotated[UploadFile, File(description="the same video the search job searched")],
    search_job: Annotated[str, Form(max_length=64, description="the finished search job")],
    keep_track: Annotated[list[int] | None, Form(description="a track left visible (repeat)")] = None,
) -> JSONResponse:
    """Every face is blurred on every frame except the kept tracks (numbered as the search job numbered
    them); ledgered as `video.redact`. The video must be uploaded again: the search deleted its copy."""
    video.file.seek(0)
    job = engine.submit_video_redact(video.file, name=video.filename or "upload", search_job=search_job,
                                     keep_tracks=tuple(keep_track or ()), by=by)
    return accepted(job)


@router.get("/jobs", summary="Video jobs this user may see, newest first (without results)")
def video_jobs(engine: EngineDep, by: Me, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict]:
    return [job_json(job) for job in engine.list_video_jobs(limit=limit, by=by)]


@router.get("/jobs/{job_id}", summary="A video job: state, progress, and its result or error")
def video_job(engine: EngineDep, by: Me, job_id: JobId) -> dict:
    return job_json(engine.video_job(job_id, by=by))


@router.get("/jobs/{job_id}/tracks/{track}/shot", summary="JPEG of a matched track's best shot",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def video_track_shot(engine: EngineDep, by: Me, job_id: JobId, track: Annotated[int, Path(ge=0, le=1_000_000)],
                     n: Annotated[int, Query(ge=1, le=10, description="1 = the best shot")] = 1) -> Response:
    """Only tracks with candidates keep shots; a bystander's track has none (404)."""
    return Response(engine.video_job_shot(job_id, track, n, by=by), media_type="image/jpeg")


@router.get("/jobs/{job_id}/redacted", summary="Download a finished redaction", response_class=FileResponse)
def video_redacted(engine: EngineDep, by: Me, job_id: JobId) -> FileResponse:
    path, name = engine.video_redacted_file(job_id, by=by)
    return FileResponse(path, media_type="video/mp4", filename=name)
