"""The facade: opens the store, the ledger and the pipeline once, wires the services, and is the public
Python API. It holds no logic of its own: each method is a service's (see services/ and
docs/architecture.md). Every public method takes `by=` (the acting user; default the local operator)
and the service checks the role first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .accounts import local_seat
from .calibration import Calibration
from .config import Settings
from .ledger import Ledger
from .pipeline import FacePipeline
from .policy import Principal
from .services.access import Access
from .services.calibrations import Calibrations
from .services.context import Context
from .services.enrolment import Enrolment
from .services.evidence import Evidence
from .services.galleries import Galleries
from .services.governance import Governance
from .services.indexes import IndexCache
from .services.people import People
from .services.reports import Reports
from .services.review import Reviews
from .services.scan import Scans
from .services.search import Searching
from .services.users import Users
from .services.video import VideoSearch
from .services.video_jobs import VideoJobs
from .services.watch import Watching
from .store import dispose_writer, open_store, writer_sessions


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


class Engine:
    """Open once per process and share it between threads (the HTTP server does); see services.context."""

    def __init__(self, settings: Settings) -> None:
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
        self.pipeline = FacePipeline.from_settings(settings)
        ctx = self.ctx = Context(settings=settings, db=self.db, sessions=self.sessions,
                                 writer=self.writer_sessions, ledger=self.ledger, pipeline=self.pipeline)
        # Each service may use the ones made before it, never after: the wiring is the dependency order.
        self.access = Access(ctx)
        self.calibrations = Calibrations(ctx, self.access)
        self.indexes = IndexCache(ctx, self.access)
        self.galleries = Galleries(ctx, self.access)
        self.enrolment = Enrolment(ctx, self.access, self.indexes)
        self.searching = Searching(ctx, self.access, self.indexes, self.calibrations)
        self.reviews = Reviews(ctx, self.access)
        self.evidence = Evidence(ctx, self.access, self.reviews, self.galleries)
        self.governance = Governance(ctx, self.access, self.indexes, self.calibrations)
        self.users = Users(ctx, self.access)
        self.people = People(ctx, self.access, self.indexes, self.calibrations)
        self.reports = Reports(ctx, self.access, self.calibrations, self.searching)
        self.video = VideoSearch(ctx, self.access, self.searching)
        self.watching = Watching(ctx, self.access, self.video)
        self.video_jobs = VideoJobs(ctx, self.access, self.video)
        self.scans = Scans(ctx, self.access, self.searching)
        self.governance.purge_if_overdue()

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
