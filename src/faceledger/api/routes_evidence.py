"""Self-contained HTML downloads: GET /api/v1/searches/{entry}/evidence (a search's evidence package) and
GET /api/v1/reports/transparency.html (the transparency report with its charts)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from .deps import EngineDep, Me, as_utc, bearer

router = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer)])


@router.get("/searches/{entry}/evidence", tags=["review"], response_class=Response,
            summary="A search's evidence package (HTML attachment; the export is ledgered)",
            responses={200: {"content": {"text/html": {}}}})
def search_evidence(engine: EngineDep, by: Me,
                    entry: Annotated[str, Path(min_length=1, max_length=64)]) -> Response:
    """Probe (when kept), candidates with scores and false-match rates, threshold and how it was set, who
    searched and reviewed, and the chain proof (`faceledger evidence verify` checks it). For analysts,
    auditors and admins; each export is ledgered as `evidence.export` with the file's sha256, which the
    `X-Evidence-SHA256` header repeats."""
    package = engine.export_evidence(entry, by=by)
    return Response(package["html"], media_type="text/html; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{package["filename"]}"',
        "X-Evidence-SHA256": package["sha256"], "X-Ledger-Entry": package["ledger_entry"]})


@router.get("/reports/transparency.html", tags=["audit"], response_class=Response,
            summary="The transparency report as one self-contained HTML file (admin, auditor; ledgered)",
            responses={200: {"content": {"text/html": {}}}})
def transparency_html(engine: EngineDep, by: Me, since: date | None = None) -> Response:
    """What `faceledger report transparency` writes as transparency.html: charts embedded (a calibration
    plot per gallery), every figure in a table. An HTML attachment."""
    page = engine.transparency_report_html(since=as_utc(since), by=by)
    return Response(page.encode("utf-8"), media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="transparency.html"'})
