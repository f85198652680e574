"""/api/v1/galleries/{name}/calibration and /duplicates: what a gallery's threshold rests on, and the
cross-subject pairs that score like one person (the same as `faceledger calibration show` and
`faceledger gallery duplicates`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .deps import EngineDep, Me

router = APIRouter(prefix="/api/v1")


@router.get("/galleries/{name}/calibration", tags=["galleries"],
            summary="Which samples set the gallery's open-set threshold, and how far it is extrapolated")
def calibration(engine: EngineDep, by: Me, name: str) -> dict:
    """The body is `faceledger calibration show --json`'s."""
    return engine.calibration_info(name, by=by)


@router.get("/galleries/{name}/duplicates", tags=["galleries"],
            summary="Cross-subject pairs that score like the same person (ledgered)")
def duplicates(engine: EngineDep, by: Me, name: str, against: str | None = None,
               min_score: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict:
    """The body is `faceledger gallery duplicates --json`'s; `against` compares two galleries."""
    return engine.gallery_duplicates(name, against=against, min_score=min_score, limit=limit, by=by)
