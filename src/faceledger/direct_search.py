"""The CLI's one-shot search on the embedded default store, without SQLAlchemy.

A `faceledger search` is one process: importing SQLAlchemy and mapping the models cost it about a third
of its time (benchmarks/cli_start.py). This module runs the same search as services/search.py on a
SQLite store with a FAISS index, reading and writing through stdlib sqlite3 (store/direct.py), and uses
the same pieces for everything else: the ranking (matching.py), the record and its ledger entry
(search_record.py, chain.py), the index files, the calibration files, the pipeline and the policy checks.

It answers only the plain case, and stands aside (raises StandAside, having written nothing) whenever the
engine has something to do or say: a store on another database, index or schema revision; a purge
that is due; a first use of the data directory or of the local operator; a token or operator it cannot
vouch for; a role, purpose or policy refusal, a bad argument, an image that fails or has no usable face
(the engine ledgers refusals and failed probes); an index or calibration sample to rebuild; a gallery
that changed between the ranking and the write. The caller then runs the engine's search, which
decides and ledgers exactly as before. tests/test_direct_search.py runs both on copies of one store
and compares every row written.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

from .calibration import OpenSetCalibration
from .calibration.stored import current_calibration, load_sample, sample_path
from .chain import HeadFile, new_entry
from .config import Settings
from .enrollment import load_with
from .errors import FaceledgerError, PolicyViolation
from .identity import LOCAL_CREATED_BY, local_seat, token_digest
from .index.files import IndexFiles, IndexMeta, is_milvus
from .matching import match_galleries, ranked_state
from .pipeline import FacePipeline
from .policy import Principal, check_investigative, check_purpose, check_role
from .results import SearchResult
from .search_record import review_crop, search_record
from .store.direct import REVISION, DirectStore
from .texts import clean_text
from .times import utcnow


class StandAside(Exception):
    """The engine must answer this search (see the module docstring); nothing was written. The message
    says why (FACELEDGER_DIRECT_SEARCH=require shows it)."""


def search(settings: Settings, pipeline: FacePipeline, image: Path | str | bytes, *, gallery: str | list[str],
           purpose: str | None, case: str | None, top_k: int = 10, investigative: bool = False,
           authorisation: str | None = None, on_multiple: str = "refuse", token: str | None = None
           ) -> SearchResult:
    """services/search.Searching.search for the CLI; StandAside where the engine must answer instead.

    `pipeline` is built from `settings` (its models may be loading already: FacePipeline.start_loading);
    `token` is FACELEDGER_TOKEN (None: the local operator, settings.operator)."""
    store = _open(settings)
    try:
        return _search(store, settings, pipeline, image, names=[gallery] if isinstance(gallery, str) else
                       list(dict.fromkeys(gallery)), purpose=purpose, case=case, top_k=top_k,
                       investigative=investigative, authorisation=authorisation, on_multiple=on_multiple, token=token)
    except (FaceledgerError, sqlite3.Error) as exc:
        raise StandAside(f"{type(exc).__name__}: {exc}") from exc
    finally:
        store.close()


def _open(settings: Settings) -> DirectStore:
    """The store, where this module serves it: the default SQLite file in an existing data directory
    that only its owner may enter, a FAISS index, and no earlier release's live-watch list to carry over."""
    home = settings.home
    if settings.db is not None:
        raise StandAside("a database URL is set (FACELEDGER_DB)")
    if is_milvus(settings.index):
        raise StandAside("the index is Milvus")
    if not home.is_dir():
        raise StandAside("a new data directory")
    if home.stat().st_uid == os.geteuid() and home.stat().st_mode & 0o077:
        raise StandAside("the data directory is open to others (the engine narrows it to 0700)")
    if (home / "video" / "live-galleries.json").is_file():
        raise StandAside("an earlier release's live-watch list to carry into the store")
    store = DirectStore.open(home / "faceledger.db")
    if store is None:
        raise StandAside(f"the store is not a SQLite file in WAL mode at schema revision {REVISION}")
    return store


