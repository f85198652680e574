"""Review: a probe keeps a small face crop for its reviewers (`probes.review_image`, deleted once the
search is reviewed or the probe expires), and a review records whether it was made blind
(`reviews.blind`: the reviewer decided before seeing rank and score).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never Alembic's batch mode (see 0003: on SQLite batch mode drops and copies the
# table, and with foreign keys on the drop cascades to the child rows).


def upgrade() -> None:
    op.add_column("probes", sa.Column("review_image", sa.LargeBinary(), nullable=True))
    op.add_column("reviews", sa.Column("blind", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("reviews", "blind")
    op.drop_column("probes", "review_image")
