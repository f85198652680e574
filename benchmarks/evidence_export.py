"""What an evidence package costs as the chain segment it carries grows, against walking the whole ledger.

    .venv/bin/python benchmarks/evidence_export.py            # segments of 3, 1,000 and 5,000 entries, 5 runs
    .venv/bin/python benchmarks/evidence_export.py --runs 3 --no-write

One data directory (SQLite): gallery "bench" with the first image of each tests/data/lfw person, one
investigative search (a probe photo kept), one review; then FILLER ledger entries of about 1 kB each
(search-like payloads), then a signed anchor, so the package's segment runs from the search through the
filler to the anchor. For each segment length, timed in the same process, median of --runs:

- export: `Engine.export_evidence` by an auditor (record, segment read, render, sha256, ledger append);
- verify: `evidence.check.verify_file` on the written file with the anchors and public key;
- peer: `Engine.audit_verify` (`faceledger audit verify`), which recomputes every hash of the ledger.

The package is capped at 5,000 chain entries (evidence/proof.py MAX_SEGMENT); the largest row is that cap.
Prints a markdown table and writes benchmarks/results/evidence_export.json.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "benchmarks" / "results" / "evidence_export.json"
LFW = REPO / "tests" / "data" / "lfw"


def median_seconds(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(root: Path, filler: int):
    from faceledger.anchors import anchor_ledger, append_anchor, generate_keys, load_private_key
    from faceledger.config import Settings
    from faceledger.engine import Engine
    from faceledger.policy import Principal

    home = root / f"home-{filler}"
    engine = Engine(Settings(home=home, operator="bench-admin"))
    engine.create_gallery("bench", allow_investigative=True, keep_probe_images=True)
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    engine.enroll([min(p.iterdir()) for p in people], gallery="bench", subject_from_folder=True,
                  source="tests/data", legal_basis="research", on_multiple="largest")
    analyst, reviewer, auditor = (Principal(f"bench-{r}", r) for r in ("analyst", "reviewer", "auditor"))
    for who in (analyst, reviewer, auditor):
        engine.add_user(who.name, role=who.role)
    probe = max((LFW / "Tony_Blair").iterdir())
    searched = engine.search(probe, gallery="bench", purpose="benchmark", case="BENCH-1", top_k=3,
                             investigative=True, by=analyst)
    engine.review(searched.ledger_entry, candidate=1, decision="confirm", note="benchmark", by=reviewer)
    payload = {"purpose": "benchmark", "case": "BENCH-F", "note": "x" * 900}
    for i in range(filler):
        engine.ledger.record(actor="bench-analyst", action="verify", payload={**payload, "i": i})
    keys = root / f"keys-{filler}"
    private, public = generate_keys(keys, data_dir=home)
    anchors = root / f"anchors-{filler}.jsonl"
    append_anchor(anchors, anchor_ledger(engine.ledger, load_private_key(private, data_dir=home), actor="bench"),
                  data_dir=home)
    return engine, searched.ledger_entry, auditor, anchors, public


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--filler", default="0,997,4997", help="filler entries between review and anchor")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from faceledger.evidence.check import verify_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for filler in (int(x) for x in args.filler.split(",")):
            engine, entry, auditor, anchors, public = build(root, filler)
            out = root / f"package-{filler}.html"
            package = engine.export_evidence(entry, by=auditor)
            out.write_bytes(package["html"])
            check = verify_file(out, anchors_path=anchors, public_key_path=public)
            assert check.ok, check.problems
            segment = check.segment[1] - check.segment[0] + 1
            def export(engine=engine, entry=entry, auditor=auditor):
                return engine.export_evidence(entry, by=auditor)

            def check_file(out=out, anchors=anchors, public=public):
                return verify_file(out, anchors_path=anchors, public_key_path=public)

            rows.append({
                "segment_entries": segment, "ledger_entries": engine.stats()["ledger_entries"],
                "package_bytes": package["bytes"], "export_s": median_seconds(export, args.runs),
                "verify_s": median_seconds(check_file, args.runs),
                "peer_audit_verify_s": median_seconds(engine.audit_verify, args.runs),
            })
            engine.close()
    header = ("| segment (entries) | ledger (entries) | package | export (median) | verify (median) | "
              "peer: audit verify, whole ledger (median) |\n| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(header)
    for r in rows:
        print(f"| {r['segment_entries']:,} | {r['ledger_entries']:,} | {r['package_bytes'] / 1024:,.0f} KiB | "
              f"{r['export_s'] * 1000:,.1f} ms | {r['verify_s'] * 1000:,.1f} ms | "
              f"{r['peer_audit_verify_s'] * 1000:,.1f} ms |")
    if not args.no_write:
        RESULTS.write_text(json.dumps({
            "runs": args.runs, "rows": rows, "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "machine": platform.machine()}, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
