"""`faceledger serve` as a user runs it: a subprocess on 127.0.0.1, waited for by polling /healthz."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_serve(home: Path, log_path: Path, *, env: dict | None = None, start_within: float = 60
                  ) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of `faceledger --home HOME serve`; stopped (then killed) on exit. A server
    that does not answer /healthz within `start_within` seconds fails the test with its log's tail."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", "from faceledger.cli import main; main()", "--home",
                                    str(home), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_within
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail("faceledger serve did not start: " + Path(log_path).read_text()[-2000:])
                time.sleep(0.3)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
