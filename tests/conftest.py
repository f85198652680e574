"""Shared pytest fixtures."""

from __future__ import annotations

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
