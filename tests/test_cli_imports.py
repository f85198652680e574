"""The CLI starts light: a command imports only what it uses (structural; no timing here).

Each case runs in a fresh interpreter and lists the modules loaded afterwards. The web framework is for
`serve` only, the Milvus client for a Milvus index only, matplotlib for reports only, the evaluation code
for `evaluate` only; `--help` and `import faceledger.cli` load no engine at all.
benchmarks/cli_start.py measures what this saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faceledger

from .conftest import LFW_DIR, OPEN_FACES

SRC = Path(faceledger.__file__).resolve().parents[1]
WEB_AND_PLOTS = {"fastapi", "uvicorn", "starlette", "pymilvus", "matplotlib", "jinja2"}
ENGINE = {"sqlalchemy", "faiss", "cv2", "pydantic_settings"}
PYDANTIC = {"pydantic", "pydantic_core", "pydantic_settings"}
"""Only the API's request models use pydantic: Settings are a dataclass, and typer is kept below 0.29 (which
coerces every argument through pydantic)."""
MARK = "--modules--"

PROBE = f"""
import json, sys
{{code}}
print({MARK!r} + json.dumps(sorted(sys.modules)))
"""
RUN_CLI = """
from faceledger.cli import main
try:
    main()
except SystemExit:
    pass
"""


def modules_after(code: str, *argv: str, home: Path | None = None) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("FACELEDGER_TOKEN", None)
    if home is not None:
        env["FACELEDGER_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", PROBE.format(code=code), *argv], env=env,
                          capture_output=True, check=False, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARK))
    return set(json.loads(line[len(MARK):]))


def tops(modules: set[str], names: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


def test_import_cli_loads_no_web_framework_plots_milvus_or_engine():
    loaded = modules_after("import faceledger.cli")
    assert tops(loaded, WEB_AND_PLOTS) == []
    assert tops(loaded, ENGINE) == [] and tops(loaded, PYDANTIC) == []
    assert "faceledger.engine" not in loaded and "faceledger.evaluate.run" not in loaded


def test_settings_load_no_pydantic(tmp_path):
    loaded = modules_after("from faceledger.config import Settings; Settings()", home=tmp_path / "h")
    assert "faceledger.config" in loaded
    assert tops(loaded, PYDANTIC) == []


def test_help_loads_no_web_framework_plots_milvus_or_engine():
    for argv in (["--help"], ["search", "--help"], ["evaluate", "verification", "--help"]):
        loaded = modules_after(RUN_CLI, *argv)
        assert "faceledger.cli" in loaded, argv
        assert tops(loaded, WEB_AND_PLOTS) == [], argv
        assert tops(loaded, ENGINE) == [] and tops(loaded, PYDANTIC) == [], argv
        assert "faceledger.engine" not in loaded, argv


def test_a_command_loads_the_engine_but_not_the_web_framework_plots_or_evaluation(tmp_path):
    loaded = modules_after(RUN_CLI, "faces", str(OPEN_FACES / "macron_2014.jpg"), "--json", home=tmp_path / "h")
    assert "faceledger.engine" in loaded and "faiss" in loaded  # the probe sees what a command loads
    assert tops(loaded, WEB_AND_PLOTS) == [] and tops(loaded, PYDANTIC) == []
    assert "faceledger.evaluate.run" not in loaded and "faceledger.api" not in loaded


def test_the_probe_sees_the_web_framework_where_it_is_used():
    loaded = modules_after("import faceledger.api")
    assert {"fastapi", "starlette", "jinja2"} <= {m.split(".")[0] for m in loaded}


def test_a_search_in_a_fresh_process_skips_sqlalchemy_alembic_scipy_onnx_and_pydantic_once_its_caches_exist(tmp_path):
    """The search path of a command: the first search (through the engine: it builds the gallery's
    calibration sample) fills <home>/cache with the calibration tail fit and the optimised embedding model;
    the next one reads them back and runs without SQLAlchemy (direct_search.py; FACELEDGER_DIRECT_SEARCH=
    require makes it fail rather than stand aside), so neither SQLAlchemy, Alembic, scipy nor onnx loads,
    and neither parsing the arguments nor Settings loads pydantic; the answer is the same as the first
    run's."""
    home = tmp_path / "h"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "FACELEDGER_HOME": str(home), "FACELEDGER_OPERATOR": "import-tester"}
    env.pop("FACELEDGER_TOKEN", None)
    people = sorted(p for p in LFW_DIR.iterdir() if p.is_dir())[:4]
    cli = [sys.executable, "-c", "from faceledger.cli import main; main()"]
    for step in (["gallery", "create", "g"],
                 ["enroll", *(str(min(p.glob("*.jpg"))) for p in people), "--gallery", "g", "--subject-from-folder",
                  "--source", "LFW", "--legal-basis", "research", "--json"]):
        done = subprocess.run(cli + step, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    probe = max(people[0].glob("*.jpg"))
    search = ["search", str(probe), "--gallery", "g", "--purpose", "test", "--case", "C-1", "--json"]
    first = subprocess.run(cli + search, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert list((home / "cache" / "tail-fits").glob("tail-*.npz"))
    assert list((home / "cache" / "models").glob("sface-*"))

    code = RUN_CLI + "\nimport sys; sys.stdout.flush()"
    done = subprocess.run([sys.executable, "-c", PROBE.format(code=code), *search],
                          env={**env, "FACELEDGER_DIRECT_SEARCH": "require"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(next(line for line in done.stdout.splitlines() if line.startswith(MARK))[len(MARK):]))
    assert "faceledger.direct_search" in loaded and "faiss" in loaded  # it did search, directly
    assert "faceledger.engine" not in loaded
    assert tops(loaded, {"sqlalchemy", "alembic", "scipy", "onnx"} | PYDANTIC) == []
    again = json.loads(done.stdout[:done.stdout.index(MARK)])
    before = json.loads(first.stdout)
    for body in (before, again):
        body.pop("ledger_entry"), body.pop("searched_at", None)
    assert again == before and before["candidates"]


def test_the_newest_revision_read_from_the_files_is_alembics():
    from faceledger import migrations
    from faceledger.store.schema import head_from_files

    assert head_from_files() == migrations.head()
