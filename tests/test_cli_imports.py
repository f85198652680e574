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

from .conftest import OPEN_FACES

SRC = Path(faceledger.__file__).resolve().parents[1]
WEB_AND_PLOTS = {"fastapi", "uvicorn", "starlette", "pymilvus", "matplotlib", "jinja2"}
ENGINE = {"sqlalchemy", "faiss", "cv2", "pydantic_settings"}
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
    assert tops(loaded, ENGINE) == []
    assert "faceledger.engine" not in loaded and "faceledger.evaluate.run" not in loaded


def test_help_loads_no_web_framework_plots_milvus_or_engine():
    for argv in (["--help"], ["search", "--help"], ["evaluate", "verification", "--help"]):
        loaded = modules_after(RUN_CLI, *argv)
        assert "faceledger.cli" in loaded, argv
        assert tops(loaded, WEB_AND_PLOTS) == [], argv
        assert tops(loaded, ENGINE) == [], argv
        assert "faceledger.engine" not in loaded, argv


def test_a_command_loads_the_engine_but_not_the_web_framework_plots_or_evaluation(tmp_path):
    loaded = modules_after(RUN_CLI, "faces", str(OPEN_FACES / "macron_2014.jpg"), "--json", home=tmp_path / "h")
    assert "faceledger.engine" in loaded and "faiss" in loaded  # the probe sees what a command loads
    assert tops(loaded, WEB_AND_PLOTS) == []
    assert "faceledger.evaluate.run" not in loaded and "faceledger.api" not in loaded


def test_the_probe_sees_the_web_framework_where_it_is_used():
    loaded = modules_after("import faceledger.api")
    assert {"fastapi", "starlette", "jinja2"} <= {m.split(".")[0] for m in loaded}
