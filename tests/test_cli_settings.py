"""Settings read FACELEDGER_* variables themselves (no pydantic-settings): the same precedence, matching
and validation as the BaseSettings they replace."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from faceledger.config import Settings


def test_environment_then_arguments_then_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("FACELEDGER_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "0.05")
    monkeypatch.setenv("faceledger_flip_average", "true")  # names match in any case
    monkeypatch.setenv("FACELEDGER_MODEL_COPIES", "3")
    monkeypatch.setenv("FACELEDGER_NOT_A_SETTING", "ignored")
    monkeypatch.setenv("OTHER_TARGET_FPIR", "0.5")
    settings = Settings(target_fpir=0.02)
    assert settings.home == Path(tmp_path / "from-env")
    assert settings.target_fpir == 0.02  # an argument beats the environment
    assert settings.flip_average is True and settings.model_copies == 3
    assert settings.detect_max_side == 1280  # a default
    assert Settings.model_validate_json(Settings(target_fpir=0.3).model_dump_json()).target_fpir == 0.3


def test_a_bad_environment_value_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "2")
    with pytest.raises(ValidationError, match="target_fpir"):
        Settings()
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "0.01")
    monkeypatch.setenv("FACELEDGER_DETECT_MAX_SIDE", "many")
    with pytest.raises(ValidationError, match="detect_max_side"):
        Settings()
