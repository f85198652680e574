"""Requests per second and latency of POST /api/v1/search against a running `faceledger serve`.

How to run it (from the repository root, after `make install`; needs ../shared/data/lfw for the 300 real
people, else only the committed test gallery is enrolled for real):

    # the full measurement, on a quiet machine: both load generators at 1, 4 and 16 clients on one server,
    # 150 requests (or 45 s) per level and generator; about 2 minutes on 2 cores (the gallery: 20 s;
    # `--requests 60` took 58 s at load average 1.4-3.2)
    .venv/bin/python benchmarks/api_load.py --client lean httpx

    # the lean generator alone (the default), e.g. three rounds to see the spread
    .venv/bin/python benchmarks/api_load.py --rounds 3

    # a quick look that writes nothing
    .venv/bin/python benchmarks/api_load.py --client lean httpx --requests 60 --no-write

Read the load average printed with the table (and `uptime` before starting): the server and the load
generator share the machine's cores, so any other job lowers the figures, most at 4 and 16 clients.

The gallery (fresh temporary data directory, SQLite, Flat index) holds --gallery-size faces (10,000):
- real people: --real (default 300) LFW identities from ../shared/data/lfw (first image of each identity
  with at least two, seeded), enrolled through engine.enroll (workers=2), plus the committed test
  gallery (tests/data/lfw, 9 people); without ../shared only the committed ones.
- synthetic distractors: a Gaussian fitted to the real embeddings (mean, covariance shrunk 10% toward
  its diagonal so a few hundred vectors suffice), drawn, L2-normalised and enrolled with
  engine.enroll_embeddings (the real store, batches and ledger entries; no images).

The server is `faceledger serve` in a subprocess on 127.0.0.1 (a free port), with the rate limit off
(FACELEDGER_RATE_LIMIT_PER_MINUTE=0). Each level posts the 12 committed probe photos (held-out images of
enrolled people and people not enrolled, round-robin: client i sends probes i, i+N, ...) as an analyst,
with the form fields gallery, purpose and case; it stops after --requests requests or --seconds seconds
(counted from the end of its warm-up), whichever comes first, after 4 warm-up requests (the first loads
the index and calibrations; then one per client at once, so a server that makes model copies on demand has
made them).

Two load generators (--client, one or both; both run every level on the same server, one after the other):
- `lean` (default): benchmarks/lean_load.py, one separate process with one thread driving N keep-alive
  HTTP/1.1 connections through a `selectors` loop; every request's bytes are built before timing. Its
  requests are checked, before each run, to be byte for byte what httpx sends for the same search (but
  for the multipart boundary and the User-Agent): `lean_load.same_as_httpx`.
- `httpx`: N threads of this process, each with its own httpx.Client, as the earlier figures were made.
  Its CPU comes from the same cores as the server's (a third of a core at 4 clients), which is why the
  lean one is the default.
For each level the table gives the generator's own CPU per request (getrusage over the timed window: the
lean process, or this whole process for httpx) beside the server's (user + system from /proc over the same
window), and both as cores busy: on a shared machine a level's req/s depends on how much CPU the server
gets, and the CPU per request shows whether it did more work. Every response is checked (status 200 and a
JSON body with a `decision`); anything else is counted in `errors`. Each probe's answer (decision and the
candidates' subjects and scores) is kept per generator, and the run reports whether the two generators got
the same answers to the same probes.

--baseline OTHER/src: the same levels are run, on the same gallery, against a server started from that
source tree (e.g. `git archive main src | tar -x -C /tmp/before`), in rounds alternating the two servers
(this tree, baseline; then --rounds more), so a change of load on the machine hits both alike.

Prints a markdown table, writes benchmarks/results/OUT.json and OUT.md (--out, default api_load).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
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
sys.path.insert(0, str(REPO / "benchmarks"))

from lean_load import answer_of, same_as_httpx  # noqa: E402
LFW = REPO.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
RESULTS = REPO / "benchmarks" / "results"
USAGE = __doc__[__doc__.index("How to run it"):__doc__.index("The gallery (fresh")].rstrip()


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


FIELDS = {"gallery": "bench", "purpose": "benchmark", "case": "LOAD-1"}
"""The form fields of every timed request (the file part `image` follows them)."""
CLIENTS = ("lean", "httpx")


def warm_up(base: str, token: str, images: list[tuple[str, bytes]], *, clients: int) -> None:
    """4 untimed requests (httpx, whichever client is measured): the first loads the index and the
    calibrations; then `clients` at once, three times, so a server that makes model copies on demand has
    made them."""
    def warm(name: str, data: bytes) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300) as http:
            http.post("/api/v1/search", data={**FIELDS, "case": "WARM"}, files={"image": (name, data, "image/jpeg")})

    warm(*images[0])  # the index and the calibrations
    for _ in range(3):  # then as many at once as there are clients (model copies made on demand)
        at_once = [threading.Thread(target=warm, args=images[i % len(images)]) for i in range(clients)]
        for t in at_once:
            t.start()
        for t in at_once:
            t.join()


def own_cpu_seconds() -> float:
    """This process's user + system CPU seconds, all threads (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_httpx(base: str, token: str, images: list[tuple[str, bytes]], *, clients: int, requests: int,
               seconds: float, server_pid: int = 0) -> dict:
    """The first generator: `clients` threads of this process, each with its own httpx.Client."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    answers: dict[str, list] = {}
    differing: dict[str, list] = {}
    lock = threading.Lock()
    issued = [0]

    def check(name: str, response: httpx.Response) -> None:  # under the lock
        if response.status_code != 200:
            errors[f"status {response.status_code}"] = errors.get(f"status {response.status_code}", 0) + 1
            return
        try:
            body = response.json()
        except ValueError:
            errors["body not JSON"] = errors.get("body not JSON", 0) + 1
            return
        if not isinstance(body, dict) or "decision" not in body:
            errors["no decision in the body"] = errors.get("no decision in the body", 0) + 1
            return
        answer = answer_of(body)
        if answers.setdefault(name, answer) != answer:
            differing.setdefault(name, [answers[name]]).append(answer)

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
                try:
                    response = http.post("/api/v1/search", data=FIELDS, files={"image": (name, data, "image/jpeg")})
                except httpx.HTTPError as exc:
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    check(name, response)

    deadline = time.perf_counter() + seconds
    cpu0, own0 = server_cpu_seconds(server_pid), own_cpu_seconds()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu, own = server_cpu_seconds(server_pid) - cpu0, own_cpu_seconds() - own0
    return {"requests": len(latencies), "seconds": wall, "latencies": latencies,
            "statuses": {str(k): v for k, v in statuses.items()}, "errors": errors, "reconnects": None,
            "generator_cpu_seconds": own, "server_cpu_seconds": cpu, "answers": answers, "differing": differing}


def load_lean(port: int, token: str, probe_paths: list[Path], *, clients: int, requests: int, seconds: float,
              server_pid: int = 0) -> dict:
    """The lean generator (benchmarks/lean_load.py) in its own process: it builds every request's bytes,
    then times the level and reads its own and the server's CPU over exactly that window."""
    spec = {"host": "127.0.0.1", "port": port, "token": token, "fields": FIELDS,
            "probes": [[p.name, str(p)] for p in probe_paths], "clients": clients, "max_requests": requests,
            "seconds": seconds, "server_pid": server_pid}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("lean_load.py"))], input=json.dumps(spec),
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"lean_load.py failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def load(base: str, port: int, token: str, probe_paths: list[Path], *, client: str, clients: int, requests: int,
         seconds: float, server_pid: int = 0) -> tuple[dict, dict]:
    """One level: warm-up, then `requests` requests (or `seconds`) from `clients` concurrent clients of
    the kind `client`. The row for the table, and the answers per probe (for the agreement check)."""
    images = [(p.name, p.read_bytes()) for p in probe_paths]
    warm_up(base, token, images, clients=clients)
    if client == "httpx":
        raw = load_httpx(base, token, images, clients=clients, requests=requests, seconds=seconds,
                         server_pid=server_pid)
    else:
        raw = load_lean(port, token, probe_paths, clients=clients, requests=requests, seconds=seconds,
                        server_pid=server_pid)
    n, wall = max(raw["requests"], 1), raw["seconds"]
    ms = np.array(raw["latencies"] or [0.0]) * 1000
    server_cpu = raw["server_cpu_seconds"] or 0.0
    row = {"client": client, "clients": clients, "requests": raw["requests"], "seconds": round(wall, 2),
           "requests_per_second": round(raw["requests"] / wall, 2),
           "server_cpu_ms_per_request": round(1000 * server_cpu / n, 1),
           "server_cores_busy": round(server_cpu / wall, 2),
           "generator_cpu_ms_per_request": round(1000 * raw["generator_cpu_seconds"] / n, 2),
           "generator_cores_busy": round(raw["generator_cpu_seconds"] / wall, 3),
           "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
           "mean_ms": round(float(ms.mean()), 1),
           "statuses": dict(sorted(raw["statuses"].items())), "errors": raw["errors"],
           "reconnects": raw["reconnects"], "answers_differing_within_level": raw["differing"]}
    return row, raw["answers"]


