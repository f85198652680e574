"""The CLI reads well: --json errors are JSON, help and tables fit 80 columns, the data directory is
named when it is new or where a name was not found, and the demo's commands can be pasted."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faceledger import cli

from .conftest import LFW_DIR, open_test_engine

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def faceledger(*args: str, home: Path, columns: int = 80, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": str(columns), "FACELEDGER_OPERATOR": "output-tester", **env_extra}
    env.pop("FACELEDGER_TOKEN", None)
    env.pop("FACELEDGER_HOME", None)
    return subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'faceledger'; "
                           "from faceledger.cli import main; main()", "--home", str(home), *args],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A data directory with gallery `g`: the first image of three LFW people."""
    home = tmp_path_factory.mktemp("output") / "home"
    engine = open_test_engine(home)
    try:
        engine.create_gallery("g", purposes=["test"])
        for person in sorted(p for p in LFW_DIR.iterdir() if p.is_dir())[:3]:
            engine.enroll([min(person.glob("*.jpg"))], gallery="g", subject=person.name, source="LFW",
                          legal_basis="research")
    finally:
        engine.close()
    return home


def probe() -> Path:
    return max(sorted(p for p in LFW_DIR.iterdir() if p.is_dir())[0].glob("*.jpg"))


# -- --json errors --------------------------------------------------------------------------------------

def test_a_failing_command_given_json_prints_one_json_error_on_stdout_with_the_same_exit_code(home):
    refused = faceledger("search", str(probe()), "--gallery", "g", "--case", "C-1", "--json", home=home)
    assert refused.returncode == 2
    assert json.loads(refused.stdout) == {"error": {"kind": "MissingField", "message": (
        "a purpose is required (--purpose); every search and verification must state it")}}

    unknown = faceledger("search", str(probe()), "--gallery", "nope", "--purpose", "test", "--case", "C-1",
                         "--json", home=home)
    body = json.loads(unknown.stdout)["error"]
    assert unknown.returncode == 2 and body["kind"] == "NotFound" and "'nope'" in body["message"]
    assert str(home.resolve()) in body["message"]  # the data directory it looked in

    usage = faceledger("search", "--gallery", "g", "--json", home=home)  # the image argument is missing
    assert usage.returncode == 2
    assert json.loads(usage.stdout) == {"error": {"kind": "MissingParameter", "message": "Missing argument 'image'."}}


def test_an_unexpected_error_given_json_is_json_too_with_pythons_exit_code(home, tmp_path):
    (tmp_path / "not-an-image.jpg").write_text("plain text")  # fails to enrol: listed for the CSV
    done = faceledger("enroll", str(tmp_path / "not-an-image.jpg"), "--gallery", "g", "--subject", "x", "--source", "s",
                      "--legal-basis", "research", "--failures-csv", str(tmp_path / "no-such-dir" / "f.csv"),
                      "--json", home=home)  # the CSV cannot be written: an OSError, not a FaceledgerError
    assert done.returncode == 1
    body = json.loads(done.stdout)["error"]
    assert body["kind"] == "FileNotFoundError" and "no-such-dir" in body["message"]


def test_without_json_an_error_is_still_one_red_line_on_stderr(home):
    done = faceledger("search", str(probe()), "--gallery", "g", "--case", "C-1", home=home)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: a purpose is required (--purpose); every search and verification must state it"]


# -- the data directory --------------------------------------------------------------------------------

def test_a_new_data_directory_is_announced_and_named_where_a_lookup_fails(tmp_path, home):
    new = tmp_path / "typo-home"
    done = faceledger("search", str(probe()), "--gallery", "g", "--purpose", "test", "--case", "C-1", home=new)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"new data directory {new.resolve()} created"
    assert "unknown gallery 'g'" in lines[1] and f"looked in the data directory {new.resolve()}, new" in lines[1]

    stats = faceledger("stats", home=tmp_path / "other-new")
    assert stats.returncode == 0
    assert stats.stderr.strip() == f"new data directory {(tmp_path / 'other-new').resolve()} created"
    assert str((tmp_path / "other-new").resolve()) in stats.stdout

    known = faceledger("stats", home=home)
    assert known.returncode == 0 and known.stderr == ""  # an existing directory: nothing to announce


# -- 80 columns ----------------------------------------------------------------------------------------

def commands(group, path: tuple[str, ...] = ()):
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from commands(sub, (*path, name))


def option_names(command) -> list[str]:
    """Every name (`--x` and `--no-x`) of every visible option of `command`.

    typer builds its commands from its own copy of click (`typer._click`), not from click, so
    `isinstance(param, click.Option)` is false for all of them; the parameter's kind is read instead,
    which click and typer's copy of it both set."""
    return [name for param in command.params
            if getattr(param, "param_type_name", None) == "option" and not getattr(param, "hidden", False)
            for name in (*param.opts, *param.secondary_opts)]


def test_help_at_80_columns_shows_every_option_name_whole():
    runner = CliRunner()
    root = typer.main.get_command(cli.app)
    checked, names_checked = 0, set()
    for path, command in commands(root):
        result = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"},
                               terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        assert max(len(line) for line in text.splitlines()) <= 80, path
        for name in option_names(command):
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name, text)
            names_checked.add(name)
        assert "…" not in text, (path, text)  # nothing else cut either: a help word, a default
        checked += 1
    assert checked > 30
    # the check above really ran: options were found, the long gallery policy flags among them
    assert {"--home", "--json", "--gallery", "--keep-probe-for-review", "--no-keep-probe-for-review",
            "--no-keep-probe-images"} <= names_checked, sorted(names_checked)


def test_a_search_table_at_80_columns_fits_and_cuts_no_word(home):
    done = faceledger("search", str(probe()), "--gallery", "g", "--purpose", "test", "--case", "C-1", home=home)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table)
    assert "…" not in done.stdout
    assert probe().parent.name in done.stdout  # the subject, whole


# -- the demo ------------------------------------------------------------------------------------------

def test_the_demo_shows_commands_that_paste_back_to_the_same_arguments():
    show = re.search(r"^show\(\) \{.*?^\}", (REPO / "scripts" / "demo.sh").read_text(), re.S | re.M).group(0)
    args = ["faceledger", "gallery", "create", "demo", "--purpose", "identity check", "--source",
            "Wikimedia Commons (see tests/data/CREDITS.md)", "it's", "a$b"]
    done = subprocess.run(["bash", "-c", show + '\nshow "$@"', "show", *args], capture_output=True, text=True,
                          check=True)
    line = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).strip()
    assert line.startswith("$ ") and shlex.split(line[2:]) == args
    assert "--purpose 'identity check'" in line  # quoted only where the shell needs it


def test_the_demo_ends_with_the_two_web_app_lines_the_readme_shows():
    script = (REPO / "scripts" / "demo.sh").read_text().rstrip().splitlines()
    last = [re.fullmatch(r"printf '(.*)\\n' \"\$FACELEDGER_HOME\" \"\$FL\"", line) for line in script[-2:]]
    assert all(last), script[-2:]
    lines = [m.group(1).replace("%s", "demo-data", 1).replace("%s", ".venv/bin/faceledger", 1) for m in last]
    assert lines[0].endswith("user add you --role admin") and lines[1].endswith("serve")
    readme = (REPO / "README.md").read_text()
    assert "\n".join(lines) in readme
