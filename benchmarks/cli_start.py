"""How long whole `faceledger` commands take from a cold process, against the bare `import cv2, numpy`.

    .venv/bin/python benchmarks/cli_start.py                 # 15 runs of each command, this checkout's src/
    .venv/bin/python benchmarks/cli_start.py --baseline /tmp/before/src   # and an older tree, interleaved
    .venv/bin/python benchmarks/cli_start.py --src OTHER/src --label before --no-write

Rows (each a fresh Python process; the wall time of the whole process, median over --runs):

- `python -c 'import cv2, numpy'`: the peer and the floor. Any search has to decode an image and run
  two ONNX models through OpenCV, so a command cannot start faster than this import.
- `python -c 'import faceledger.cli'`: what every command pays before it does anything.
- `faceledger --help`.
- `faceledger search IMG --gallery G --purpose P --case C`: a one-probe open-set search of a small
  gallery (first image of every tests/data/lfw person, enrolled once into a temporary data directory,
  then searched once, which keeps the gallery's calibration sample), with FACELEDGER_DIRECT_SEARCH=require
  (the direct path, without SQLAlchemy, or a failed row): settings, store, models, detect, embed, FAISS,
  calibration, ledger append. The
  untimed warm-up rounds are also the first commands on the data directory, which fill its `cache/`
  (the calibration tail fit and the optimised SFace graph, remade only when their inputs change); the
  timed runs are the steady state a user sees from the second command on. A tree without that cache
  (--baseline of an older commit) pays for both in every run, as its users do.

- `faceledger search, through the engine`: the same search with FACELEDGER_DIRECT_SEARCH=off (this
  checkout only): what a search costs where the direct path stands aside. The search rows start through
  `env VAR=value`, which adds about a millisecond.

Commands run as `python -c "from faceledger.cli import main; main()" ARGS` with PYTHONPATH=--src, so the
code measured is the checkout's, not whatever is installed; PYTHONDONTWRITEBYTECODE is unset for them, so
the warm-up rounds leave .pyc files as an installed package has (otherwise every run recompiles). With --baseline, the same three faceledger
rows are also timed on that source tree (e.g. `git archive OLD src | tar -x -C /tmp/before`) in the
same rounds, so both trees see the same load. `hyperfine` is used when it is on PATH
(--export-json); otherwise this script's own loop (time.perf_counter around subprocess.run). Runs are
interleaved round-robin (one of each command per round) so that a burst of load elsewhere on the
machine hits every row alike; the loop also records each run's CPU time (user + system, from
getrusage of the children), which a busy machine disturbs less than the wall time. Prints a markdown table and writes benchmarks/results/cli_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
RESULTS = REPO / "benchmarks" / "results" / "cli_start.json"
MAIN = "import sys; sys.argv[0] = 'faceledger'; from faceledger.cli import main; main()"


def faceledger(*args: str) -> list[str]:
    return [sys.executable, "-c", MAIN, *args]


def build_gallery(home: Path, env: dict) -> Path:
    """Enrol the first image of every tests/data/lfw person into gallery `bench` and search it once (the
    first search keeps the gallery's calibration sample); return the probe's path."""
    people = sorted(p for p in (DATA / "lfw").iterdir() if p.is_dir())
    firsts = [min(p.iterdir()) for p in people]
    steps = [
        ["gallery", "create", "bench", "--purpose", "benchmark"],
        ["enroll", *map(str, firsts), "--gallery", "bench", "--subject-from-folder", "--source", "tests/data",
         "--legal-basis", "research", "--largest-face", "--json"],
    ]
    probe = max((DATA / "lfw" / "Tony_Blair").iterdir())  # a later image of an enrolled person
    steps.append(["search", str(probe), "--gallery", "bench", "--purpose", "benchmark", "--case", "BENCH-0"])
    for step in steps:
        subprocess.run(faceledger("--home", str(home), *step), env=env, check=True, capture_output=True)
    return probe


def commands(home: Path, probe: Path, trees: dict[str, Path]) -> dict[str, tuple[list[str], Path]]:
    """{row name: (argv, source tree on PYTHONPATH)}; the peer first."""
    first = next(iter(trees.values()))
    rows: dict[str, tuple[list[str], Path]] = {
        "python -c 'import cv2, numpy' (peer)": ([sys.executable, "-c", "import cv2, numpy"], first)}
    search = ["--home", str(home), "search", str(probe), "--gallery", "bench", "--purpose", "benchmark",
              "--case", "BENCH-1"]
    for label, src in trees.items():
        suffix = f" [{label}]" if len(trees) > 1 else ""
        rows.update({
            f"python -c 'import faceledger.cli'{suffix}": ([sys.executable, "-c", "import faceledger.cli"], src),
            f"faceledger --help{suffix}": (faceledger("--help"), src),
            # `require`: the row fails rather than time the engine's path where the direct one stood aside
            # (a tree without direct_search.py ignores the variable)
            f"faceledger search IMG --gallery G --purpose P --case C{suffix}": (
                ["env", "FACELEDGER_DIRECT_SEARCH=require", *faceledger(*search)], src),
        })
        if src == first:
            rows[f"faceledger search, through the engine (FACELEDGER_DIRECT_SEARCH=off){suffix}"] = (
                ["env", "FACELEDGER_DIRECT_SEARCH=off", *faceledger(*search)], src)
    return rows


def environment(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "FACELEDGER_OPERATOR": "benchmark"}
    env.pop("FACELEDGER_TOKEN", None)
    env.pop("FACELEDGER_HOME", None)
    # An installed package has its .pyc files; with PYTHONDONTWRITEBYTECODE set (as in some CI and
    # sandbox shells) every run would compile the tree's sources again (~0.1 s), which no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_loop(cmds: dict[str, tuple[list[str], Path]], runs: int,
              warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall seconds, CPU seconds of the child: user + system) of every timed run, by row."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    cpu: dict[str, list[float]] = {name: [] for name in cmds}
    for round_ in range(warmup + runs):
        for name, (cmd, src) in cmds.items():
            env = environment(src)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, check=False)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
            if round_ >= warmup:
                times[name].append(wall)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def time_hyperfine(cmds: dict[str, tuple[list[str], Path]], runs: int, warmup: int,
                   tmp: Path) -> dict[str, list[float]]:
    import shlex

    export = tmp / "hyperfine.json"
    argv = ["hyperfine", "--runs", str(runs), "--warmup", str(warmup), "--export-json", str(export), "-N"]
    for name, (cmd, src) in cmds.items():
        argv += ["--command-name", name, shlex.join(["env", f"PYTHONPATH={src.resolve()}", *cmd])]
    subprocess.run(argv, env=environment(next(iter(cmds.values()))[1]), check=True, capture_output=True)
    found = json.loads(export.read_text())["results"]
    return {r["command"]: list(r["times"]) for r in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the faceledger source tree to time")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (at least 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (page cache, .pyc files)")
    parser.add_argument("--label", default="this checkout", help="name of this measurement in the JSON")
    parser.add_argument("--baseline", type=Path, help="another source tree to time in the same rounds")
    parser.add_argument("--baseline-label", default="before", help="its name in the table")
    parser.add_argument("--no-hyperfine", action="store_true", help="use this script's own loop")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the JSON")
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs: at least 10")

    trees = {args.label: args.src}
    if args.baseline:
        trees[args.baseline_label] = args.baseline
    tmp = Path(tempfile.mkdtemp(prefix="faceledger-cli-start-"))
    try:
        home = tmp / "home"
        probe = build_gallery(home, environment(args.src))
        cmds = commands(home, probe, trees)
        tool = "hyperfine" if shutil.which("hyperfine") and not args.no_hyperfine else "perf_counter loop"
        if tool == "hyperfine":
            times, cpu = time_hyperfine(cmds, args.runs, args.warmup, tmp), {}
        else:
            times, cpu = time_loop(cmds, args.runs, args.warmup)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    peer_name = next(iter(cmds))
    peer = statistics.median(times[peer_name])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        row = {"command": name, "runs": len(values), "median_s": round(median, 4),
               "min_s": round(min(values), 4), "max_s": round(max(values), 4), "ratio_to_peer": round(median / peer, 2)}
        if cpu.get(name):
            row["cpu_median_s"] = round(statistics.median(cpu[name]), 4)
            row["cpu_ratio_to_peer"] = round(row["cpu_median_s"] / statistics.median(cpu[peer_name]), 2)
        rows.append(row)
    print(", ".join(f"{k}: {v}" for k, v in trees.items()) + f" ({tool}, {args.runs} runs each, interleaved)\n")
    print("| command | wall median (s) | wall min (s) | wall ratio to peer | CPU median (s) | CPU ratio to peer |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        cpu_cells = (f"{r['cpu_median_s']:.3f} | {r['cpu_ratio_to_peer']:.1f}×" if "cpu_median_s" in r else "- | -")
        print(f"| `{r['command']}` | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['ratio_to_peer']:.1f}× | {cpu_cells} |")
    search = next(r for r in rows if r["command"].startswith("faceledger search"))
    print(f"\ntarget: faceledger search ≤ 4.5× the peer: {search['ratio_to_peer']:.1f}× "
          f"({'met' if search['ratio_to_peer'] <= 4.5 else 'NOT met'})")
    if args.no_write:
        return
    payload = {"label": args.label, "src": str(args.src), "trees": {k: str(v) for k, v in trees.items()}, "tool": tool, "runs": args.runs, "warmup": args.warmup,
               "gallery": "first image of each tests/data/lfw person", "rows": rows,
               "target": {"search_ratio_max": 4.5, "met": search["ratio_to_peer"] <= 4.5},
               "load_average": os.getloadavg(), "cpus": os.cpu_count(),
               "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs_by_label = previous.get("measurements", {}) if isinstance(previous, dict) else {}
    runs_by_label[args.label] = payload
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measurements": runs_by_label}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
