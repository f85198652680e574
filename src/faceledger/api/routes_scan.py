"""API v1: point-and-scan sessions (services/scan.py). Thin: each route calls one engine method.

A frame is the request body itself (`Content-Type: image/jpeg`), read up to the frame limit and refused
past it (413) without reading the rest. Frames faster than a scan takes them are 429 with Retry-After.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..services.scan import FRAME_MAX_BYTES, ScanBusy
from .deps import EngineDep, Me, bearer
from .problems import problem

router = APIRouter(prefix="/api/v1/scans", tags=["scan"], dependencies=[Depends(bearer)])

ScanId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class ScanIn(BaseModel):
    gallery: str = Field(max_length=200)
    purpose: str | None = Field(None, description="why this search is made (required, ledgered)")
    case: str | None = Field(None, description="case or ticket reference (required, ledgered)")
    authorisation: str | None = None
    top_k: int = Field(10, ge=1, le=100)


def busy(exc: ScanBusy):
    wait = max(1, math.ceil(exc.retry_after))
    return problem(429, str(exc), slug="scan-busy", headers={"Retry-After": str(wait)},
                   retry_after_s=round(exc.retry_after, 2))


@router.post("", status_code=201, summary="Start a scan: gallery, purpose and case checked now")
def start_scan(engine: EngineDep, by: Me, body: ScanIn):
    """Returns the scan id and its limits. Then POST frames to /api/v1/scans/{id}/frames."""
    try:
        return engine.start_scan(gallery=body.gallery, purpose=body.purpose, case=body.case,
                                 authorisation=body.authorisation, top_k=body.top_k, by=by)
    except ScanBusy as exc:
        return busy(exc)


@router.post("/{scan}/frames", summary="One camera frame (JPEG body); feedback, and the result once searched",
             openapi_extra={"requestBody": {"required": True, "content": {"image/jpeg": {}}}})
async def scan_frame(request: Request, engine: EngineDep, by: Me, scan: ScanId):
    """`status` is "scanning" (with `feedback`: code, message, progress), "searched" (with `result_url`,
    searched once, ledgered as a search) or "ended" (no usable face in time; ledgered as a failed search)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > FRAME_MAX_BYTES:
        return too_large(int(length))
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > FRAME_MAX_BYTES:
            return too_large(len(data))
    try:
        return await run_in_threadpool(engine.scan_frame, scan, bytes(data), by=by)
    except ScanBusy as exc:
        return busy(exc)


@router.delete("/{scan}", summary="End a scan without searching (its frames are dropped)")
def cancel_scan(engine: EngineDep, by: Me, scan: ScanId) -> dict:
    return engine.cancel_scan(scan, by=by)


def too_large(size: int):
    return problem(413, f"a scan frame of {size:,} bytes or more is over the limit of {FRAME_MAX_BYTES:,} bytes; "
                   "send frames scaled to at most 1280 px", slug="too-large")
