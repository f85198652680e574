"""A lean HTTP/1.1 load generator for benchmarks/api_load.py (a module and a child process, not a benchmark).

Why: api_load.py's httpx clients run in the benchmark's own process on the same cores as the server
and took about a third of a core at 4 clients, CPU the server then did not get. This generator costs
a small fraction of that per request, and measures what it costs, so a req/s figure can be read with
the load generator's share of the machine beside it (as `wrk` reports, with its numbers checked).

How it works:
- Every request's bytes are built once before timing (`search_request`): the same request line,
  headers and multipart body as httpx sends for api_load.py's search (fields gallery, purpose, case,
  then the file part `image`; the bearer token), with a fixed boundary. `same_as_httpx` checks the
  bytes against httpx's own encoding of the same request; api_load.py runs that check before each run.
- One process (this file, `python benchmarks/lean_load.py < spec.json`), stdlib only, one thread: N
  keep-alive TCP connections to the server on 127.0.0.1, driven by one `selectors` loop. A connection
  sends its next request as soon as it has read the whole answer to its last one (a closed loop, like
  api_load.py's httpx threads); connection i sends probes i, i+N, i+2N, ... (round-robin, as there).
- Every response is read in full (Content-Length or chunked) and checked: status 200 and a JSON body
  with a `decision`. Anything else is counted as an error, with its status or reason; a connection
  the server closes is reopened and counted.
- Measured over the timed window only: wall time, each request's latency (first byte sent to last
  byte read), this process's own CPU seconds (getrusage: user + system), and the server's CPU seconds
  (/proc/PID/stat of the pid in the spec), read at the start and the end of the window by this
  process, so both CPU figures cover exactly the requests counted.
- Each response's answer (decision, and each candidate's subject and score) is kept per probe, so
  api_load.py can check that the httpx and the lean clients got the same answers to the same probes.

Spec (JSON on stdin): host, port, token, fields (the form fields), probes: [[name, path], ...], clients,
max_requests, seconds, server_pid. Result: one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import sys
import time
from pathlib import Path

BOUNDARY = "faceledgerleanload00000000000000"
"""A fixed multipart boundary, 32 characters like httpx's (which draws a random one per request)."""


