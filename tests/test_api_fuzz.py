"""Property-based requests generated from the API's own OpenAPI document (Schemathesis), against every
operation of the app in process, as an admin: no answer is a 5xx, none carries a traceback, and no request
makes the server allocate past a memory bound.

Each operation gets Schemathesis' phases: the schema's examples, coverage (boundary and just-out-of-range
values of every parameter, valid and invalid) and fuzzing (FACELEDGER_FUZZ_EXAMPLES random cases, 3 by
default and derandomized for `make test`, so a run is reproducible). A longer, randomized hunt:

    FACELEDGER_FUZZ_EXAMPLES=300 FACELEDGER_FUZZ_RANDOM=1 pytest -m fuzz tests/test_api_fuzz.py
"""

from __future__ import annotations

import os
import tracemalloc

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from faceledger.api import create_app

from .conftest import OPEN_FACES, open_test_engine

EXAMPLES = int(os.environ.get("FACELEDGER_FUZZ_EXAMPLES", "3"))
RANDOM = bool(os.environ.get("FACELEDGER_FUZZ_RANDOM"))
MAX_UPLOAD = 2 * 1024 * 1024
MEMORY_BOUND = 256 * 1024 * 1024
"""Python-level allocations (tracemalloc: numpy and Python objects) of one request, at most. The body cap
is 2 MiB and images are limited to 4 megapixels, so a request that needs more is a missing limit."""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    engine = open_test_engine(tmp_path_factory.mktemp("fuzz") / "home", max_image_pixels=4_000_000)
    engine.create_gallery("g", purposes=["fraud"], allow_investigative=True)
    engine.enroll([OPEN_FACES / "macron_2014.jpg"], gallery="g", subject="EM", source="s", legal_basis="b")
    _, token = engine.add_user("fuzz-admin", role="admin")
    app = create_app(engine.settings.model_copy(update={
        "rate_limit_per_minute": 0, "max_upload_bytes": MAX_UPLOAD, "maintenance_check_seconds": 1e6}),
        engine=engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema, {"Authorization": f"Bearer {token}"}
    try:  # the app's lifespan, which the ASGI transport started, before the engine it uses is closed
        from schemathesis.python.asgi import shutdown_lifespans
        shutdown_lifespans()
    except ImportError:
        pass
    engine.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    return fuzzed[0]


@pytest.fixture(scope="module")
def admin(fuzzed):
    return fuzzed[1]


@pytest.fixture(scope="module")
def memory():
    """Python-level allocations, traced while the module's requests run (tracemalloc)."""
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """Schemathesis 4.32 renames the test node per operation through `Node._nodeid`, which pytest 9.2 no
    longer has; give it one (only its reports use it)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")
WARM: set[str] = set()


@pytest.mark.fuzz
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error_a_traceback_or_too_much_memory(case, admin, memory):
    """Schemathesis' phases for each operation: the schema's examples, coverage (boundary and out-of-range
    values of every parameter, valid and invalid) and fuzzing (EXAMPLES random cases)."""
    tracemalloc.reset_peak()
    response = case.call(headers=dict(admin), timeout=600)  # a generous transport timeout: never a timed failure
    peak = tracemalloc.get_traced_memory()[1]
    case.validate_response(response, checks=[not_a_server_error])
    body = response.content
    assert b"Traceback" not in body and b'File "' not in body, body[:500]
    label = f"{case.method} {case.path}"
    if label in WARM:  # an operation's first request may fill caches (models, calibration)
        assert peak < MEMORY_BOUND, f"{peak:,} bytes allocated for {case.method} {case.formatted_path}"
    WARM.add(label)
