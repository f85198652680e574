"""Enrolment's worker processes read the parent's caches: the SFace graph optimised for this CPU is made
once per data directory, not again by every worker of every enrolment (about 0.85 s of CPU each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faceledger
from faceledger import caches, enrollment
from faceledger.config import Settings

from .conftest import gallery_files, open_test_engine

SRC = str(Path(faceledger.__file__).resolve().parents[1])
WORKER = """
import sys
from faceledger import enrollment
from faceledger.config import Settings
enrollment._init_worker(Settings(home=sys.argv[1]).model_dump_json(), "refuse", None, sys.argv[2] or None)
print("optimised here:", "onnx" in sys.modules)
"""


def _worker_optimises(home: Path, cache_dir: str) -> bool:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", WORKER, str(home), cache_dir], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().endswith("True")


def test_a_worker_reads_the_optimised_graph_from_the_cache_it_is_given(tmp_path):
    home = tmp_path / "home"
    engine = open_test_engine(home)
    engine.pipeline.load()  # the engine's process makes <home>/cache/models/sface-*.onnx
    engine.close()
    assert list((home / "cache" / "models").glob("sface-*"))
    assert not _worker_optimises(home, str(home / "cache"))  # read back: no onnx import, no optimisation
    assert _worker_optimises(home, "")  # the control: without the folder it optimises the graph itself


def test_the_pool_hands_its_workers_the_caches_folder(tmp_path, monkeypatch):
    seen = {}

    class Pool:
        def __init__(self, workers, *, mp_context, initializer, initargs):
            seen["initargs"] = initargs

        def map(self, fn, items, chunksize):
            return iter(())

        def shutdown(self, **_):
            pass

    monkeypatch.setattr(enrollment, "process_pool", lambda: Pool)
    monkeypatch.setattr(caches, "_state", {"dir": tmp_path / "cache"})
    items = [enrollment.WorkItem(path=str(p), subject="s", sha256="0" * 64) for p in gallery_files()[:2]]
    list(enrollment.analyse_all(items, pipeline=None, settings=Settings(home=tmp_path / "h"), on_multiple="refuse",
                                workers=2))
    assert seen["initargs"][-1] == str(tmp_path / "cache")
