"""Move everything (galleries, subjects, images, faces with their embeddings, the ledger) to another
database and index, without re-embedding a single image.

Rows are copied as they are, ids included, rather than re-enrolled through `enroll_embeddings`:
provenance (source, legal basis, who enrolled, when, retention) stays exactly what it was, the ledger's
hash chain is copied entry by entry and still verifies, and ledger payloads that name face or gallery
ids still point at the same rows. The move itself is ledgered twice: a `migrate.export` entry is
appended to the source ledger before copying (so it travels with the copy), and a `migrate.import`
entry is appended to the target's ledger after it, naming the source and the counts. The target must
be empty. The target's index is then built from the copied embeddings (`reindex`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select, text

from .config import Settings
from .errors import FaceledgerError
from .store import Base, Gallery, LedgerEntry, open_database

Progress = Callable[[str, int, int], None]
CHUNK = 5_000


def migrate(source, *, to_db: str, to_index: str | None = None, to_home: Path | None = None,
            progress: Progress | None = None, by=None) -> dict:
    """Copy the store behind engine `source` to `to_db`, build `to_index` there; returns a summary."""
    from .engine import Engine
    from .services.context import safe_url as _safe_url

    principal = source.authorize(by, "migrate", to_index=to_index)
    if not to_db or not to_db.strip():
        raise FaceledgerError("--to-db URL is required (e.g. postgresql+psycopg://user:pw@host/db)")
    target_settings = Settings(**{**source.settings.model_dump(), "db": to_db,
                                  "index": to_index or source.settings.index,
                                  "home": Path(to_home) if to_home else source.settings.home})
    if target_settings.database_url == source.settings.database_url:
        raise FaceledgerError("the target database is the source database")
    target_db, target_sessions = open_database(target_settings.database_url)
    try:
        with target_sessions() as session:
            used = {table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (Gallery.__table__, LedgerEntry.__table__)}
        if any(used.values()):
            raise FaceledgerError(f"the target database is not empty ({used}); migrate only into a new database")
        source_url, target_url = _safe_url(source.db.url), _safe_url(target_db.url)
        counts = _counts(source.sessions)
        export = source.ledger.record(actor=principal.name, action="migrate.export", payload={
            "to_db": target_url, "to_index": target_settings.index, "counts": counts, "re_embedded": False})
        copied = _copy_rows(source.db, target_db, progress)
    finally:
        target_db.dispose()
    target = Engine(target_settings)
    try:
        index_rows = target.reindex(progress=progress, by=principal)
        entry = target.ledger.record(actor=principal.name, action="migrate.import", payload={
            "from_db": source_url, "from_index": source.settings.index, "to_index": target_settings.index,
            "counts": copied, "export_entry": export.entry_id, "export_hash": export.hash, "re_embedded": False})
        check = target.audit_verify()
        if not check.ok:
            raise FaceledgerError(f"the copied ledger does not verify: {check.problems[:3]}")
    finally:
        target.close()
    return {"from_db": source_url, "to_db": target_url, "to_index": target_settings.index, "counts": copied,
            "indexes": index_rows, "export_entry": export.entry_id, "import_entry": entry.entry_id,
            "ledger_entries": check.entries}


def _counts(sessions) -> dict:
    with sessions() as session:
        return {table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for table in Base.metadata.sorted_tables}


def _copy_rows(source_db, target_db, progress: Progress | None) -> dict:
    """Every table in dependency order, ids kept, in one target transaction; sequences fixed after."""
    copied = {}
    with source_db.connect() as src, target_db.begin() as dst:
        for table in Base.metadata.sorted_tables:
            total = src.execute(select(func.count()).select_from(table)).scalar_one()
            done = 0
            pk = list(table.primary_key.columns)
            result = src.execution_options(yield_per=CHUNK).execute(select(table).order_by(*pk))
            for chunk in result.mappings().partitions(CHUNK):
                dst.execute(table.insert(), [dict(row) for row in chunk])
                done += len(chunk)
                if progress:
                    progress(f"copying {table.name}", done, total)
            copied[table.name] = done
        if target_db.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is not False and column.type.python_type is int:
                        dst.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                            f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"))
    return copied
