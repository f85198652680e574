"""benchmarks/lean_load.py, the load generator of benchmarks/api_load.py: its requests are the bytes httpx
sends, and it reads and checks every kind of response (Content-Length, chunked, errors, a closed
connection) against a stub server on 127.0.0.1. No timing is asserted (the benchmark measures)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import held_out_probes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lean_load  # noqa: E402

FIELDS = {"gallery": "bench", "purpose": "benchmark", "case": "LOAD-1"}
ANSWER = {"decision": "match", "candidates": [{"subject": "Ada", "score": 0.71234}]}


def test_requests_are_the_bytes_httpx_sends(monkeypatch):
    pytest.importorskip("httpx")
    probe = held_out_probes()[0]
    lean_load.same_as_httpx("127.0.0.1", 8123, "tok", probe.name, probe.read_bytes(), fields=FIELDS)
    real = lean_load.search_request  # a request that lost a field is caught
    monkeypatch.setattr(lean_load, "search_request",
                        lambda *a, fields, **k: real(*a, fields={"gallery": "bench"}, **k))
    with pytest.raises(SystemExit, match="differs from httpx"):
        lean_load.same_as_httpx("127.0.0.1", 8123, "tok", probe.name, probe.read_bytes(), fields=FIELDS)


class Stub(BaseHTTPRequestHandler):
    """Answers by the probe's file name: ok, chunked, error (500), nodecision, close (Connection: close),
    drop (closes without answering)."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str]]] = []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        name = body.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
        fields = {f: body.split(f'name="{f}"\r\n\r\n'.encode(), 1)[1].split(b"\r\n", 1)[0].decode() for f in FIELDS}
        Stub.seen.append((name, {**fields, "auth": self.headers["Authorization"]}))
        kind = name.split(".")[0]
        if kind == "drop":
            self.close_connection = True
            return
        payload = json.dumps({"title": "boom"} if kind == "error" else {"x": 1} if kind == "nodecision"
                             else ANSWER).encode()
        self.send_response(500 if kind == "error" else 200)
        self.send_header("Content-Type", "application/json")
        if kind == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (payload[:5], payload[5:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def stub():
    Stub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _spec(tmp_path: Path, port: int, names: list[str], **over) -> dict:
    probes = []
    for name in names:
        (tmp_path / name).write_bytes(b"\xff\xd8 not really a jpeg " + name.encode())
        probes.append([name, str(tmp_path / name)])
    return {"host": "127.0.0.1", "port": port, "token": "tok", "fields": FIELDS, "probes": probes,
            "clients": 1, "max_requests": 2 * len(names), "seconds": 30, "server_pid": 0, **over}


def test_every_response_is_read_and_checked(stub, tmp_path):
    names = ["ok.jpg", "chunked.jpg", "error.jpg", "nodecision.jpg", "close.jpg", "drop.jpg"]
    result = lean_load.run(_spec(tmp_path, stub, names))
    assert result["requests"] == 12 and len(result["latencies"]) == 12
    assert result["statuses"] == {"200": 8, "500": 2}
    assert result["errors"] == {"status 500": 2, "no decision in the body": 2, "connection closed by the server": 2}
    assert result["reconnects"] == 4  # twice for Connection: close, twice for the dropped connection
    answer = lean_load.answer_of(ANSWER)
    assert result["answers"] == {"ok.jpg": answer, "chunked.jpg": answer, "close.jpg": answer}
    assert result["differing"] == {}
    assert result["generator_cpu_seconds"] >= 0 and result["server_cpu_seconds"] is None
    # round-robin, each request with its fields and token, as api_load.py's httpx clients send them
    assert [name for name, _ in Stub.seen] == names * 2
    assert all(fields == {**FIELDS, "auth": "Bearer tok"} for _, fields in Stub.seen)


def test_connections_share_the_request_budget(stub, tmp_path):
    result = lean_load.run(_spec(tmp_path, stub, ["ok.jpg", "chunked.jpg", "close.jpg"], clients=4,
                                 max_requests=25))
    assert result["requests"] == 25 and sum(result["statuses"].values()) == 25 and result["errors"] == {}
    assert len(Stub.seen) == 25
