"""How a command starts: the engine makes each service the first time it is needed, so a command imports
only the services it uses. Structural checks only; benchmarks/cli_start.py measures the time.
"""

from __future__ import annotations

import threading

from .conftest import OPEN_FACES, open_test_engine
from .test_cli_imports import modules_after

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
