"""REAL PROCESSES: CLI searches without SQLAlchemy (direct_search.py) while another process enrols.

Each enrolment commits a batch (the gallery's generation moves on) and writes an index delta file; each
CLI search reads the store and the index files on its own. A search that meets a generation its files do
not hold yet, a calibration sample to rebuild, or a gallery that changed between its ranking and its write,
stands aside for the engine;
either way every search must answer over a gallery size the gallery really had, and the ledger must stay
one gap-free, intact chain. The last search, after the writer is done, must run directly
(FACELEDGER_DIRECT_SEARCH=require) over every face, read from the base and the other process's deltas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faceledger

from .conftest import LFW_DIR, gallery_files, held_out_probes, open_test_engine

SRC = str(Path(faceledger.__file__).resolve().parents[1])
FIRST = 9
WRITER = """
import sys
from faceledger import open_engine
from faceledger.config import Settings
engine = open_engine(Settings(home=sys.argv[1], operator="test-analyst"))
for path in sys.argv[2:]:
    report = engine.enroll([path], gallery="g", subject="added", source="LFW sample", legal_basis="research")
    assert report.count("enrolled") == 1, report
engine.close()
"""


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
           "FACELEDGER_OPERATOR": "test-analyst", **extra}
    env.pop("FACELEDGER_TOKEN", None)
    return env


def _search(home: Path, n: int, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                           "search", str(held_out_probes()[n % 3]), "--gallery", "g", "--purpose", "race",
                           "--case", f"R-{n}", "--json"], env=_env(**env), capture_output=True, text=True,
                          timeout=600)


def test_direct_searches_beside_an_enrolling_process_answer_over_real_sizes(tmp_path):
    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g")
    engine.enroll(gallery_files()[:FIRST], gallery="g", subject_from_folder=True, source="LFW sample",
                  legal_basis="research")
    engine.search(held_out_probes()[0], gallery="g", purpose="race", case="WARM")  # keeps the calibration sample
    engine.close()
    added = sorted(p for p in LFW_DIR.rglob("*.jpg") if p not in set(gallery_files()))[:6]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home), *map(str, added)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with ThreadPoolExecutor(2) as pool:
        racing = list(pool.map(lambda n: _search(home, n), range(6)))
    _, writer_err = writer.communicate(timeout=600)
    assert writer.returncode == 0, writer_err[-3000:]
    settle = _search(home, 98)  # a gallery this small has its sample rebuilt after any change: by the engine
    last = _search(home, 99, FACELEDGER_DIRECT_SEARCH="require")

    failed = [r.stderr[-1500:] for r in [*racing, settle, last] if r.returncode != 0]
    assert not failed, "\n---\n".join(failed)
    sizes = [json.loads(r.stdout)["gallery_size"] for r in racing]
    assert set(sizes) <= set(range(FIRST, FIRST + len(added) + 1)), sizes
    assert json.loads(last.stdout)["gallery_size"] == FIRST + len(added)

    engine = open_test_engine(home)
    try:
        check = engine.audit_verify()
        entries = engine.audit_entries(action="search")
    finally:
        engine.close()
    assert check.ok, check.problems
    assert len(entries) == 1 + len(racing) + 2
