"""The table of searches awaiting review (`open_reviews`, with `open_review_galleries`): the row a search
with candidates adds in its own transaction, its removal, and the review queue's page read in SQL.

The ledger stays the record; this table is what the queue reads so that its time follows the searches
still open, not every search ever made (benchmarks/review_queue.py). Revision 0005 fills it from the
ledger of a store made before it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from .models import OpenReview, OpenReviewGallery
from .queries import like_pattern
from .rows import covered_galleries, open_review_values


def queue_search(session: Session, entry, payload: dict | None = None) -> None:
    """Add a search to the queue in the transaction of its ledger entry (nothing when it has no candidates).
    `entry`: its ledger row (a LedgerEntry or chain.ChainEntry); `payload`: its payload, if at hand."""
    payload = json.loads(entry.payload) if payload is None else payload
    values = open_review_values(entry_id=entry.entry_id, seq=entry.seq, created_at=entry.created_at,
                                actor=entry.actor, action=entry.action, payload=payload)
    if values is None:
        return
    # plain INSERTs, the parent row first (the galleries refer to it): no ORM unit of work under the lock
    session.execute(OpenReview.__table__.insert(), [values])
    session.execute(OpenReviewGallery.__table__.insert(),
                    [{"entry_id": entry.entry_id, "seq": entry.seq, "gallery": name} for name in covered_galleries(payload)])


def close_review(session: Session, entry_id: str) -> bool:
    """Take a search out of the queue (its decision settled it); whether it was there."""
    session.execute(delete(OpenReviewGallery).where(OpenReviewGallery.entry_id == entry_id))
    return session.execute(delete(OpenReview).where(OpenReview.entry_id == entry_id)).rowcount > 0


@dataclass(frozen=True)
class QueueFilter:
    gallery: str | None = None
    case: str | None = None
    """Part of the case reference, any case."""
    created_before: str | None = None
    """An ISO time as the ledger writes it: only searches made at or before it."""

    def where(self) -> list:
        """The filters on `open_reviews` besides the gallery (see `queue_page`)."""
        clauses = []
        needle = (self.case or "").strip().casefold()
        if needle:
            clauses.append(OpenReview.case_folded.like(like_pattern(needle), escape="\\"))
        if self.created_before is not None:
            clauses.append(OpenReview.created_at <= self.created_before)
        return clauses


def queue_page(session: Session, filters: QueueFilter, *, limit: int, offset: int) -> tuple[int, list[OpenReview]]:
    """(how many searches await review under the filters, one page of them oldest first)."""
    count, page = select(func.count()).select_from(OpenReview), select(OpenReview)
    if filters.gallery:  # one gallery's searches, in order, from the key (gallery, seq) of its table
        joined = (OpenReviewGallery.entry_id == OpenReview.entry_id, OpenReviewGallery.gallery == filters.gallery)
        count = count.join(OpenReviewGallery, and_(*joined))
        page = page.join(OpenReviewGallery, and_(*joined)).order_by(OpenReviewGallery.seq)
    else:
        page = page.order_by(OpenReview.seq)
    where = filters.where()
    if filters.gallery and not where:  # the gallery's part of the key alone gives the count
        count = select(func.count()).select_from(OpenReviewGallery).where(OpenReviewGallery.gallery == filters.gallery)
    total = session.execute(count.where(*where)).scalar_one()
    return total, list(session.execute(page.where(*where).limit(limit).offset(offset)).scalars())
