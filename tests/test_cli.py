"""The CLI: JSON shapes, one-line errors with exit code 2, and every command documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer

from faceledger import cli

from .conftest import OPEN_FACES, gallery_files, held_out_probes, never_enrolled

REPO = Path(__file__).resolve().parents[1]


def run(capsys, monkeypatch, home: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(home), *map(str, args)])
    monkeypatch.setenv("FACELEDGER_OPERATOR", "cli-tester")
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, _, err = run(capsys, monkeypatch, home, "gallery", "create", "g")
    assert code == 0, err
    files = gallery_files()
    code, _, err = run(capsys, monkeypatch, home, "enroll", *files, "--gallery", "g", "--subject-from-folder",
                       "--source", "LFW", "--legal-basis", "research", "--json")
    assert code == 0, err
    return home


def test_search_json_matches_the_documented_shape(home, capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, home, "search", held_out_probes()[0], "--gallery", "g",
                       "--purpose", "test", "--case", "C-1", "--json")
    body = json.loads(out)
    assert code == 0 and body["decision"] == "match"
    assert {"decision", "threshold", "gallery_size", "candidates", "ledger_entry"} <= set(body)
    assert {"subject", "score", "false_match_rate", "image"} <= set(body["candidates"][0])
    assert body["candidates"][0]["subject"] == held_out_probes()[0].parent.name


def test_no_match_is_a_normal_answer(home, capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, home, "search", never_enrolled()[0], "--gallery", "g",
                       "--purpose", "test", "--case", "C-2")
    assert code == 0 and "no match" in out


def test_verify_json(home, capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, home, "verify", OPEN_FACES / "macron_2014.jpg",
                       OPEN_FACES / "macron_2025.jpg", "--purpose", "p", "--case", "c", "--json")
    body = json.loads(out)
    assert code == 0 and body["decision"] == "same"
    assert set(body) >= {"decision", "score", "false_match_rate", "threshold", "ledger_entry"}


@pytest.mark.parametrize("args, message", [
    (["search", "{probe}", "--gallery", "g", "--case", "c"], "purpose is required"),
    (["search", "{probe}", "--gallery", "g", "--purpose", "p"], "case reference is required"),
    (["search", "{probe}", "--gallery", "nope", "--purpose", "p", "--case", "c"], "unknown gallery 'nope'"),
    (["search", "{text}", "--gallery", "g", "--purpose", "p", "--case", "c"], "not an image"),
    (["gallery", "create", "g"], "already exists"),
    (["enroll", "{probe}", "--gallery", "g", "--subject", "x", "--source", "s"], "legal basis"),
])
def test_errors_are_one_line_and_exit_2(home, capsys, monkeypatch, tmp_path, args, message):
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    args = [a.format(probe=held_out_probes()[0], text=text) for a in args]
    code, out, err = run(capsys, monkeypatch, home, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_failed_files_exit_2_and_are_listed_in_a_csv(home, capsys, monkeypatch, tmp_path):
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    report = tmp_path / "failures.csv"
    code, out, err = run(capsys, monkeypatch, home, "enroll", text, OPEN_FACES / "sunak_portrait.jpg",
                         "--gallery", "g", "--subject", "x", "--source", "s", "--legal-basis", "b",
                         "--failures-csv", report)
    assert code == 2 and "1 image(s) enrolled" in out and "not an image" in err
    assert "text.jpg" in report.read_text()


def test_faces_and_stats_and_audit(home, capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, home, "faces", OPEN_FACES / "obama_senate_portrait.jpg", "--json")
    body = json.loads(out)
    assert code == 0 and len(body["faces"]) == 1 and body["faces"][0]["quality"]["usable"]
    code, out, _ = run(capsys, monkeypatch, home, "stats", "--json")
    assert json.loads(out)["images"] == 27
    code, out, _ = run(capsys, monkeypatch, home, "audit", "verify")
    assert code == 0 and "ledger intact" in out


def test_audit_verify_fails_on_a_tampered_ledger(home, capsys, monkeypatch):
    import sqlite3

    with sqlite3.connect(home / "faceledger.db") as con:
        con.execute("update ledger set actor = 'someone else' where seq = 2")
    code, out, err = run(capsys, monkeypatch, home, "audit", "verify")
    assert code == 2 and "BROKEN" in err and "entry 2" in err


def _commands(app: typer.Typer, prefix: str = "") -> list[tuple[str, object]]:
    found = [(f"{prefix}{c.name or c.callback.__name__}".strip(), c.callback) for c in app.registered_commands]
    for group in app.registered_groups:
        found += _commands(group.typer_instance, f"{prefix}{group.name} ")
    return found


def test_every_command_has_a_docstring_and_is_documented():
    docs = (REPO / "docs" / "cli.md").read_text()
    commands = _commands(cli.app)
    assert len(commands) >= 9
    for name, callback in commands:
        assert callback.__doc__, f"{name} has no docstring"
        assert re.search(rf"faceledger {re.escape(name)}\b", docs), f"docs/cli.md does not document {name!r}"


def test_tokens_roles_review_and_reports_through_the_cli(home, capsys, monkeypatch, tmp_path):
    code, out, _ = run(capsys, monkeypatch, home, "user", "add", "ana", "--role", "analyst", "--json")
    analyst = json.loads(out)
    assert code == 0 and analyst["user"] == "ana" and analyst["token"]
    code, out, _ = run(capsys, monkeypatch, home, "user", "add", "rey", "--role", "reviewer", "--json")
    reviewer = json.loads(out)["token"]

    monkeypatch.setenv("FACELEDGER_TOKEN", analyst["token"])
    code, _, err = run(capsys, monkeypatch, home, "enroll", gallery_files()[0], "--gallery", "g", "--subject", "x",
                       "--source", "s", "--legal-basis", "b")
    assert code == 2 and "'enroll' needs one of: admin, enroller" in err
    code, out, _ = run(capsys, monkeypatch, home, "search", held_out_probes()[0], "--gallery", "g", "--purpose", "p",
                       "--case", "c", "--json")
    entry = json.loads(out)["ledger_entry"]

    monkeypatch.setenv("FACELEDGER_TOKEN", reviewer)
    code, out, _ = run(capsys, monkeypatch, home, "review", entry, "--candidate", "1", "--decision", "confirm")
    assert code == 0 and "confirm" in out
    code, out, _ = run(capsys, monkeypatch, home, "result", entry, "--json")
    assert json.loads(out)[0]["status"] == "confirmed"

    monkeypatch.setenv("FACELEDGER_TOKEN", "flt_not-a-real-token")
    code, _, err = run(capsys, monkeypatch, home, "stats")
    assert code == 2 and "token is not valid" in err

    monkeypatch.delenv("FACELEDGER_TOKEN")
    code, out, _ = run(capsys, monkeypatch, home, "audit", "list", "--action", "denied", "--json")
    assert [e["payload"]["attempted"] for e in json.loads(out)] == ["enroll"]
    code, _, _ = run(capsys, monkeypatch, home, "audit", "export", "--format", "csv", "--out", tmp_path / "l.csv")
    assert code == 0 and (tmp_path / "l.csv").read_text().startswith("seq,entry_id")
    code, out, _ = run(capsys, monkeypatch, home, "report", "transparency", "--out", tmp_path / "r")
    assert code == 0 and (tmp_path / "r" / "transparency.html").is_file()
    code, _, err = run(capsys, monkeypatch, home, "erase", "--face", OPEN_FACES / "sunak_portrait.jpg",
                       "--reason", "request 1")
    assert code == 2 and "nothing was removed" in err


def test_a_named_user_cannot_be_claimed_at_the_cli_without_their_token(home, capsys, monkeypatch):
    """FACELEDGER_OPERATOR=<a reviewer's name> must not let the searcher review their own search."""
    code, out, _ = run(capsys, monkeypatch, home, "user", "add", "reviewer2", "--role", "reviewer", "--json")
    token = json.loads(out)["token"]
    probe = held_out_probes()[0]
    code, out, _ = run(capsys, monkeypatch, home, "search", probe, "--gallery", "g", "--purpose", "p", "--case", "c",
                       "--json")
    entry = json.loads(out)["ledger_entry"]
    monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(home), "review", entry, "--candidate", "1",
                                     "--decision", "confirm"])
    monkeypatch.setenv("FACELEDGER_OPERATOR", "reviewer2")
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2 and "token" in capsys.readouterr().err
    monkeypatch.setenv("FACELEDGER_TOKEN", token)  # with the reviewer's own token it is their review
    monkeypatch.delenv("FACELEDGER_OPERATOR")
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None), capsys.readouterr().err


