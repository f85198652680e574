"""Self-contained HTML downloads: POST /api/v1/searches/{entry}/evidence (a search's evidence package) and
GET /api/v1/reports/transparency.html (the transparency report with its charts).

An evidence export writes a ledger entry, so it is a POST: GET is a safe method (RFC 9110) that prefetching
and link-following tools call freely, and the CSRF checks (the middleware's header, the forms' token) cover
only unsafe methods, so a GET must not ledger an export in someone's name. GET on that path answers 405
saying to POST. The web app's button posts a form to /searches/{entry}/evidence (web_review.py), which
answers with the same attachment (`evidence_download`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from .deps import EngineDep, Me, as_utc, bearer
from .problems import problem

router = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer)])

Entry = Annotated[str, Path(min_length=1, max_length=64)]


def evidence_download(package: dict) -> Response:
    """`Engine.export_evidence`'s package as an HTML attachment, its sha256 and ledger entry in the headers."""
    return Response(package["html"], media_type="text/html; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{package["filename"]}"',
        "X-Evidence-SHA256": package["sha256"], "X-Ledger-Entry": package["ledger_entry"]})


@router.post("/searches/{entry}/evidence", tags=["review"], response_class=Response,
             summary="Export a search's evidence package (HTML attachment; the export is ledgered)",
             responses={200: {"content": {"text/html": {}}}})
def search_evidence(engine: EngineDep, by: Me, entry: Entry) -> Response:
    """Probe (when kept), candidates with scores and false-match rates, threshold and how it was set, who
    searched and reviewed, and the chain proof (`faceledger evidence verify` checks it). For analysts,
    auditors and admins; each export is ledgered as `evidence.export` with the file's sha256, which the
    `X-Evidence-SHA256` header repeats. No body; a cookie session sends its `X-CSRF-Token` header."""
    return evidence_download(engine.export_evidence(entry, by=by))


@router.get("/searches/{entry}/evidence", include_in_schema=False)
def search_evidence_by_get(entry: Entry) -> Response:
    """405: exporting is ledgered, so it is a POST (nothing is exported or ledgered here)."""
    return problem(405, f"exporting an evidence package is ledgered, so it takes a POST: "
                        f"POST /api/v1/searches/{entry}/evidence", headers={"Allow": "POST"})


@router.get("/reports/transparency.html", tags=["audit"], response_class=Response,
            summary="The transparency report as one self-contained HTML file (admin, auditor; ledgered)",
            responses={200: {"content": {"text/html": {}}}})
def transparency_html(engine: EngineDep, by: Me, since: date | None = None) -> Response:
    """What `faceledger report transparency` writes as transparency.html: charts embedded (a calibration
    plot per gallery), every figure in a table. An HTML attachment."""
    page = engine.transparency_report_html(since=as_utc(since), by=by)
    return Response(page.encode("utf-8"), media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="transparency.html"'})
