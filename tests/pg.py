"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp dir, unix socket only.

Uses the machine's PostgreSQL binaries (/usr/lib/postgresql/*/bin, or initdb on PATH). PostgreSQL
refuses to run as root, so as root the server runs as the `postgres` OS user (the Debian package
creates it) through `runuser`. `make test` installs the package on a fresh Debian/Ubuntu machine
when it is missing and the user is root; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PASSWORD = "pw-" + secrets.token_hex(8)
USER = "faceledger"


def find_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.bin = find_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql, or put initdb on PATH)")
        self.prefix: list[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix="faceledger-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no `postgres` OS user to run the server") from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.prefix:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def _run(self, *cmd: str) -> None:
        result = subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed: {result.stderr.strip() or result.stdout.strip()}")

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@/{database}?host={self.dir}&port={self.port}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.dir), port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "10", "stop")
        except (RuntimeError, subprocess.SubprocessError):  # still shutting down after 10 s: end it
            try:
                os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), 9)
            except (OSError, ValueError, IndexError):
                pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