def _search(store: DirectStore, settings: Settings, pipeline: FacePipeline, image, *, names: list[str],
            purpose, case, top_k: int, investigative: bool, authorisation, on_multiple: str,
            token: str | None) -> SearchResult:
    if not names or top_k < 1:
        raise StandAside("no gallery named, or --top-k below 1")
    with store.reading():
        _purge_not_due(store, settings)
        principal = _principal(store, settings, token)
        check_role(principal, "search")
        purpose = clean_text(purpose, "a purpose", "--purpose", required=True)
        case = clean_text(case, "a case reference", "--case", required=True)
        authorisation = clean_text(authorisation, "the authorisation id", "--authorisation", required=False)
        searched, refused = _allowed(store, pipeline, names, purpose, investigative)
    loaded = load_with(settings, image)
    probe = pipeline.single_face(loaded, name=loaded.name, on_multiple=on_multiple)
    files = IndexFiles(settings.index_dir, settings.index)
    with store.reading():  # one snapshot for the ranking; no write lock
        seen = [_gallery(store, pipeline, name) for name in searched]
        faces = [store.face_count(g.id) for g in seen]  # (the rows' generations are of this snapshot too)
        current = current_calibration(settings.home, pipeline.model_id)
        answer = match_galleries(
            seen, [_index(files, pipeline, g, n) for g, n in zip(seen, faces)],
            [_calibration(settings, current, g, n) for g, n in zip(seen, faces)],
            probe.embedding, top_k=top_k, investigative=investigative, lock=threading.RLock(),
            subjects_of=lambda ids: store.face_subjects(ids, live_at=utcnow()))
    crop = review_crop(loaded, probe, seen, answer.candidates)  # a JPEG encode: not under the write lock
    now = utcnow()
    with store.writing():
        rows = [_gallery(store, pipeline, name) for name in searched]
        if ranked_state(rows) != ranked_state(seen):
            raise StandAside("a gallery changed while the search was ranked")  # the engine ranks under the lock
        record = search_record(principal=principal, galleries=rows, refused=refused, answer=answer, loaded=loaded,
                               probe=probe, purpose=purpose, case=case, top_k=top_k, investigative=investigative,
                               authorisation=authorisation, model_id=pipeline.model_id, now=now, crop=crop)
        entry = new_entry(store.last_entry(), actor=principal.name, action="search", payload=record.payload,
                          acting_from=local_seat() if principal.name == settings.operator else None)
        store.add_entry(entry)
        store.add_probe(entry.entry_id, record.probe)
        store.queue_search(entry, record.payload)
    HeadFile(settings.home / "ledger.head").advance(entry.seq, entry.hash)
    return SearchResult(candidates=tuple(answer.candidates), ledger_entry=entry.entry_id,
                        probe_box=tuple(float(v) for v in probe.box), **record.result_fields)


def _purge_not_due(store: DirectStore, settings: Settings) -> None:
    """The engine runs the scheduled purge when it is due (services/governance.purge_if_overdue)."""
    last = store.maintenance("last_purge_at")
    if last is None or utcnow() - datetime.fromisoformat(last) >= timedelta(hours=settings.purge_interval_hours):
        raise StandAside("the scheduled purge is due")


def _principal(store: DirectStore, settings: Settings, token: str | None) -> Principal:
    """Who acts, as the engine decides it (accounts.authenticate, accounts.local_operator); anything the
    engine would create or refuse is left to it."""
    if token:
        user = store.user_with_token(token_digest(token.strip())) if token.strip() else None
        if user is None or user.disabled:
            raise StandAside("the token is not an enabled user's")
        return Principal(name=user.name, role=user.role)
    user = store.user_named(settings.operator)
    if user is None or user.disabled or user.token_sha256 is not None or user.created_by != LOCAL_CREATED_BY:
        raise StandAside(f"{settings.operator!r} is not (yet) an enabled local operator")
    return Principal(name=user.name, role=user.role)


def _allowed(store: DirectStore, pipeline: FacePipeline, names: list[str], purpose: str,
             investigative: bool) -> tuple[list[str], list[dict]]:
    """services/search.Searching._allowed; a refusal of the whole search is the engine's to ledger."""
    searched, refused = [], []
    for name in names:
        policy = _gallery(store, pipeline, name)
        try:
            check_purpose(purpose, policy.purposes, name)
            check_investigative(investigative, policy.allow_investigative, name)
        except PolicyViolation as exc:
            if len(names) == 1:
                raise StandAside(f"refused: {exc}") from exc
            refused.append({"gallery": name, "reason": str(exc)})
            continue
        searched.append(name)
    if not searched:
        raise StandAside("every gallery refused the search")
    return searched, refused


def _gallery(store: DirectStore, pipeline: FacePipeline, name: str):
    row = store.gallery(name)
    if row is None or row.model_id != pipeline.model_id:
        raise StandAside(f"gallery {name!r} is unknown or holds another model's embeddings")
    return row


def _index(files: IndexFiles, pipeline: FacePipeline, gallery, faces: int):
    """The gallery's index from its files (base + deltas) at the store's generation; none: the engine
    rebuilds and saves it (services/indexes.IndexCache.get)."""
    index = files.load(gallery.id, expected=IndexMeta(
        gallery_id=gallery.id, generation=gallery.generation, model_id=gallery.model_id, dim=pipeline.embedder.dim,
        description=files.description_for(gallery.id), count=faces))
    if index is None:
        raise StandAside(f"gallery {gallery.name!r}: its index files are missing or behind the store")
    return index


def _calibration(settings: Settings, current, gallery, faces: int) -> OpenSetCalibration:
    """The packaged (or locally fitted) calibration with the gallery's kept sample; a sample to rebuild is
    the engine's (services/calibrations.Calibrations.for_gallery)."""
    sample = load_sample(sample_path(settings.home, gallery.id, gallery.model_id), generation=gallery.generation,
                         faces=faces, model_id=gallery.model_id)
    if sample is None:
        raise StandAside(f"gallery {gallery.name!r}: its calibration sample is missing or out of date")
    return OpenSetCalibration(current, sample)
