"""Time and peak Python memory of the review queue (`Engine.review_queue`) and of the recent-searches list
(`Engine.recent_searches(limit=50)`, the first page of /searches) as the ledger holds more searches, on
this tree and, with --baseline-src, on another tree's code (e.g. main before the table of open reviews) in
the same sitting: the same script, store recipe and sizes, run in a child process with that tree's src
first on the import path.

    .venv/bin/python benchmarks/review_queue.py --baseline-src /work/main/src   # sizes 1000, 10000, 50000
    .venv/bin/python benchmarks/review_queue.py --sizes 1000 --runs 3 --no-write

One real search (tests/data, an investigative search of the committed gallery with 2 candidates) is made
through the engine; its ledger payload is then appended again and again through `Ledger.append` (the real
hash chain, 2,000 entries per transaction; every search of gallery "g") with its case changed to `C-<i>`, each queued as the search
service queues it (`queue_search`, where the tree has the table): 70% keep the two candidates, 30% have
none (as a "no match"); one in five searches with candidates gets a decision on both candidates (so it
leaves the queue: `close_review`, as a settling review does) and one in five a decision on one. Each
query runs --runs times (median reported); memory is tracemalloc's peak during one run. On a tree with
the table, the upgrade that fills it from the ledger (revision 0005) is timed too: the store is taken
back to 0004 and upgraded again.

Prints a markdown table, writes benchmarks/results/review_queue.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
BATCH = 2000


def fill(engine, template: dict, start: int, stop: int) -> None:
    from faceledger.services.context import utcnow
    from faceledger.store import Review

    try:
        from faceledger.store.open_reviews import close_review, queue_search
    except ImportError:  # a tree before the table of open reviews (the baseline)
        close_review = queue_search = None

    for first in range(start, stop, BATCH):
        with engine.writing() as session:
            for i in range(first, min(first + BATCH, stop)):
                payload = {**template, "case": f"C-{i}"}
                if i % 10 >= 7:
                    payload["candidates"], payload["decision"] = [], "no_match"
                entry = engine.ledger.append(session, actor="bench-analyst", action="search", payload=payload)
                if queue_search:
                    queue_search(session, entry)
                if payload["candidates"] and i % 5 in (0, 1):
                    for rank in (1, 2) if i % 5 == 0 else (1,):
                        session.add(Review(search_entry_id=entry.entry_id, candidate_rank=rank, subject="s",
                                           decision="reject", reviewer="bench-reviewer", created_at=utcnow(),
                                           ledger_entry=entry.entry_id))
                    if i % 5 == 0 and close_review:
                        session.flush()
                        close_review(session, entry.entry_id)
            session.commit()
        engine.ledger.note_committed(entry)


def time_backfill(engine) -> float | None:
    """Seconds to upgrade the store from 0004 to the head again (filling the table from the ledger)."""
    from alembic import command

    from faceledger import migrations

    if "0005" not in {s.revision for s in migrations.script().walk_revisions()}:
        return None
    with engine.db.begin() as conn:
        command.downgrade(migrations.config(conn), "0004")
    t0 = time.perf_counter()
    with engine.db.begin() as conn:
        command.upgrade(migrations.config(conn), "head")
    return time.perf_counter() - t0


def measure(call, runs: int) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"median_s": statistics.median(times), "min_s": min(times), "peak_mib": peak / 2**20,
            "result_size": result["total"] if isinstance(result, dict) else len(result)}


def run_tree(sizes: list[int], runs: int) -> list[dict]:
    from faceledger.policy import Principal
    from tests.conftest import gallery_files, held_out_probes, open_test_engine

    reviewer = Principal("bench-reviewer-2", "reviewer")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_test_engine(Path(tmp) / "home")
        engine.create_gallery("g", allow_investigative=True)
        engine.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
        real = engine.search(held_out_probes()[0], gallery="g", purpose="benchmark", case="C-real", top_k=2,
                             investigative=True, by=Principal("bench-analyst", "analyst"))
        template = engine.ledger.entries(action="search")[-1]["payload"]
        template.pop("acting_from", None)
        assert len(real.candidates) == 2
        made = 1
        for size in sorted(sizes):
            t0 = time.perf_counter()
            fill(engine, template, made, size)
            fill_s, made = time.perf_counter() - t0, size
            queue = measure(lambda: engine.review_queue(limit=20, by=reviewer), runs)
            case = measure(lambda s=size: engine.review_queue(case=f"C-{s // 2}", by=reviewer), runs)
            by_gallery = measure(lambda: engine.review_queue(gallery="g", limit=20, by=reviewer), runs)
            recent = measure(lambda: engine.recent_searches(limit=50, by=reviewer), runs)
            rows.append({"searches": size, "fill_s": round(fill_s, 2), "queue_page": queue, "queue_by_case": case,
                         "queue_by_gallery": by_gallery, "recent_searches_50": recent})
            print(f"{size:>7} searches: queue page {queue['median_s'] * 1000:8.1f} ms ({queue['result_size']} "
                  f"awaiting), by case {case['median_s'] * 1000:8.1f} ms, recent 50 "
                  f"{recent['median_s'] * 1000:8.1f} ms", file=sys.stderr, flush=True)
        backfill = time_backfill(engine)
        if backfill is not None:
            rows[-1]["backfill_s"] = round(backfill, 2)
            check = engine.review_queue(limit=20, by=reviewer)
            assert check["total"] == rows[-1]["queue_page"]["result_size"], "the back-filled queue differs"
        engine.close()
    return rows


def run_baseline(src: str, sizes: list[int], runs: int) -> list[dict]:
    """This script on another tree's code, in a child process; its rows."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, "--emit-json", "--runs", str(runs), "--sizes",
                           *map(str, sizes)], env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-src", help="another tree's src folder, measured the same way first")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # the baseline's child
    args = parser.parse_args()

    if args.emit_json:
        print(json.dumps(run_tree(args.sizes, args.runs)))
        return
    import faceledger

    baseline = None
    if args.baseline_src:
        print(f"baseline: {args.baseline_src}", file=sys.stderr)
        baseline = run_baseline(args.baseline_src, args.sizes, args.runs)
    print(f"this tree: {Path(faceledger.__file__).parent}", file=sys.stderr)
    rows = run_tree(args.sizes, args.runs)

    def ms(row, key):
        return f"{row[key]['median_s'] * 1000:,.1f} ms"

    print("\n| searches in the ledger | awaiting review | queue, first page of 20 (median) | queue, one case (median) | "
          "queue, one gallery, first page (median) | recent_searches(50) (median) | peak MiB queue / recent | back-fill of the table (upgrade 0004→0005) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, r in enumerate(rows):
        b = baseline[i] if baseline else None
        before = (lambda key: f"{ms(b, key)} → ") if b else (lambda key: "")
        peak = (f"{b['queue_page']['peak_mib']:.1f} / {b['recent_searches_50']['peak_mib']:.1f} → " if b else "")
        print(f"| {r['searches']:,} | {r['queue_page']['result_size']:,} | {before('queue_page')}{ms(r, 'queue_page')} | "
              f"{before('queue_by_case')}{ms(r, 'queue_by_case')} | {before('queue_by_gallery')}{ms(r, 'queue_by_gallery')} | "
              f"{before('recent_searches_50')}"
              f"{ms(r, 'recent_searches_50')} | {peak}{r['queue_page']['peak_mib']:.1f} / "
              f"{r['recent_searches_50']['peak_mib']:.1f} | {r.get('backfill_s', '–')}"
              f"{' s' if 'backfill_s' in r else ''} |")
    if baseline:
        print("\n(before → after: the baseline tree, then this one, same sitting)")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "review_queue.json"
        out.write_text(json.dumps({
            "benchmark": "review_queue", "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_avg_1m_at_end": os.getloadavg()[0]},
            "runs": args.runs, "database": "SQLite (WAL), fresh temporary data directory", "rows": rows,
            "baseline": {"src": args.baseline_src, "rows": baseline} if baseline else None}, indent=2))
        print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
