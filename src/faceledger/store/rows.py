"""Column values that more than one writer of the store builds, without SQLAlchemy.

The ORM (store/open_reviews.py) and the direct writer of a search (store/direct.py) take a search's
review-queue rows from here, so both write the same rows."""

from __future__ import annotations


def open_review_values(*, entry_id: str, seq: int, created_at: str, actor: str, action: str,
                       payload: dict) -> dict | None:
    """The `open_reviews` row of a `search` ledger entry that showed candidates; None when it showed none."""
    candidates = payload.get("candidates") or []
    if action != "search" or not candidates:
        return None
    case = payload.get("case")
    return {"entry_id": entry_id, "seq": seq, "created_at": created_at, "searched_by": actor,
            "gallery": payload.get("gallery"), "purpose": payload.get("purpose"), "case_ref": case,
            "case_folded": str(case or "").casefold(), "mode": payload.get("mode"), "candidates": len(candidates)}


def covered_galleries(payload: dict) -> list[str]:
    """The galleries a search covered, by name (a photo search names them all; a video track one)."""
    names = payload.get("galleries")
    return [str(name) for name in dict.fromkeys(names if names is not None else [payload.get("gallery")])
            if name is not None]
