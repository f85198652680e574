"""What the open-set benchmarks (openset_calibration.py, openset_combine.py, openset_engine.py) share: the
repository root, scripts/build_calibration.py (`bc`) and lfw_common (`common`) importable, the model their
cached LFW embeddings are for, and a timestamped progress line on stderr."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))
import build_calibration as bc
import lfw_common as common

MODEL = "sface-2021dec"
__all__ = ["MODEL", "REPO", "bc", "common", "log"]


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)
