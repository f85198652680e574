"""Many writers, the script version of tests/test_faults_writers.py (docs/security.md, "Faults").

    .venv/bin/python benchmarks/faults_writers.py                 # 60 s, FAISS, then Milvus if a server can run
    .venv/bin/python benchmarks/faults_writers.py --duration 30 --no-milvus --no-write

A throwaway PostgreSQL server (tests/pg.py) holds one database; two `faceledger serve` processes use it
(one data directory for their index files and ledger head file). Eight client threads (an enroller, an
analyst, a reviewer and an admin per server) enrol uploads, search, review, erase subjects and purge over
HTTP for --duration seconds; server B is `kill -9`ed at a seeded moment between 35% and 65% of the run
and its clients move to A (an enrolment that died with B is retried on A). Each client waits for its
answer before the next request, so requests/s is what eight sequential clients get from the servers on
this machine, not a saturation figure. With a Milvus server (tests/milvus_server.py), the same run on one
shared collection.

Prints a table and writes benchmarks/results/faults_writers.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.faults import writers_run
from tests.pg import PgServer

KEYS = ("requests", "requests_per_s", "killed_b_at_s", "acknowledged_enrolments", "acknowledged_missing",
        "duplicated", "server_errors_a", "server_errors_b", "orphans", "ledger_entries", "ledger_gap_free",
        "audit_ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--uploads", type=int, default=600)
    parser.add_argument("--no-milvus", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = []
    pg = PgServer()
    try:
        indexes: list[tuple[str, str | None, object]] = [("faiss (per process)", None, None)]
        if not args.no_milvus:
            from tests.milvus_server import MilvusUnavailable, start

            try:
                milvus = start(Path(tempfile.mkdtemp(prefix="faults-milvus-")))
                indexes.append(("milvus server (shared)", milvus.url, milvus))
            except MilvusUnavailable as exc:
                runs.append({"index": "milvus server (shared)", "skipped": str(exc)})
        for label, index, _ in indexes:
            base = Path(tempfile.mkdtemp(prefix="faults-writers-"))
            try:
                row = writers_run(base, pg.create_database(), duration_s=args.duration, index=index,
                                  seed=args.seed, uploads=args.uploads)
            finally:
                shutil.rmtree(base, ignore_errors=True)
            runs.append({"index": label, **{k: v for k, v in row.items() if not k.endswith("_tail")}})
        for _, _, server in indexes:
            if server is not None:
                server.stop()
    finally:
        pg.stop()
    print("| index | " + " | ".join(KEYS) + " |")
    print("| --- |" + " ---: |" * len(KEYS))
    for run in runs:
        if "skipped" in run:
            print(f"| {run['index']} | skipped: {run['skipped']} |")
        else:
            print(f"| {run['index']} | " + " | ".join(str(run[k]) for k in KEYS) + " |")
    if not args.no_write:
        (ROOT / "benchmarks" / "results" / "faults_writers.json").write_text(json.dumps(
            {"duration_s": args.duration, "seed": args.seed, "runs": runs, "machine": platform.platform(),
             "python": platform.python_version()}, indent=1, default=str))


if __name__ == "__main__":
    main()
