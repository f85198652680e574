"""The SQL store: the SQLAlchemy models, opening a store, write transactions, and the queries the engine needs.

Names are imported from their modules on first use (PEP 562), so that `faceledger.store.direct` (a search's
reads and writes through stdlib sqlite3, for the CLI) can be imported without loading SQLAlchemy."""

from __future__ import annotations

from importlib import import_module

_HOME = {
    **dict.fromkeys(("Base", "FaceCrop", "FaceRecord", "Gallery", "ImageRecord", "LedgerEntry", "Maintenance",
                     "OpenReview", "OpenReviewGallery", "Probe", "Review", "Subject", "User", "WebSession"), "models"),
    **dict.fromkeys(("Store", "connect", "open_database", "open_store"), "database"),
    **dict.fromkeys(("WriteConflict", "dispose_writer", "hold_write_lock", "retry_transaction", "writer_sessions"),
                    "writing"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