def search_request(host: str, port: int, token: str, name: str, data: bytes, *, fields: dict[str, str],
                   user_agent: str = "faceledger-lean-load", boundary_text: str = BOUNDARY) -> bytes:
    """The whole HTTP/1.1 request for POST /api/v1/search, as httpx.Client(...).post(...,
    data=fields, files={"image": (name, data, "image/jpeg")}) with a bearer token sends it."""
    boundary = boundary_text.encode()
    parts = []
    for key, value in fields.items():
        parts.append(b"--" + boundary + b"\r\n" + f'Content-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    parts.append(b"--" + boundary + b"\r\n"
                 + f'Content-Disposition: form-data; name="image"; filename="{name}"\r\n'.encode()
                 + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    head = (f"POST /api/v1/search HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n"
            f"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nUser-Agent: {user_agent}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary_text}\r\n\r\n")
    return head.encode("latin-1") + body


def same_as_httpx(host: str, port: int, token: str, name: str, data: bytes, *, fields: dict[str, str]) -> None:
    """Raise unless `search_request` gives the bytes that httpx sends for the same request, given httpx's
    (random) boundary and its User-Agent: request line, headers in httpx's order, and body. Needs httpx
    (api_load.py has it)."""
    import httpx

    with httpx.Client(base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {token}"}) as client:
        request = client.build_request("POST", "/api/v1/search", data=fields,
                                       files={"image": (name, data, "image/jpeg")})
        body = request.read()
    boundary = request.headers["Content-Type"].partition("boundary=")[2]
    head = "".join(f"{k.decode()}: {v.decode()}\r\n" for k, v in request.headers.raw)
    expected = (f"POST {request.url.raw_path.decode()} HTTP/1.1\r\n{head}\r\n").encode("latin-1") + body
    ours = search_request(host, port, token, name, data, fields=fields,
                          user_agent=request.headers["User-Agent"], boundary_text=boundary)
    if ours != expected:
        at = next((i for i, (a, b) in enumerate(zip(ours, expected)) if a != b), min(len(ours), len(expected)))
        raise SystemExit(f"the lean request differs from httpx's at byte {at}: "
                         f"{ours[max(0, at - 60):at + 60]!r} vs {expected[max(0, at - 60):at + 60]!r}")


def answer_of(body: dict) -> list:
    """What a search answered, to compare across clients: the decision and each candidate's subject and
    score (4 decimals)."""
    return [body.get("decision"), [[c.get("subject"), round(float(c.get("score", 0.0)), 4)]
                                   for c in body.get("candidates", [])]]


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Response:
    """Incremental parse of one HTTP/1.1 response: status, headers, a Content-Length or chunked body."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body_start = -1
        self.length = -1
        self.chunked = False
        self.body = b""

    def feed(self, data: bytes) -> bool:
        """Add bytes read; True once the response is complete."""
        self.buffer += data
        if self.body_start < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                key, _, value = line.partition(":")
                self.headers[key.strip().lower()] = value.strip()
            self.body_start = end + 4
            self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
            self.length = int(self.headers.get("content-length", "0")) if not self.chunked else -1
        if not self.chunked:
            if len(self.buffer) - self.body_start < self.length:
                return False
            self.body = bytes(self.buffer[self.body_start:self.body_start + self.length])
            return True
        return self._dechunk()

    def _dechunk(self) -> bool:
        at, out = self.body_start, bytearray()
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                return False
            size = int(bytes(self.buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:
                if self.buffer.find(b"\r\n\r\n", line_end) < 0 and not self.buffer.endswith(b"0\r\n\r\n"):
                    return False
                self.body = bytes(out)
                return True
            if len(self.buffer) < line_end + 2 + size + 2:
                return False
            out += self.buffer[line_end + 2:line_end + 2 + size]
            at = line_end + 2 + size + 2


class Connection:
    def __init__(self, index: int, host: str, port: int) -> None:
        self.index = index
        self.host, self.port = host, port
        self.next_probe = index
        self.sock: socket.socket | None = None
        self.out = memoryview(b"")
        self.sent = 0
        self.response = Response()
        self.started = 0.0
        self.probe = ""

    def open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        return sock


def run(spec: dict) -> dict:
    host, port = spec["host"], int(spec["port"])
    fields = spec["fields"]
    requests = [(name, search_request(host, port, spec["token"], name, Path(path).read_bytes(), fields=fields))
                for name, path in spec["probes"]]  # every request's bytes, built before timing
    clients, limit, seconds = int(spec["clients"]), int(spec["max_requests"]), float(spec["seconds"])
    server_pid = int(spec.get("server_pid") or 0)
    selector = selectors.DefaultSelector()
    connections = [Connection(i, host, port) for i in range(clients)]
    for conn in connections:
        selector.register(conn.open(), selectors.EVENT_WRITE, conn)

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    answers: dict[str, list] = {}
    differing: dict[str, list] = {}
    issued = 0
    active = 0
    reconnects = 0

    def error(reason: str) -> None:
        errors[reason] = errors.get(reason, 0) + 1

    def start(conn: Connection) -> bool:
        nonlocal issued, active
        if issued >= limit or time.perf_counter() > deadline:
            return False
        issued += 1
        active += 1
        conn.probe, data = requests[conn.next_probe % len(requests)]
        conn.next_probe += clients
        conn.out, conn.sent, conn.response = memoryview(data), 0, Response()
        conn.started = time.perf_counter()
        selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        return True

    def finish(conn: Connection) -> None:
        nonlocal active
        active -= 1
        latencies.append(time.perf_counter() - conn.started)
        response = conn.response
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
        if response.status != 200:
            error(f"status {response.status}")
        elif response.headers.get("content-encoding", "identity") != "identity":
            error(f"content-encoding {response.headers['content-encoding']}")
        else:
            try:
                body = json.loads(response.body)
            except ValueError:
                error("body not JSON")
            else:
                if not isinstance(body, dict) or "decision" not in body:
                    error("no decision in the body")
                else:
                    answer = answer_of(body)
                    seen = answers.setdefault(conn.probe, answer)
                    if seen != answer:
                        differing.setdefault(conn.probe, [seen]).append(answer)
        if response.headers.get("connection", "").lower() == "close":
            reconnect(conn)
        if not start(conn):
            selector.unregister(conn.sock)

    def broken(conn: Connection, reason: str) -> None:
        nonlocal active
        active -= 1
        latencies.append(time.perf_counter() - conn.started)  # a request, answered by an error
        error(reason)
        reconnect(conn)
        if not start(conn):
            selector.unregister(conn.sock)

    def reconnect(conn: Connection) -> None:
        """A new connection in place of one the server closed or broke."""
        nonlocal reconnects
        selector.unregister(conn.sock)
        conn.sock.close()
        selector.register(conn.open(), selectors.EVENT_WRITE, conn)
        reconnects += 1

    deadline = float("inf")
    t0 = time.perf_counter()
    cpu0, server0 = own_cpu(), cpu_of(server_pid)
    deadline = t0 + seconds
    for conn in connections:
        if not start(conn):
            selector.unregister(conn.sock)
    while active:
        for key, events in selector.select(timeout=1.0):
            conn: Connection = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    conn.sent += conn.sock.send(conn.out[conn.sent:])
                    if conn.sent == len(conn.out):
                        selector.modify(conn.sock, selectors.EVENT_READ, conn)
                elif events & selectors.EVENT_READ:
                    data = conn.sock.recv(262144)
                    if not data:
                        broken(conn, "connection closed by the server")
                    elif conn.response.feed(data):
                        finish(conn)
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError) as exc:
                broken(conn, f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - t0
    cpu, server = own_cpu() - cpu0, cpu_of(server_pid) - server0
    for conn in connections:
        if conn.sock is not None:
            conn.sock.close()
    return {"requests": len(latencies), "seconds": wall, "latencies": latencies, "statuses": statuses,
            "errors": errors, "reconnects": reconnects, "generator_cpu_seconds": cpu,
            "server_cpu_seconds": server if server_pid else None, "answers": answers, "differing": differing}


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
