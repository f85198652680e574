"""Gallery policy gains three columns: live watching (opt-in, off), blind review (off) and keeping the
probe image for its reviewer (on: until the search is reviewed or the probe's retention ends).

`allow_live` replaces the opt-in list a release kept in `<home>/video/live-galleries.json`; the watch
service carries that file's galleries into the column once and ledgers it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("allow_live", sa.false()),
    ("blind_review", sa.false()),
    ("keep_probe_for_review", sa.true()),
)


# Plain ALTER TABLE, never Alembic's batch mode: on SQLite batch mode copies the table and drops the
# old one, and with foreign keys on that drop cascades to every subject, image and face of the store
# (tests/test_schema.py upgrades a store of the release and counts its people afterwards).


def upgrade() -> None:
    for name, default in COLUMNS:
        op.add_column("galleries", sa.Column(name, sa.Boolean(), nullable=False, server_default=default))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("galleries", name)
