"""Time and peak Python memory of the review queue (`Engine.review_queue`) as the ledger holds more
searches, beside the list it replaces for reviewers (`Engine.recent_searches(limit=50)`, which reads every
search entry too) — both measured in the same run on the same store.

    .venv/bin/python benchmarks/review_queue.py                    # sizes 1000, 10000, 50000
    .venv/bin/python benchmarks/review_queue.py --sizes 1000 --runs 3 --no-write

One real search (tests/data, an investigative search of the committed gallery with 2 candidates) is made
through the engine; its ledger payload is then appended again and again through `Ledger.append` (the real
hash chain, 2,000 entries per transaction) with its case changed to `C-<i>`: 70% keep the two
candidates, 30% have none (as a "no match"); one in five searches with candidates gets a decision on
both candidates (so it leaves the queue) and one in five a decision on one. Each query runs --runs times
(median reported); memory is tracemalloc's peak during one run.

Prints a markdown table, writes benchmarks/results/review_queue.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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

    for first in range(start, stop, BATCH):
        with engine.writing() as session:
            for i in range(first, min(first + BATCH, stop)):
                payload = {**template, "case": f"C-{i}"}
                if i % 10 >= 7:
                    payload["candidates"], payload["decision"] = [], "no_match"
                entry = engine.ledger.append(session, actor="bench-analyst", action="search", payload=payload)
                if payload["candidates"] and i % 5 in (0, 1):
                    for rank in (1, 2) if i % 5 == 0 else (1,):
                        session.add(Review(search_entry_id=entry.entry_id, candidate_rank=rank, subject="s",
                                           decision="reject", reviewer="bench-reviewer", created_at=utcnow(),
                                           ledger_entry=entry.entry_id))
            session.commit()
        engine.ledger.note_committed(entry)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

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
        for size in sorted(args.sizes):
            t0 = time.perf_counter()
            fill(engine, template, made, size)
            fill_s, made = time.perf_counter() - t0, size
            queue = measure(lambda: engine.review_queue(limit=20, by=reviewer), args.runs)
            case = measure(lambda s=size: engine.review_queue(case=f"C-{s // 2}", by=reviewer), args.runs)
            recent = measure(lambda: engine.recent_searches(limit=50, by=reviewer), args.runs)
            rows.append({"searches": size, "fill_s": round(fill_s, 2), "queue_page": queue, "queue_by_case": case,
                         "recent_searches_50": recent})
            print(f"{size:>7} searches: queue page {queue['median_s'] * 1000:8.0f} ms ({queue['result_size']} "
                  f"awaiting), by case {case['median_s'] * 1000:8.0f} ms, recent 50 "
                  f"{recent['median_s'] * 1000:8.0f} ms", flush=True)
        engine.close()

    print("\n| searches in the ledger | queue, first page of 20 (median) | queue, one case (median) | "
          "recent_searches(50), the peer (median) | queue / peer | peak MiB queue / peer |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        q, c, p = r["queue_page"], r["queue_by_case"], r["recent_searches_50"]
        print(f"| {r['searches']:,} | {q['median_s'] * 1000:,.0f} ms | {c['median_s'] * 1000:,.0f} ms | "
              f"{p['median_s'] * 1000:,.0f} ms | {q['median_s'] / p['median_s']:.2f} | "
              f"{q['peak_mib']:.1f} / {p['peak_mib']:.1f} |")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / "review_queue.json"
        out.write_text(json.dumps({
            "benchmark": "review_queue", "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_avg_1m_at_end": os.getloadavg()[0]},
            "runs": args.runs, "database": "SQLite (WAL), fresh temporary data directory", "rows": rows}, indent=2))
        print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
