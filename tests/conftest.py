"""Shared pytest fixtures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from faceledger.config import Settings
from faceledger.pipeline import FacePipeline

# --- images and the face pipeline (tests/test_imaging.py, tests/test_pipeline.py) -------------------

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: the committed, credited test images (see tests/data/CREDITS.md)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    """The default detector + embedder, loaded once per test session."""
    pipe = FacePipeline.from_settings(Settings())
    pipe.load()
    return pipe


@pytest.fixture
def settings_factory(tmp_path: Path):
    """A function building Settings with home in tmp_path; keyword arguments override any field."""

    def make(**overrides) -> Settings:
        overrides.setdefault("home", tmp_path / "home")
        return Settings(**overrides)

    return make


# --- engines on the committed gallery (tests/test_engine.py, tests/test_cli.py) ---------------------

LFW_DIR = DATA_DIR / "lfw"
OPEN_FACES = DATA_DIR / "open-faces"


def gallery_files() -> list[Path]:
    """The demo gallery: the first three images of each LFW person with four (see tests/data/README.md)."""
    files = []
    for person in sorted(p for p in LFW_DIR.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 4:
            files.extend(images[:3])
    return files


def held_out_probes() -> list[Path]:
    """Each enrolled LFW person's fourth image (never enrolled)."""
    return [sorted(p.glob("*.jpg"))[3] for p in sorted(LFW_DIR.iterdir()) if len(list(p.glob("*.jpg"))) >= 4]


def never_enrolled() -> list[Path]:
    return [next(p.glob("*.jpg")) for p in sorted(LFW_DIR.iterdir()) if len(list(p.glob("*.jpg"))) == 1]


def open_test_engine(home: Path, **overrides):
    from faceledger import open_engine

    return open_engine(Settings(home=home, operator="test-analyst", **overrides))


# --- databases: every engine test that takes `engine`, `enrolled` or `database_url` runs on both -----

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the whole session (see tests/pg.py); skipped if none can run."""
    from .pg import PgServer

    try:
        server = PgServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no local PostgreSQL for these tests: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A Milvus standalone server on 127.0.0.1 for the whole session (tests/milvus_server.py); skipped,
    with the reason, where none can run. `.url` is the FACELEDGER_INDEX value that reaches it."""
    from .milvus_server import MilvusUnavailable, start

    try:
        server = start(tmp_path_factory.mktemp("milvus-server"))
    except MilvusUnavailable as exc:
        pytest.skip(f"no Milvus server for these tests: {exc}")
    yield server
    server.stop()


def _database_url(kind: str, request) -> str | None:
    """None for the default SQLite file in home; a fresh PostgreSQL database otherwise."""
    if kind == "sqlite":
        return None
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture(params=DATABASES)
def database_url(request) -> str | None:
    return _database_url(request.param, request)


@pytest.fixture
def engine(tmp_path: Path, database_url):
    """A fresh engine with one empty gallery named "g" (on SQLite and on PostgreSQL)."""
    eng = open_test_engine(tmp_path / "home", db=database_url)
    eng.create_gallery("g")
    yield eng
    eng.close()


@pytest.fixture(scope="module", params=DATABASES)
def enrolled(tmp_path_factory, request):
    """A module-wide engine with the demo gallery "g" enrolled (27 LFW images of 9 people)."""
    eng = open_test_engine(tmp_path_factory.mktemp("enrolled") / "home", db=_database_url(request.param, request))
    eng.create_gallery("g")
    report = eng.enroll(gallery_files(), gallery="g", subject_from_folder=True, source="LFW sample",
                        legal_basis="research")
    assert report.count("enrolled") == 27 and not report.failures
    yield eng
    eng.close()