def test_the_direct_search_setting_chooses_the_path_and_says_why_it_stood_aside(home, capsys, monkeypatch):
    search = ["search", held_out_probes()[0], "--gallery", "g", "--purpose", "test", "--case", "C-9", "--json"]
    monkeypatch.setenv("FACELEDGER_DIRECT_SEARCH", "require")  # the gallery's calibration sample is not made yet
    code, out, _ = run(capsys, monkeypatch, home, *search)
    assert code == 2 and "stood aside" in json.loads(out)["error"]["message"]
    assert "calibration sample" in json.loads(out)["error"]["message"]
    monkeypatch.setenv("FACELEDGER_DIRECT_SEARCH", "off")  # the engine: it makes the sample
    code, out, _ = run(capsys, monkeypatch, home, *search)
    assert code == 0 and json.loads(out)["decision"] == "match"
    monkeypatch.setenv("FACELEDGER_DIRECT_SEARCH", "require")  # now the direct path answers
    code, out, _ = run(capsys, monkeypatch, home, *search)
    assert code == 0 and json.loads(out)["decision"] == "match"
    monkeypatch.setenv("FACELEDGER_DIRECT_SEARCH", "sometimes")
    code, out, _ = run(capsys, monkeypatch, home, *search)
    assert code == 2 and "auto, off or require" in json.loads(out)["error"]["message"]
