"""GET /api/v1/searches/{entry}/evidence: a search's evidence package, one self-contained HTML file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from .deps import EngineDep, Me, bearer

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
