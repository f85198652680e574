"""How a command starts: the engine makes each service the first time it is needed (so a command imports
only the services it uses), and the CLI imports the engine without the garbage collector and leaves the
command's objects out of the collections at exit. Structural checks only; benchmarks/cli_start.py
measures the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from .conftest import OPEN_FACES, open_test_engine
from .test_cli_imports import SRC, modules_after

NOT_FOR_A_SEARCH = {"video", "watch", "video_jobs", "scan", "evidence", "reports", "review", "people", "users",
                    "galleries", "enrolment"}


def _declare(**services):
    """Make a class with these attributes; the error of a bad declaration (3.11 wraps __set_name__'s)."""
    try:
        type("Declared", (), services)
    except Exception as exc:  # noqa: BLE001 - RuntimeError on 3.11, the TypeError itself on 3.12+
        return exc.__cause__ or exc
    return None


def test_a_service_may_need_only_services_declared_before_it():
    from faceledger.engine import service

    assert _declare(access=service("access", "Access"), users=service("users", "Users", "access")) is None
    later = _declare(users=service("users", "Users", "access"), access=service("access", "Access"))
    assert isinstance(later, TypeError) and "'access'" in str(later) and "declared before" in str(later)
    unknown = _declare(users=service("users", "Users", "accesss"))
    assert isinstance(unknown, TypeError) and "'accesss'" in str(unknown)


def test_services_are_made_on_first_use_once_for_all_threads(tmp_path):
    eng = open_test_engine(tmp_path / "home")
    try:
        assert "reviews" not in vars(eng) and "video" not in vars(eng)  # not needed to open the engine
        start = threading.Barrier(8)
        seen = []

        def first_use() -> None:
            start.wait()
            seen.append(eng.reviews)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 8 and all(s is seen[0] for s in seen) and vars(eng)["reviews"] is seen[0]
        assert eng.searching.indexes is eng.indexes and eng.searching.calibrations is eng.calibrations
        assert eng.review_queue.__self__ is eng.reviews  # the facade's via() lines reach the same service
    finally:
        eng.close()


def test_a_command_imports_only_the_services_it_uses(tmp_path):
    loaded = modules_after("from faceledger.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass",
                           "faces", str(OPEN_FACES / "macron_2014.jpg"), "--json", home=tmp_path / "h")
    assert "faceledger.services.search" in loaded  # it did run
    assert sorted(f"faceledger.services.{m}" for m in NOT_FOR_A_SEARCH if f"faceledger.services.{m}" in loaded) == []


CHECK_COLLECTOR = """
import atexit, gc, sys
counts = []
atexit.register(lambda: print("at exit: more frozen", gc.get_freeze_count() > counts[0], flush=True))
from faceledger import cli_common
if sys.argv[1] == "off":
    gc.disable()
cli_common.imported_quietly("faceledger.engine")
counts.append(gc.get_freeze_count())
print("after import: enabled", gc.isenabled(), "frozen", gc.get_freeze_count() > 0, flush=True)
sys.argv[1:] = ["--home", sys.argv[2], "gallery", "list", "--json"]
from faceledger.cli import main
main()
"""


@pytest.mark.parametrize("collector", ["on", "off"])
def test_the_engine_import_pauses_the_collector_and_the_exit_still_runs_its_handlers(tmp_path, collector):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "FACELEDGER_OPERATOR": "start-tester"}
    env.pop("FACELEDGER_TOKEN", None)
    done = subprocess.run([sys.executable, "-c", CHECK_COLLECTOR, collector, str(tmp_path / "h")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"after import: enabled {collector == 'on'} frozen True"  # restored as it was
    assert lines[-1] == "at exit: more frozen True"  # the command's objects too; an earlier handler still runs
    assert "[]" in "".join(lines[1:-1]).replace(" ", "")  # the command's own output, whole
