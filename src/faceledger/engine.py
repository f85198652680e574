"""The facade: opens the store, the ledger and the pipeline once, wires the services, and is the public
Python API. It holds no logic of its own: each method is a service's (see services/ and
docs/architecture.md). Every public method takes `by=` (the acting user; default the local operator)
and the service checks the role first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .identity import local_seat
from .config import Settings
from .ledger import Ledger
from .pipeline import FacePipeline
from .policy import Principal
from .services.context import Context
from .store import dispose_writer, open_store, writer_sessions

if TYPE_CHECKING:
    from .calibration import Calibration

class _Via:
    """`name = via("service")`: the engine's `name` is the service's method of the same name."""

    def __init__(self, service: str, method: str | None = None) -> None:
        self.service, self.method = service, method

    def __set_name__(self, owner: type, name: str) -> None:
        self.method = self.method or name

    def __get__(self, engine: Any, owner: type | None = None) -> Any:
        if engine is None:
            return self
        return getattr(getattr(engine, self.service), self.method)


via = _Via


class _Service:
    """`name = service("module", "Class", "needed", ...)`: the engine's service `name`, made on first use
    as `services.module.Class(ctx, *needed services)`, so a command imports only the services it uses.

    A service may need only services declared before it (checked when the class is made): the declaration
    order is the dependency order, so there are no cycles."""

    order = 0

    def __init__(self, module: str, cls: str, *needs: str) -> None:
        self.module, self.cls, self.needs = module, cls, needs
        _Service.order += 1
        self.order = _Service.order

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        for need in self.needs:
            made = owner.__dict__.get(need)
            if not isinstance(made, _Service) or made.order >= self.order:
                raise TypeError(f"service {name!r} needs {need!r}, which is not a service declared before it")

    def __get__(self, engine: Any, owner: type | None = None) -> Any:
        if engine is None:
            return self
        with engine._wiring:  # threads of the HTTP server: one instance of each service
            made = engine.__dict__.get(self.name)
            if made is None:
                cls = getattr(import_module(f"{__package__}.services.{self.module}"), self.cls)
                made = engine.__dict__[self.name] = cls(engine.ctx, *(getattr(engine, n) for n in self.needs))
        return made  # kept in the instance's __dict__: later reads do not come here


service = _Service


class Engine:
    """Open once per process and share it between threads (the HTTP server does); see services.context."""

    # The services, each made on first use. Each may use the ones declared before it, never after:
    # the declaration order is the dependency order.
    access = service("access", "Access")
    calibrations = service("calibrations", "Calibrations", "access")
    indexes = service("indexes", "IndexCache", "access")
    galleries = service("galleries", "Galleries", "access")
    enrolment = service("enrolment", "Enrolment", "access", "indexes")
    searching = service("search", "Searching", "access", "indexes", "calibrations")
    reviews = service("review", "Reviews", "access")
    evidence = service("evidence", "Evidence", "access", "reviews", "galleries")
    governance = service("governance", "Governance", "access", "indexes", "calibrations")
    users = service("users", "Users", "access")
    people = service("people", "People", "access", "indexes", "calibrations")
    reports = service("reports", "Reports", "access", "calibrations", "searching")
    video = service("video", "VideoSearch", "access", "searching")
    watching = service("watch", "Watching", "access", "video")
    video_jobs = service("video_jobs", "VideoJobs", "access", "video")
    scans = service("scan", "Scans", "access", "searching")

    def __init__(self, settings: Settings, *, pipeline: FacePipeline | None = None) -> None:
        """`pipeline`: one built from these settings already (the CLI starts loading its models early);
        default: a new one."""
        self.settings = settings
        _private_directory(settings.home)
        store = open_store(settings.database_url, auto_upgrade=settings.auto_upgrade)
        self.db, self.sessions = store.db, store.sessions
        self.writer_sessions = writer_sessions(self.db)
        self.ledger = Ledger(self.sessions, settings.home / "ledger.head", writer=self.writer_sessions)
        self.ledger.actor_context[settings.operator] = local_seat()  # the OS user and host behind the CLI
        if store.schema_change is not None and not store.schema_change.created:
            self.ledger.record(actor=settings.operator, action="schema.upgrade",
                               payload=store.schema_change.as_payload())
        self.pipeline = pipeline or FacePipeline.from_settings(settings)
        self.ctx = Context(settings=settings, db=self.db, sessions=self.sessions,
                           writer=self.writer_sessions, ledger=self.ledger, pipeline=self.pipeline)
        self._wiring = threading.RLock()
        self.governance.purge_if_overdue()
        if (settings.home / "video" / "live-galleries.json").is_file():
            _ = self.watching  # made at once: it carries an earlier release's live opt-in list into the store

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    @property
    def calibration(self) -> Calibration:
        """The impostor-score calibration in force (packaged, or fitted here with `calibrate`)."""
        return self.calibrations.current

    @property
    def calibration_path(self) -> Path:
        return self.calibrations.path

    @property
    def operator(self) -> Principal:
        return self.access.operator

    @property
    def index_files(self):
        return self.indexes.files

    def close(self) -> None:
        dispose_writer(self.writer_sessions)
        self.db.dispose()

    @contextmanager
    def writing(self) -> Iterator:
        """A write transaction under the engine's write lock (for tools such as `migrate`)."""
        with self.ctx.writing() as session:
            yield session

    # who may act, and ledgering refusals
    authorize = via("access")
    record_denial = via("access")
    ledger_refusals = via("access", "refusals")
    ledger_failures = via("access", "failures")

    # galleries
    create_gallery = via("galleries")
    update_gallery = via("galleries")
    gallery_info = via("galleries")
    list_galleries = via("galleries")
    gallery_images = via("galleries")
    face_crop = via("galleries")

    # the people of a gallery
    list_subjects = via("people")
    subject = via("people")
    rename_subject = via("people")
    merge_subjects = via("people")
    move_face = via("people")
    remove_face = via("people")

    # enrolment and the index cache
    enroll = via("enrolment")
    enroll_embeddings = via("enrolment")
    enroll_uploads = via("enrolment")
    reindex = via("indexes")

    # search, verify, inspection
    search = via("searching")
    rank = via("searching")
    verify = via("searching")
    faces = via("searching")
    operating_points = via("searching")
    calibrate = via("calibrations")
    calibration_info = via("calibrations", "describe_gallery")
    gallery_duplicates = via("calibrations", "duplicates")

    # video
    video_search = via("video", "search")
    video_tracks = via("video", "tracks")
    video_redact = via("video", "redact")
    submit_video_search = via("video_jobs", "submit_search")
    submit_video_redact = via("video_jobs", "submit_redact")
    video_job = via("video_jobs", "get")
    list_video_jobs = via("video_jobs", "list_jobs")
    video_job_shot = via("video_jobs", "shot")
    video_redacted_file = via("video_jobs", "redacted")
    sweep_video_jobs = via("video_jobs", "sweep")
    watch = via("watching")
    allow_live = via("watching")
    retry_alerts = via("watching")
    start_scan = via("scans", "start")
    scan_frame = via("scans", "frame")
    cancel_scan = via("scans", "cancel")

    # review
    review = via("reviews")
    review_status = via("reviews")
    search_record = via("reviews")
    recent_searches = via("reviews")
    export_evidence = via("evidence")
    review_queue = via("reviews")
    review_probe = via("reviews")

    # users
    add_user = via("users")
    set_user_disabled = via("users")
    list_users = via("users")
    rotate_token = via("users")
    authenticate = via("users")

    # retention and erasure
    purge = via("governance")
    purge_if_overdue = via("governance")
    erase = via("governance")

    # audit and reports
    audit_entries = via("reports")
    audit_export = via("reports")
    audit_verify = via("reports")
    transparency_summary = via("reports")
    transparency_report = via("reports")
    transparency_report_html = via("reports")
    stats = via("reports")


def _private_directory(home: Path) -> None:
    """The data directory holds faces, embeddings and the ledger: only its owner may enter it (0700).

    A directory made by another user (a shared mount) is left as it is."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_uid == os.geteuid() and home.stat().st_mode & 0o077:
        home.chmod(0o700)


def open_engine(settings: Settings | None = None, **overrides) -> Engine:
    """Open an engine on a data directory: `open_engine(home="data")`."""
    settings = settings or Settings(**overrides)
    return Engine(settings)
