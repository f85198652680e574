"""What a `faceledger search` without SQLAlchemy could cost: a measurement prototype, not a code path.

    .venv/bin/python benchmarks/cli_lean_floor.py            # 15 interleaved runs of each row

Rows (each a fresh Python process; wall and CPU medians, interleaved round-robin like cli_start.py):

- `python -c 'import cv2, numpy'`: the peer.
- `faceledger search IMG --gallery G --purpose P --case C`: the real command (this checkout's src/).
- `lean prototype`: the same search done by the code below: the real CLI module and its argument parsing
  (Typer, rich), Settings, the real pipeline (decode, detect, embed), the real FAISS index file, the real
  calibration objects, and the few reads and writes a search needs (schema revision, last purge,
  operator, gallery, face count, subjects of the shortlisted faces, last ledger entry, ledger row, probe
  row, head file) through stdlib `sqlite3` in one transaction. It runs on a copy of the data directory
  (its rows are not faceledger's: payload and row encodings are abbreviated), so it is a floor for a
  lean search path, not an implementation of one (see docs/benchmarks.md, "CLI start-up").

Prints a markdown table and writes benchmarks/results/cli_lean_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_start import build_gallery, environment, faceledger, time_loop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cli_lean_floor.json"

LEAN = r'''
import gc, sys
gc.disable()
import hashlib, json, sqlite3, uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
import numpy as np
import typer.main
from faceledger import cli
from faceledger import caches
from faceledger.calibration import OpenSetCalibration, fpir_at, packaged_calibration
from faceledger.calibration.gallery import GallerySample
from faceledger.cli_common import Rows, fmt_rate, out
from faceledger.config import Settings
from faceledger.enrollment import load_with
from faceledger.index.files import IndexFiles, IndexMeta
from faceledger.pipeline import FacePipeline
from faceledger.policy import check_purpose
assert "sqlalchemy" not in sys.modules
gc.freeze(); gc.enable()

group = typer.main.get_command(cli.app)
ctx = group.make_context("faceledger", sys.argv[1:])
rest = list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []) + list(ctx.args)
search = group.get_command(ctx, rest[0]).make_context(rest[0], rest[1:], parent=ctx)
p = search.params
settings = Settings(home=ctx.params["home"])
home = settings.home
caches.use_dir(home / "cache")  # as services.context does: the tail fit and optimised graph made before

con = sqlite3.connect(home / "faceledger.db", timeout=30, isolation_level=None)
con.execute("PRAGMA busy_timeout=30000")
assert con.execute("SELECT version_num FROM faceledger_schema_version").fetchone()
con.execute("SELECT value FROM maintenance WHERE key = 'last_purge_at'").fetchone()
operator = con.execute("SELECT name, role FROM users WHERE name = ?", (settings.operator,)).fetchone()
name = p["gallery"][0]
cols = "id, generation, model_id, purposes, target_fpir, probe_retain_days, keep_probe_images"
gid, generation, model_id, purposes, target, retain_days, keep = con.execute(
    f"SELECT {cols} FROM galleries WHERE name = ?", (name,)).fetchone()
check_purpose(p["purpose"], json.loads(purposes), name)

pipeline = FacePipeline.from_settings(settings)
loaded = load_with(settings, p["image"])
face = pipeline.single_face(loaded, name=loaded.name, on_multiple="refuse")

count = con.execute("SELECT count(*) FROM faces WHERE gallery_id = ?", (gid,)).fetchone()[0]
files = IndexFiles(settings.index_dir, settings.index, dim=pipeline.embedder.dim)
index = files.load(gid, expected=IndexMeta(gallery_id=gid, generation=generation, model_id=model_id,
                                           dim=pipeline.embedder.dim, description=files.description_for(gid),
                                           count=count))
sample_path = home / "calibrations" / f"gallery-{gid}-{model_id}.json"
sample = GallerySample.from_json(json.loads(sample_path.read_text())["sample"], model_id=model_id,
                                 source=str(sample_path)) if sample_path.is_file() else None
calibration = OpenSetCalibration(packaged_calibration(model_id), sample)
size = len(index)
threshold = calibration.threshold_for_fpir(target, max(size, 1))
scores, ids = index.search(face.embedding[None, :], min(size, p["top_k"] * 8 + 32))
wanted = [int(i) for i in ids[0] if i >= 0]
rows = con.execute(
    "SELECT faces.id, subjects.id, subjects.name, images.name FROM faces JOIN subjects ON faces.subject_id = "
    "subjects.id JOIN images ON faces.image_id = images.id WHERE faces.id IN (%s)" % ",".join("?" * len(wanted)),
    wanted).fetchall()
subject_of = {r[0]: r[1:] for r in rows}
best = {}
for score, fid in zip(scores[0], ids[0]):
    if fid in subject_of and subject_of[fid][0] not in best:
        best[subject_of[fid][0]] = (float(score), int(fid), *subject_of[fid])
candidates = []
for rank, (score, fid, sid, subject, image) in enumerate(sorted(best.values(), reverse=True)[:p["top_k"]], 1):
    if score >= threshold.score:
        estimate = calibration.fmr(score)
        candidates.append({"rank": rank, "subject": subject, "subject_id": sid, "score": round(score, 6),
                           "false_match_rate": estimate.fmr, "gallery_false_positive_chance":
                           fpir_at(estimate.fmr, size), "image": image, "face_id": fid})

now = datetime.now(UTC)
payload = {"decision": "match" if candidates else "no_match", "gallery": name, "gallery_size": size,
           "threshold": threshold.score, "purpose": p["purpose"], "case": p["case"], "candidates": candidates,
           "probe_sha256": loaded.sha256, "probe_quality": face.quality.as_dict(), "model_id": model_id}
con.execute("BEGIN IMMEDIATE")
last = con.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
seq, prev = (last[0] + 1, last[1]) if last else (1, "0" * 64)
entry_id, created = str(uuid.uuid4()), now.isoformat(timespec="microseconds")
body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
material = json.dumps([seq, entry_id, created, operator[0], "search", body, prev], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
digest = hashlib.sha256(material.encode()).hexdigest()
con.execute("INSERT INTO ledger (seq, entry_id, created_at, actor, action, payload, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, entry_id, created, operator[0], "search", body, prev, digest))
con.execute("INSERT INTO probes (entry_id, gallery_id, searched_by, sha256, embedding, quality, mode, candidates, "
            "image, created_at, expires_at, review_image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_id, gid, operator[0], loaded.sha256, face.embedding.tobytes(), json.dumps(face.quality.as_dict()),
             "open-set", json.dumps(candidates), None, str(now.replace(tzinfo=None)),
             str((now + timedelta(days=retain_days)).replace(tzinfo=None)), None))
con.execute("COMMIT")
(home / "ledger.head").write_text(f"{seq} {digest}\n")
con.close()

out.print(f"searched [bold]{name}[/] ({size:,} faces) at threshold {threshold.score:.3f}")
table = Rows("rank", "subject", "score", "false-match rate", "chance of a non-mate this high")
for c in candidates:
    table.add_row(str(c["rank"]), c["subject"], f"{c['score']:.3f}", fmt_rate(c["false_match_rate"]),
                  fmt_rate(c["gallery_false_positive_chance"]))
out.print(table)
out.print(f"ledger entry {entry_id}")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the faceledger source tree")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (at least 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the JSON")
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs: at least 10")
    tmp = Path(tempfile.mkdtemp(prefix="faceledger-lean-floor-"))
    try:
        home, lean_home = tmp / "home", tmp / "lean-home"
        probe = build_gallery(home, environment(args.src))
        search = ["search", str(probe), "--gallery", "bench", "--purpose", "benchmark", "--case", "BENCH-1"]
        # the real command once, so the copy holds the caches (tail fit, optimised graph, gallery sample)
        time_loop({"first": (faceledger("--home", str(home), *search), args.src)}, 1, 0)
        shutil.copytree(home, lean_home)
        cmds = {
            "python -c 'import cv2, numpy' (peer)": ([sys.executable, "-c", "import cv2, numpy"], args.src),
            "faceledger search IMG --gallery G --purpose P --case C": (
                faceledger("--home", str(home), *search), args.src),
            "lean prototype (sqlite3, no SQLAlchemy)": (
                [sys.executable, "-c", LEAN, "--home", str(lean_home), *search], args.src),
        }
        times, cpu = time_loop(cmds, args.runs, args.warmup)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peer = next(iter(cmds))
    rows = []
    for name in cmds:
        wall, used = statistics.median(times[name]), statistics.median(cpu[name])
        rows.append({"command": name, "runs": len(times[name]), "median_s": round(wall, 4),
                     "cpu_median_s": round(used, 4),
                     "ratio_to_peer": round(wall / statistics.median(times[peer]), 2),
                     "cpu_ratio_to_peer": round(used / statistics.median(cpu[peer]), 2)})
    print(f"{args.src} (perf_counter loop, {args.runs} runs each, interleaved)\n")
    print("| command | wall median (s) | wall ratio to peer | CPU median (s) | CPU ratio to peer |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| `{r['command']}` | {r['median_s']:.3f} | {r['ratio_to_peer']:.1f}× | {r['cpu_median_s']:.3f} | "
              f"{r['cpu_ratio_to_peer']:.1f}× |")
    if args.no_write:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"src": str(args.src), "runs": args.runs, "warmup": args.warmup, "rows": rows,
                                   "load_average": os.getloadavg(), "cpus": os.cpu_count(),
                                   "machine": {"platform": platform.platform(),
                                               "python": platform.python_version()}}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
