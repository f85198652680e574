"""The models' cold load in a fresh process: what a one-shot CLI command pays before its first detection.

    .venv/bin/python benchmarks/model_load.py                          # this checkout's src/, 9 runs
    .venv/bin/python benchmarks/model_load.py --baseline /tmp/before/src   # and an older tree, interleaved

Every run is a fresh Python process (PYTHONPATH = the tree's src/), timed inside the child from after its
imports of numpy, OpenCV, the settings and the pipeline module; the models' files and the cache folder
(the optimised SFace graph, made by untimed warm-up runs) are in the page cache. Wall time
(perf_counter) and the process's CPU time (user + system of all its threads, getrusage). Rows:

- `sface cache load`: ONNX Runtime imported and YuNet's session made first (untimed, as in a search:
  the runtime's environment exists), then `sface_ort.create_session` on the cached optimised graph:
  the file's sha256 and the session.
- `models`: `FacePipeline.load()` alone: importing ONNX Runtime, both sessions, every sha256 check.
- `sqlalchemy.orm`: `import sqlalchemy.orm` alone (a stand-in for a command's other start-up work).
- `models, then sqlalchemy.orm`: the two one after the other.
- `start_loading, sqlalchemy.orm, load`: `FacePipeline.start_loading()`, the import, then `load()`
  (waits for the background thread); only for trees that have start_loading.

Runs are interleaved round-robin (one of each row per round), so a burst of load elsewhere on the
machine hits every row alike. Each run also records the CPU time the rest of the machine used meanwhile
(/proc/stat, less the child's own), since two threads can only overlap on an idle second core; the
table gives medians over all runs and over the runs where the others used under 10 % of one core.
Prints a markdown table and writes benchmarks/results/model_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "model_load.json"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import cv2, numpy
from faceledger import caches
from faceledger.config import Settings
from faceledger.pipeline import FacePipeline

mode, home = sys.argv[1], Path(sys.argv[2])
assert "sqlalchemy" not in sys.modules and "onnxruntime" not in sys.modules
caches.use_dir(home / "cache")
pipe = FacePipeline.from_settings(Settings(home=home))

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

if mode == "sface":
    from faceledger.detect.yunet_ort import create_session as yunet_session
    from faceledger.embed.sface_ort import create_session
    from faceledger.models import SFACE_2021DEC
    yunet_session()
c0, t0 = cpu(), time.perf_counter()
if mode == "sface":
    create_session(SFACE_2021DEC)
elif mode == "models":
    pipe.load()
elif mode == "orm":
    import sqlalchemy.orm
elif mode == "sequential":
    pipe.load()
    import sqlalchemy.orm
elif mode == "overlapped":
    pipe.start_loading()
    import sqlalchemy.orm
    pipe.load()
t1, c1 = time.perf_counter(), cpu()
print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0}))
"""

ROWS = {
    "sface": "sface cache load (sha256 + session)",
    "models": "models: FacePipeline.load()",
    "orm": "import sqlalchemy.orm",
    "sequential": "models, then sqlalchemy.orm",
    "overlapped": "start_loading, sqlalchemy.orm, load",
}
QUIET = 0.10
"""A run is 'quiet' when the rest of the machine used under this share of one core meanwhile."""


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_child(mode: str, src: Path, home: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # .pyc files as an installed package has them
    before = busy_jiffies() if Path("/proc/stat").exists() else None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(home)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = busy_jiffies() if before else None
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {src} failed: {done.stderr[-2000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if before:  # the machine's busy time while the child ran, less the child's own (all of it, start-up too)
        child = used.ru_utime - usage.ru_utime + used.ru_stime - usage.ru_stime
        found["others_cores"] = max(0.0, ((after[0] - before[0]) / os.sysconf("SC_CLK_TCK") - child) / wall)
    return found


def has_start_loading(src: Path) -> bool:
    return "def start_loading" in (src / "faceledger" / "pipeline.py").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the faceledger source tree to time")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--baseline", type=Path, help="another source tree, timed in the same rounds")
    parser.add_argument("--baseline-label", default="before")
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each row (at least 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (caches, .pyc, page cache)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.runs < 7:
        parser.error("--runs: at least 7")
    trees = {args.label: args.src}
    if args.baseline:
        trees[args.baseline_label] = args.baseline
    cells = [(mode, label) for mode in ROWS for label in trees
             if mode != "overlapped" or has_start_loading(trees[label])]
    runs: dict[tuple[str, str], list[dict]] = {cell: [] for cell in cells}
    with tempfile.TemporaryDirectory(prefix="faceledger-model-load-") as tmp:
        home = Path(tmp) / "home"
        for round_ in range(args.warmup + args.runs):
            for mode, label in cells:
                found = run_child(mode, trees[label], home)
                if round_ >= args.warmup:
                    runs[(mode, label)].append(found)
    rows = []
    for (mode, label), values in runs.items():
        quiet = [v for v in values if v.get("others_cores", 0.0) < QUIET]
        rows.append({"row": ROWS[mode], "mode": mode, "tree": label, "runs": len(values),
                     "wall_median_ms": round(1000 * statistics.median(v["wall"] for v in values), 1),
                     "cpu_median_ms": round(1000 * statistics.median(v["cpu"] for v in values), 1),
                     "quiet_runs": len(quiet),
                     "quiet_wall_median_ms": round(1000 * statistics.median(v["wall"] for v in quiet), 1) if quiet else None,
                     "others_cores_median": round(statistics.median(v.get("others_cores", 0.0) for v in values), 2),
                     "wall_ms": [round(1000 * v["wall"], 1) for v in values]})
    print(", ".join(f"{k}: {v}" for k, v in trees.items()) + f" ({args.runs} runs each, interleaved, "
          f"{os.cpu_count()} CPUs)\n")
    print("| row | tree | wall median (ms) | CPU median (ms) | quiet runs | wall median, quiet runs (ms) | others' cores (median) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        quiet = f"{r['quiet_wall_median_ms']:.1f}" if r["quiet_wall_median_ms"] is not None else "-"
        print(f"| {r['row']} | {r['tree']} | {r['wall_median_ms']:.1f} | {r['cpu_median_ms']:.1f} | "
              f"{r['quiet_runs']} | {quiet} | {r['others_cores_median']:.2f} |")
    if args.no_write:
        return
    payload = {"trees": {k: str(v) for k, v in trees.items()}, "runs": args.runs, "warmup": args.warmup,
               "rows": rows, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
               "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
