"""The store of the releases made before migrations existed (faceledger 0.1, commit 41581fb).

Written out table by table so that it never changes when the models do; on SQLite it makes the very
statements `create_all` made (tests/test_schema.py compares them). Stores made by those releases
(tables created by `create_all`, no version table) are checked against this revision and stamped with
it; see faceledger.store.schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for large galleries.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id(name: str = "id") -> sa.Column:
    return sa.Column(name, BIG_ID, nullable=False)


def _fk(name: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([name], [target], ondelete="CASCADE")


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "galleries",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("retain_days", sa.Integer(), nullable=True),
        sa.Column("target_fpir", sa.Float(), nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("allow_investigative", sa.Boolean(), nullable=False),
        sa.Column("probe_retain_days", sa.Integer(), nullable=False),
        sa.Column("keep_probe_images", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "ledger",
        _id("seq"),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("entry_id"),
        sa.UniqueConstraint("hash"),
    )
    _indexes("ledger", "action", "actor")
    op.create_table(
        "maintenance",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "reviews",
        _id(),
        sa.Column("search_entry_id", sa.String(36), nullable=False),
        sa.Column("candidate_rank", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_entry", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("search_entry_id", "candidate_rank", "reviewer"),
    )
    _indexes("reviews", "search_entry_id")
    op.create_table(
        "users",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "probes",
        _id(),
        sa.Column("entry_id", sa.String(36), nullable=False),
        _id("gallery_id"),
        sa.Column("searched_by", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id"),
        _fk("gallery_id", "galleries.id"),
    )
    _indexes("probes", "expires_at", "gallery_id")
    op.create_table(
        "subjects",
        _id(),
        _id("gallery_id"),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gallery_id", "name"),
        _fk("gallery_id", "galleries.id"),
    )
    _indexes("subjects", "gallery_id")
    op.create_table(
        "images",
        _id(),
        _id("gallery_id"),
        _id("subject_id"),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("enrolled_by", sa.String(200), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gallery_id", "sha256"),
        _fk("gallery_id", "galleries.id"),
        _fk("subject_id", "subjects.id"),
    )
    _indexes("images", "gallery_id", "retain_until", "subject_id")
    op.create_table(
        "faces",
        _id(),
        _id("image_id"),
        _id("subject_id"),
        _id("gallery_id"),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("landmarks", sa.JSON(), nullable=False),
        sa.Column("detector_score", sa.Float(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("template_id", sa.String(100), nullable=False),
        _fk("image_id", "images.id"),
        _fk("subject_id", "subjects.id"),
        _fk("gallery_id", "galleries.id"),
        sa.PrimaryKeyConstraint("id"),
    )
    _indexes("faces", "gallery_id", "image_id", "subject_id")
    op.create_table(
        "face_crops",
        _id("face_id"),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        _fk("face_id", "faces.id"),
        sa.PrimaryKeyConstraint("face_id"),
    )


def downgrade() -> None:
    for table in ("face_crops", "faces", "images", "subjects", "probes", "users", "reviews", "maintenance",
                  "ledger", "galleries"):
        op.drop_table(table)
