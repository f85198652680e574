"""Requests per second and latency of POST /api/v1/search against a running `faceledger serve`.

    .venv/bin/python benchmarks/api_load.py                 # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/api_load.py --requests 40 --no-write   # quick look

The gallery (fresh temporary data directory, SQLite, Flat index) holds --gallery-size faces (10,000):
- real people: --real (default 300) LFW identities from ../shared/data/lfw (first image of each identity
  with at least two, seeded), enrolled through engine.enroll (workers=2), plus the committed test
  gallery (tests/data/lfw, 9 people); without ../shared only the committed ones.
- synthetic distractors: a Gaussian fitted to the real embeddings (mean, covariance shrunk 10% toward
  its diagonal so a few hundred vectors suffice), drawn, L2-normalised and enrolled with
  engine.enroll_embeddings (the real store, batches and ledger entries; no images).

The server is `faceledger serve` in a subprocess on 127.0.0.1 (a free port), with the rate limit off
(FACELEDGER_RATE_LIMIT_PER_MINUTE=0). The load comes from 1, 4 and 16 threads, each with its own
httpx.Client, posting real probe photos (held-out images of enrolled people and people not enrolled,
round-robin) as an analyst; each level stops after --requests requests or --seconds seconds (counted from
the end of its warm-up), whichever comes first, after 4 warm-up requests (the first loads the index and
calibrations; then one per client at once, so a server that makes model copies on demand has made them).
Client and server share this machine's cores. Each level also records the server process's CPU seconds
(user + system, from /proc) per request: on a machine other jobs share, a level's req/s depends on how
much CPU the server gets, and the CPU per request shows whether it did more work.

--baseline OTHER/src: the same levels are run, on the same gallery, against a server started from that
source tree (e.g. `git archive main src | tar -x -C /tmp/before`), in rounds alternating the two servers
(this tree, baseline; then --rounds more), so a change of load on the machine hits both alike.

Prints a markdown table, writes benchmarks/results/api_load.json and api_load.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LFW = REPO.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
RESULTS = REPO / "benchmarks" / "results"


def build_gallery(home: Path, *, size: int, real: int, seed: int) -> tuple[dict, str]:
    from faceledger.enrollment import PrecomputedFace
    from tests.conftest import gallery_files, open_test_engine

    engine = open_test_engine(home)
    engine.create_gallery("bench", purposes=["benchmark"])
    t0 = time.perf_counter()
    files = list(gallery_files())
    if LFW.is_dir() and real:
        people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
        chosen = np.random.default_rng(seed).choice(len(people), size=min(real, len(people)), replace=False)
        files += [sorted(people[i].glob("*.jpg"))[0] for i in sorted(chosen)]
    engine.enroll(files, gallery="bench", subject_from_folder=True, source="LFW", legal_basis="research",
                  on_multiple="largest", workers=2)
    enroll_s = time.perf_counter() - t0
    vectors = np.stack([np.frombuffer(v, np.float32) for v in _embeddings(engine)])
    mean, cov = vectors.mean(axis=0), np.cov(vectors.astype(np.float64), rowvar=False)
    cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov))
    needed = max(0, size - len(vectors))
    drawn = np.random.default_rng(seed).multivariate_normal(mean, cov, size=needed, method="eigh")
    drawn = (drawn / np.linalg.norm(drawn, axis=1, keepdims=True)).astype(np.float32)
    t1 = time.perf_counter()
    engine.enroll_embeddings([PrecomputedFace(
        subject=f"synthetic-{i:05d}", sha256=hashlib.sha256(f"api-load-{i}".encode()).hexdigest(),
        name=f"synthetic://{i:05d}", embedding=drawn[i], model_id=engine.model_id) for i in range(needed)],
        gallery="bench", source="synthetic distractor vector (benchmarks/api_load.py)",
        legal_basis="none needed: no image, a random vector")
    synth_s = time.perf_counter() - t1
    _, token = engine.add_user("bench-analyst", role="analyst")
    info = engine.gallery_info("bench")
    engine.close()
    return {"faces": info["faces"], "real_faces": len(vectors), "synthetic_faces": needed,
            "enroll_real_seconds": round(enroll_s, 1), "enroll_synthetic_seconds": round(synth_s, 1)}, token


def _embeddings(engine):
    from sqlalchemy import select

    from faceledger.store import FaceRecord

    with engine.sessions() as session:
        return list(session.execute(select(FaceRecord.embedding)).scalars())


def probes() -> list[Path]:
    from tests.conftest import held_out_probes, never_enrolled

    return held_out_probes() + never_enrolled()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, src: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    process = subprocess.Popen([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                                "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("faceledger serve did not start")


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def load(base: str, token: str, images: list[tuple[str, bytes]], *, clients: int, requests: int,
         seconds: float, server_pid: int = 0) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    issued = [0]

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            n = offset
            while True:
                with lock:
                    if issued[0] >= requests or time.perf_counter() > deadline:
                        return
                    issued[0] += 1
                name, data = images[n % len(images)]
                n += clients
                t0 = time.perf_counter()
                response = http.post("/api/v1/search", data={"gallery": "bench", "purpose": "benchmark",
                                                             "case": "LOAD-1"},
                                     files={"image": (name, data, "image/jpeg")})
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    def warm(name: str, data: bytes) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300) as http:
            http.post("/api/v1/search", data={"gallery": "bench", "purpose": "benchmark", "case": "WARM"},
                      files={"image": (name, data, "image/jpeg")})

    warm(*images[0])  # the index and the calibrations
    for _ in range(3):  # then as many at once as there are clients (model copies made on demand)
        at_once = [threading.Thread(target=warm, args=images[i % len(images)]) for i in range(clients)]
        for t in at_once:
            t.start()
        for t in at_once:
            t.join()
    deadline = time.perf_counter() + seconds
    cpu0 = server_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = server_cpu_seconds(server_pid) - cpu0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
            "requests_per_second": round(len(latencies) / wall, 2),
            "server_cpu_ms_per_request": round(1000 * cpu / max(len(latencies), 1), 1),
            "server_cores_busy": round(cpu / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_ms": round(float(ms.mean()), 1), "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def markdown(result: dict) -> str:
    g = result["gallery"]
    lines = [f"POST /api/v1/search, `faceledger serve` on 127.0.0.1, gallery of {g['faces']:,} faces "
             f"({g['real_faces']} real, {g['synthetic_faces']:,} synthetic), Flat index, SQLite; "
             f"{result['machine']['cpus']} CPU cores shared by server and clients; load average "
             f"{result['load_average'][0]:.1f} before, {result['load_average_after'][0]:.1f} after.", "",
             "| server | round | concurrent clients | requests | req/s | × 1 client | p50 (ms) | p99 (ms) | "
             "server CPU ms / request | server cores busy | statuses |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in result["levels"]:
        one = next(r for r in result["levels"] if r["clients"] == 1 and r["server"] == row["server"]
                   and r["round"] == row["round"]) if any(r["clients"] == 1 for r in result["levels"]) else row
        lines.append(f"| {row['server']} | {row['round']} | {row['clients']} | {row['requests']} | "
                     f"{row['requests_per_second']:.2f} | {row['requests_per_second'] / one['requests_per_second']:.2f} | "
                     f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['server_cpu_ms_per_request']:.0f} | "
                     f"{row['server_cores_busy']:.2f} | {', '.join(f'{k}: {v}' for k, v in row['statuses'].items())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=300, help="LFW identities enrolled for real")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=150, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=45, help="at most this long per level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another source tree: its server runs the same levels")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (this tree, baseline)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    servers = {"this tree": None, **({"baseline": args.baseline} if args.baseline else {})}
    load_before = os.getloadavg()

    workdir = Path(tempfile.mkdtemp(prefix="faceledger-api-load-"))
    try:
        print("building the gallery ...", file=sys.stderr)
        gallery, token = build_gallery(workdir / "home", size=args.gallery_size, real=args.real, seed=args.seed)
        images = [(p.name, p.read_bytes()) for p in probes()]
        levels = []
        for round_ in range(1, args.rounds + 1):
            for label, src in servers.items():
                port = free_port()
                server = start_server(workdir / "home", port, src)
                try:
                    for clients in args.clients:
                        print(f"round {round_}, {label}: {clients} client(s) ...", file=sys.stderr)
                        row = load(f"http://127.0.0.1:{port}", token, images, clients=clients,
                                   requests=args.requests, seconds=args.seconds, server_pid=server.pid)
                        levels.append({"server": label, "round": round_, **row})
                finally:
                    server.terminate()
                    server.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"benchmark": "api_load", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "gallery": gallery, "probes": len(images), "limits": {"requests": args.requests, "seconds": args.seconds},
              "servers": {k: str(v) if v else "this checkout's src" for k, v in servers.items()},
              "load_average": load_before, "load_average_after": os.getloadavg(), "levels": levels}
    table = markdown(result)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "api_load.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "api_load.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
