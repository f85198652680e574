"""Kill anywhere, the long version of tests/test_faults_kill.py (docs/security.md, "Faults").

    .venv/bin/python benchmarks/faults_kill.py                      # 20 seeds x 300 images, 2 workers
    .venv/bin/python benchmarks/faults_kill.py --seeds 3 --images 60 --no-write

For each seed, on a fresh SQLite data directory: `enroll --workers 2` of --images distinct JPEGs (the
committed LFW sample re-encoded with a seeded change, so each hashes differently) is `kill -9`ed once a
seeded number of images is stored (0: while the workers load), then rerun; two subjects' images are made
to expire and a `purge` is killed (just after its ledger entry commits, plus a seeded 0-0.3 s) and rerun;
an `erase --face` is killed the same way and rerun; a `reindex` is killed at a seeded 0.5-6 s. Then:

- lost: images that should be held (every file that did not fail analysis, and every image an `enroll`
  ledger entry names, less those purged or erased) but are not in the store or whose face the index the
  next search uses does not return at rank 1 for its own embedding;
- duplicated: sha256 values held by two image rows of the gallery;
- orphans: processes the killed commands left running (their descendants, or any process whose
  environment names the data directory), after a bounded wait of 20 s;
- audit ok: `faceledger audit verify` passes and ledger seq numbers are gap-free.

Prints a table and writes benchmarks/results/faults_kill.json (rewritten after each seed).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.faults import kill_cycle


def moment(kill: dict) -> str:
    return f"{kill['after_s']}" if kill["killed"] else f"not killed (done in {kill['after_s']})"


def phase(kill: dict) -> str:
    if not kill["killed"]:
        return "finished first"
    return f"{kill['after_s']} s, " + ("after its commit" if kill["after_commit"] else "before its commit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--append", action="store_true", help="keep the runs already in the JSON and add these")
    args = parser.parse_args()
    out = ROOT / "benchmarks" / "results" / "faults_kill.json"
    rows = json.loads(out.read_text())["runs"] if args.append and out.exists() else []
    started = time.time()
    print("| seed | enrol killed at: s (images stored) | purge killed | erase killed | reindex killed at | "
          "images held at the end | lost | duplicated | orphans | audit ok, gap-free |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        base = Path(tempfile.mkdtemp(prefix=f"faults-kill-{seed}-"))
        try:
            row = kill_cycle(base, seed, images=args.images, workers=args.workers, batch=args.batch)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        rows.append(row)
        kills = {k["command"]: k for k in row["kills"]}
        print(f"| {seed} | {moment(kills['enroll'])} s ({kills['enroll']['stored_at_kill']}) | "
              f"{phase(kills['purge'])} | {phase(kills['erase'])} | "
              f"{moment(kills['reindex'])} s | {row['stored']} | {row['lost']} | {row['duplicated']} | "
              f"{row['orphans']} | {row['audit_ok'] and row['ledger_gap_free']} |", flush=True)
        summary = {
            "runs": len(rows), "images_per_run": args.images, "workers": args.workers, "batch": args.batch,
            "kills": sum(k["killed"] for r in rows for k in r["kills"]),
            "killed_by_command": {c: sum(k["killed"] for r in rows for k in r["kills"] if k["command"] == c)
                                  for c in ("enroll", "purge", "erase", "reindex")},
            "killed_after_commit": {c: sum(k["killed"] and k.get("after_commit", False) for r in rows
                                           for k in r["kills"] if k["command"] == c) for c in ("purge", "erase")},
            "lost": sum(r["lost"] for r in rows), "duplicated": sum(r["duplicated"] for r in rows),
            "unsearchable_faces": sum(r["unsearchable_faces"] for r in rows),
            "not_removed": sum(r["not_removed"] for r in rows), "orphans": sum(r["orphans"] for r in rows),
            "audit_ok": sum(r["audit_ok"] and r["ledger_gap_free"] for r in rows),
            "images_checked": sum(r["stored"] for r in rows),
        }
        if not args.no_write:
            out.write_text(json.dumps({"summary": summary, "runs": rows, "machine": platform.platform(),
                                       "python": platform.python_version(),
                                       "elapsed_s": round(time.time() - started, 1)}, indent=1, default=str))
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
