"""Alembic environment: migrate the connection faceledger hands over, inside its transaction."""

from __future__ import annotations

from alembic import context

from faceledger.migrations import VERSION_TABLE
from faceledger.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("faceledger migrations run from faceledger.store.schema, with a connection")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  transactional_ddl=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
