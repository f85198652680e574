"""What a request sends to the server's thread pool: the blocking work (the token check, the route), not
the dependencies that only read what the app and the middleware set. FastAPI runs a plain `def`
dependency in its thread pool, a hop to a worker thread and back for an attribute lookup; under
concurrent searches each hop is two more thread wake-ups and GIL hand-offs (benchmarks/api_load.py)."""

from __future__ import annotations

import functools

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from faceledger.api import create_app
from faceledger.api import deps

from .conftest import held_out_probes, open_test_engine


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    engine = open_test_engine(tmp_path_factory.mktemp("threads") / "home")
    engine.create_gallery("g", purposes=["fraud"])
    token = engine.add_user("analyst-user", role="analyst")[1]
    with TestClient(create_app(engine=engine)) as client:
        yield client, {"Authorization": f"Bearer {token}"}
    engine.close()


@pytest.fixture
def sent_to_threads(monkeypatch):
    """The functions the app hands to the thread pool while the test runs."""
    sent: list = []
    real = anyio.to_thread.run_sync
    monkeypatch.setattr(anyio.to_thread, "run_sync", lambda func, *a, **k: _count(sent, real, func, *a, **k))
    return sent


async def _count(sent: list, real, func, *args, **kwargs):
    inner = func
    while isinstance(inner, functools.partial):
        inner = inner.func
    sent.append(inner)
    return await real(func, *args, **kwargs)


OURS = {deps.engine_of, deps.settings_of, deps.current_user, getattr(deps, "principal_of", None)} - {None}


@pytest.mark.parametrize("method, path", [("GET", "/api/v1/me"), ("GET", "/api/v1/galleries"),
                                          ("POST", "/api/v1/search")])
def test_the_dependencies_run_on_the_event_loop(served, sent_to_threads, method, path):
    client, auth = served
    probe = held_out_probes()[0]
    kwargs = ({"data": {"gallery": "g", "purpose": "fraud", "case": "T-1"},
               "files": {"image": (probe.name, probe.read_bytes(), "image/jpeg")}} if method == "POST" else {})
    response = client.request(method, path, headers=auth, **kwargs)
    assert response.status_code == 200, response.text
    names = [getattr(f, "__qualname__", repr(f)) for f in sent_to_threads]
    assert sent_to_threads and not OURS & set(sent_to_threads), names
    assert any(n.endswith(".authenticate") for n in names), names  # the token check still runs off the loop
    assert "_run_sync_endpoint" in names  # and so does the route
