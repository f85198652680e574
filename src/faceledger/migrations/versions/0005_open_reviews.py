"""The table of searches awaiting review (`open_reviews`, and `open_review_galleries` for the galleries each
covered), so the review queue reads the searches still open instead of every search entry of the ledger.

Filled here from the ledger: every `search` entry that showed candidates, unless each of its candidates
(ranks 1..n) already has a reviewer's confirm or reject, with the same fields the queue read from the
entry's payload before. From now on the search adds its row and the settling decision removes it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 500
CLOSING = ("confirm", "reject")

# Plain CREATE TABLE and INSERT, never Alembic's batch mode (see 0003).


def upgrade() -> None:
    op.create_table(
        "open_reviews",
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("searched_by", sa.String(200), nullable=False),
        sa.Column("gallery", sa.Text(), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("case_ref", sa.Text(), nullable=True),
        sa.Column("case_folded", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=True),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_open_reviews_created_at", "open_reviews", ["created_at"], unique=False)
    op.create_table(
        "open_review_galleries",
        sa.Column("gallery", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["open_reviews.entry_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("gallery", "seq"),
    )
    op.create_index("ix_open_review_galleries_entry_id", "open_review_galleries", ["entry_id"], unique=False)
    _fill(op.get_bind())


def _fill(conn) -> None:
    """One batch of search entries at a time (by seq), each with its closing reviews."""
    ledger = sa.table("ledger", sa.column("seq"), sa.column("entry_id"), sa.column("created_at"), sa.column("actor"),
                      sa.column("action"), sa.column("payload"))
    reviews = sa.table("reviews", sa.column("search_entry_id"), sa.column("candidate_rank"), sa.column("decision"))
    opened = sa.table("open_reviews", *(sa.column(name) for name in (
        "entry_id", "seq", "created_at", "searched_by", "gallery", "purpose", "case_ref", "case_folded", "mode",
        "candidates")))
    covered = sa.table("open_review_galleries", sa.column("gallery"), sa.column("seq"), sa.column("entry_id"))
    last = 0
    while True:
        batch = conn.execute(sa.select(ledger.c.seq, ledger.c.entry_id, ledger.c.created_at, ledger.c.actor,
                                       ledger.c.payload)
                             .where(ledger.c.action == "search", ledger.c.seq > last)
                             .order_by(ledger.c.seq).limit(BATCH)).all()
        if not batch:
            return
        last = batch[-1].seq
        ids = [row.entry_id for row in batch]
        settled: dict[str, set[int]] = {}
        for entry_id, rank in conn.execute(sa.select(reviews.c.search_entry_id, reviews.c.candidate_rank).where(
                reviews.c.search_entry_id.in_(ids), reviews.c.decision.in_(CLOSING))):
            settled.setdefault(entry_id, set()).add(rank)
        rows, galleries = [], []
        for row in batch:
            payload = json.loads(row.payload)
            count = len(payload.get("candidates") or [])
            if not count or set(range(1, count + 1)) <= settled.get(row.entry_id, set()):
                continue
            case = payload.get("case")
            rows.append({"entry_id": row.entry_id, "seq": row.seq, "created_at": row.created_at,
                         "searched_by": row.actor, "gallery": payload.get("gallery"), "purpose": payload.get("purpose"),
                         "case_ref": case, "case_folded": str(case or "").casefold(), "mode": payload.get("mode"),
                         "candidates": count})
            names = payload.get("galleries")
            names = names if names is not None else [payload.get("gallery")]
            galleries += [{"gallery": str(name), "seq": row.seq, "entry_id": row.entry_id} for name in dict.fromkeys(names)
                          if name is not None]
        if rows:
            conn.execute(opened.insert(), rows)
        if galleries:
            conn.execute(covered.insert(), galleries)


def downgrade() -> None:
    op.drop_index("ix_open_review_galleries_entry_id", table_name="open_review_galleries")
    op.drop_table("open_review_galleries")
    op.drop_index("ix_open_reviews_created_at", table_name="open_reviews")
    op.drop_table("open_reviews")