def agreement(answers: dict[str, dict[str, list]]) -> dict:
    """Whether every client kind got the same answer (decision, candidates' subjects and scores) to each
    probe: `answers` maps a client kind to {probe name: answer}."""
    kinds = sorted(answers)
    probes_seen = sorted(set().union(*(set(a) for a in answers.values()))) if answers else []
    differing = {name: {k: answers[k].get(name) for k in kinds} for name in probes_seen
                 if len({json.dumps(answers[k].get(name)) for k in kinds if name in answers[k]}) > 1}
    both = [name for name in probes_seen if all(name in answers[k] for k in kinds)]
    return {"clients": kinds, "probes_answered_by_all": len(both), "probes_seen": len(probes_seen),
            "differing": differing}


def markdown(result: dict) -> str:
    g = result["gallery"]
    lines = [f"POST /api/v1/search, `faceledger serve` on 127.0.0.1, gallery of {g['faces']:,} faces "
             f"({g['real_faces']} real, {g['synthetic_faces']:,} synthetic), Flat index, SQLite; "
             f"{result['machine']['cpus']} CPU cores shared by server and load generator; load average "
             f"{result['load_average'][0]:.2f} before, {result['load_average_after'][0]:.2f} after "
             f"(1-minute; 5-minute {result['load_average'][1]:.2f} before, {result['load_average_after'][1]:.2f} "
             f"after). Load generator: `lean` = benchmarks/lean_load.py (one separate process, raw keep-alive "
             f"sockets, requests built before timing), `httpx` = one httpx.Client per thread in the benchmark's "
             f"process (the earlier figures).", "",
             "| server | round | client | concurrent clients | requests | req/s | × 1 client | p50 (ms) | p99 (ms) | "
             "server CPU ms / request | server cores busy | generator CPU ms / request | generator cores busy | "
             "statuses | errors |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in result["levels"]:
        one = next((r for r in result["levels"] if r["clients"] == 1 and r["server"] == row["server"]
                    and r["round"] == row["round"] and r["client"] == row["client"]), None)
        ratio = f"{row['requests_per_second'] / one['requests_per_second']:.2f}" if one else "-"
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
        lines.append(f"| {row['server']} | {row['round']} | {row['client']} | {row['clients']} | {row['requests']} | "
                     f"{row['requests_per_second']:.2f} | {ratio} | "
                     f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['server_cpu_ms_per_request']:.1f} | "
                     f"{row['server_cores_busy']:.2f} | {row['generator_cpu_ms_per_request']:.2f} | "
                     f"{row['generator_cores_busy']:.3f} | "
                     f"{', '.join(f'{k}: {v}' for k, v in row['statuses'].items())} | {errors} |")
    for server, check in result["answers_agree"].items():
        if len(check["clients"]) > 1:
            verdict = ("the same answer from every client kind" if not check["differing"]
                       else f"DIFFERENT answers for {len(check['differing'])} probe(s): {sorted(check['differing'])}")
            lines.append(f"\n{server}: {check['probes_answered_by_all']} of {check['probes_seen']} probes answered "
                         f"to {' and '.join(check['clients'])}: {verdict} (decision, candidates' subjects and scores).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=300, help="LFW identities enrolled for real")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--client", nargs="+", choices=CLIENTS, default=["lean"],
                        help="load generator(s), each run at every level in turn: lean (default; "
                             "benchmarks/lean_load.py, a separate process) and/or httpx (the earlier figures)")
    parser.add_argument("--requests", type=int, default=150, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=45, help="at most this long per level")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another source tree: its server runs the same levels")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (this tree, baseline)")
    parser.add_argument("--out", default="api_load", help="results/OUT.json and OUT.md (default api_load)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    clients_kinds = list(dict.fromkeys(args.client))
    servers = {"this tree": None, **({"baseline": args.baseline} if args.baseline else {})}
    load_before = os.getloadavg()

    probe_paths = probes()
    for path in probe_paths:  # the lean requests are byte for byte what httpx sends (boundary, user agent aside)
        same_as_httpx("127.0.0.1", 8000, "token", path.name, path.read_bytes(), fields=FIELDS)
    workdir = Path(tempfile.mkdtemp(prefix="faceledger-api-load-"))
    answers: dict[str, dict[str, dict[str, list]]] = {}
    try:
        print("building the gallery ...", file=sys.stderr)
        gallery, token = build_gallery(workdir / "home", size=args.gallery_size, real=args.real, seed=args.seed)
        levels = []
        for round_ in range(1, args.rounds + 1):
            for label, src in servers.items():
                port = free_port()
                server = start_server(workdir / "home", port, src)
                try:
                    for clients in args.clients:
                        for client in clients_kinds:
                            print(f"round {round_}, {label}: {clients} {client} client(s) ...", file=sys.stderr)
                            row, seen = load(f"http://127.0.0.1:{port}", port, token, probe_paths, client=client,
                                             clients=clients, requests=args.requests, seconds=args.seconds,
                                             server_pid=server.pid)
                            levels.append({"server": label, "round": round_, **row})
                            kept = answers.setdefault(label, {}).setdefault(client, {})
                            for name, answer in seen.items():
                                if kept.setdefault(name, answer) != answer:
                                    row["answers_differing_within_level"].setdefault(name, [kept[name]]).append(answer)
                finally:
                    server.terminate()
                    server.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"benchmark": "api_load", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "gallery": gallery, "probes": len(probe_paths), "limits": {"requests": args.requests, "seconds": args.seconds},
              "servers": {k: str(v) if v else "this checkout's src" for k, v in servers.items()},
              "clients": clients_kinds, "load_average": load_before, "load_average_after": os.getloadavg(),
              "levels": levels, "answers_agree": {label: agreement(kinds) for label, kinds in answers.items()}}
    table = markdown(result)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / f"{args.out}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
