"""Settings read FACELEDGER_* variables themselves, without pydantic: the same precedence, matching,
conversion and validation as the pydantic-settings BaseSettings they replace, and a bad value is one
clear line at the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceledger import cli
from faceledger.config import Settings
from faceledger.errors import FaceledgerError, SettingsError


@pytest.fixture(autouse=True)
def no_faceledger_environment(monkeypatch):
    import os

    for key in list(os.environ):
        if key.upper().startswith("FACELEDGER_"):
            monkeypatch.delenv(key)


def test_environment_then_arguments_then_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("FACELEDGER_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "0.05")
    monkeypatch.setenv("faceledger_flip_average", "true")  # names match in any case
    monkeypatch.setenv("FACELEDGER_MODEL_COPIES", "3")
    monkeypatch.setenv("FACELEDGER_NOT_A_SETTING", "ignored")
    monkeypatch.setenv("OTHER_TARGET_FPIR", "0.5")
    settings = Settings(target_fpir=0.02, not_a_setting=1)  # an unknown keyword is ignored
    assert settings.home == Path(tmp_path / "from-env")
    assert settings.target_fpir == 0.02  # an argument beats the environment
    assert settings.flip_average is True and settings.model_copies == 3
    assert settings.detect_max_side == 1280  # a default
    assert not hasattr(settings, "not_a_setting")
    assert Settings.model_validate_json(Settings(target_fpir=0.3).model_dump_json()).target_fpir == 0.3


@pytest.mark.parametrize(("name", "text", "value"), [
    ("flip_average", "1", True), ("flip_average", "YES", True), ("flip_average", "on", True),
    ("flip_average", "t", True), ("flip_average", "0", False), ("flip_average", "false", False),
    ("flip_average", "Off", False), ("flip_average", "n", False),
    ("target_fpir", "1e-3", 0.001), ("target_fpir", " 0.5 ", 0.5), ("min_face_size", "nan", "nan"),
    ("enroll_batch", "12", 12), ("enroll_batch", " +012 ", 12), ("enroll_batch", "1_000", 1000),
    ("enroll_batch", "12.0", 12),
    ("home", "data", Path("data")), ("model_dir", "/models", Path("/models")), ("db", "", ""),
    ("operator", "Zoë", "Zoë"),
])
def test_an_environment_value_is_read_as_its_fields_type(monkeypatch, name, text, value):
    monkeypatch.setenv(f"FACELEDGER_{name.upper()}", text)
    got = getattr(Settings(), name)
    assert (got != got) if value == "nan" else (got == value and type(got) is type(value))


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("enroll_batch", "1.5", "is not a whole number"), ("enroll_batch", "1e1", "is not a whole number"),
    ("enroll_batch", "", "is not a whole number"), ("enroll_batch", "0", "must be at least 1"),
    ("model_copies", "65", "must be at most 64"), ("target_fpir", "abc", "is not a number"),
    ("target_fpir", "0", "must be more than 0"), ("target_fpir", "1", "must be less than 1"),
    ("target_fpir", "nan", "must be"), ("flip_average", "maybe", "is not true or false"),
    ("flip_average", " on ", "is not true or false"),
])
def test_a_bad_environment_value_is_refused_naming_the_variable_and_the_field(monkeypatch, name, text, reason):
    monkeypatch.setenv(f"faceledger_{name}", text)
    with pytest.raises(SettingsError, match=name) as refused:
        Settings()
    assert f"faceledger_{name}={text!r} ({name}) {reason}" in str(refused.value)
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, FaceledgerError)


def test_arguments_are_converted_and_checked_like_the_environment():
    settings = Settings(home="h", enroll_batch=2.0, flip_average=1, model_dir=None)
    assert settings.home == Path("h") and settings.enroll_batch == 2 and type(settings.enroll_batch) is int
    assert settings.flip_average is True and settings.model_dir is None
    with pytest.raises(SettingsError, match=r"home=3 is not a path; target_fpir=2 must be less than 1"):
        Settings(target_fpir=2, home=3)  # every problem at once
    with pytest.raises(SettingsError, match="db=5 is not text"):
        Settings(db=5)


def test_worker_json_and_copies_read_no_environment(monkeypatch, tmp_path):
    given = Settings(home=tmp_path, operator="worker", db="sqlite://", model_copies=2)
    monkeypatch.setenv("FACELEDGER_OPERATOR", "someone-else")
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "2")  # would be refused if it were read
    again = Settings.model_validate_json(given.model_dump_json())
    assert again == given and again.model_dump() == given.model_dump()
    copy = given.model_copy(update={"rate_limit_per_minute": 0, "home": tmp_path / "other"})
    assert copy.operator == "worker" and copy.rate_limit_per_minute == 0 and copy.home == tmp_path / "other"
    assert given.rate_limit_per_minute == 120 and copy != given
    with pytest.raises(SettingsError, match="no such setting: nope"):
        given.model_copy(update={"nope": 1})
    with pytest.raises(SettingsError, match="model_copies=65"):
        Settings.model_validate_json(json.dumps({"model_copies": 65}))
    assert given.database_url == "sqlite://" and given.index_dir == tmp_path / "index"


def test_a_bad_environment_value_is_one_line_and_exit_2_at_the_cli(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FACELEDGER_TARGET_FPIR", "2")
    for json_flag in ((), ("--json",)):
        monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(tmp_path / "h"), "stats", *json_flag])
        with pytest.raises(SystemExit) as ended:
            cli.main()
        out, err = capsys.readouterr()
        assert ended.value.code == 2
        message = "invalid setting: FACELEDGER_TARGET_FPIR='2' (target_fpir) must be less than 1"
        if json_flag:
            assert json.loads(out) == {"error": {"kind": "SettingsError", "message": message}}
        else:
            assert err.strip() == f"error: {message}"
    assert not (tmp_path / "h").exists()
