"""A throwaway Milvus standalone server on 127.0.0.1 for the tests (see tests/conftest.py: milvus_server).

It comes from PyPI's `milvus` package (2.3.5, Linux x86_64 wheels only, installed by `make test`
through the `dev` extra): a real Milvus standalone binary with embedded etcd, local storage and rocksmq,
unpacked into the test's temporary directory. Set FACELEDGER_TEST_MILVUS_URL=milvus://HOST:PORT to
use a server you already run (e.g. the official Docker image) instead.

Known limit of that package: its embedded etcd always listens on 127.0.0.1:2380, so only one such
server runs per machine; a second one exits at start-up, and the tests that need it are skipped with
that reason.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_GUARD_S = 240  # a hang guard: a start-up is ~15 s; it is not a timing assertion


class MilvusUnavailable(RuntimeError):
    """No Milvus server can run here; the message says why."""


class LocalMilvus:
    def __init__(self, url: str, server=None) -> None:
        self.url = url
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def start(base: Path) -> LocalMilvus:
    """A running server (or the one named by FACELEDGER_TEST_MILVUS_URL), answering pymilvus."""
    given = os.environ.get("FACELEDGER_TEST_MILVUS_URL")
    if given:
        check_client(given)
        return LocalMilvus(given)
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise MilvusUnavailable(f"PyPI's `milvus` package ships Linux x86_64 binaries only (this is "
                                f"{sys.platform} {platform.machine()})")
    try:
        from milvus import MilvusServer
    except ImportError:
        raise MilvusUnavailable("PyPI's `milvus` package is not installed (pip install 'milvus==2.3.5'; "
                                "`make test` installs it)") from None
    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(str(base))
    server.start()  # unpacks the binaries, picks free ports, spawns `milvus run standalone`
    proc, logs = server.server_proc, Path(server.config.base_data_dir) / "logs"
    health = f"http://127.0.0.1:{server.webservice_port}/healthz"
    deadline = time.monotonic() + START_GUARD_S
    while True:
        if proc.poll() is not None:
            server.server_proc = None
            server.stop()
            raise MilvusUnavailable(f"the Milvus {_version()} server exited at start-up (code {proc.returncode}): "
                                    f"{_first_error(logs)}")
        try:
            with urllib.request.urlopen(health, timeout=5) as answer:
                if b"OK" in answer.read():
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise MilvusUnavailable(f"the Milvus server did not become healthy; see {logs}")
        time.sleep(0.5)
    url = f"milvus://127.0.0.1:{server.listen_port}"
    try:
        check_client(url)
    except MilvusUnavailable:
        server.stop()
        raise
    return LocalMilvus(url, server)


def check_client(url: str) -> None:
    """Our pymilvus must be able to talk to it (it may be much newer than the server)."""
    from pymilvus import MilvusClient

    address = url.replace("milvus://", "http://", 1)
    try:
        client = MilvusClient(address, timeout=30)
        client.list_collections()
        client.close()
    except Exception as exc:  # noqa: BLE001 - the reason goes into the skip message
        raise MilvusUnavailable(f"pymilvus cannot talk to the Milvus server at {address}: {exc}") from None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("milvus")
    except Exception:  # noqa: BLE001
        return "?"


def _first_error(logs: Path) -> str:
    for name in ("milvus-stdout.log", "milvus-stderr.log"):
        try:
            lines = (logs / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if "[ERROR]" in line or "panic:" in line:
                text = line.split("[ERROR]", 1)[-1].strip()[:300]
                if "address already in use" in text:
                    text += " (another Milvus server, with its embedded etcd, already runs on this machine)"
                return text
    return f"no error in {logs}"


def main() -> None:
    """`python -m tests.milvus_server [DIR]`: run a server in DIR until Ctrl+C; print its FACELEDGER_INDEX."""
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "milvus-data").resolve()
    try:
        server = start(base)
    except MilvusUnavailable as exc:
        sys.exit(f"error: {exc}")
    print(f"Milvus is running (data and logs in {base}); stop it with Ctrl+C.\n"
          f"export FACELEDGER_INDEX='{server.url}'", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
