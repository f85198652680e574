"""The calibrations kept in a data directory: the one in force, and each gallery's own sample.

- `<home>/calibrations/calibration-<model>.json`: a calibration fitted here with `faceledger calibrate`;
  it replaces the packaged one.
- `<home>/calibrations/gallery-<id>-<model>.json`: a gallery's cross-subject sample, with the gallery
  generation and face count it was built at. It describes the gallery while nothing changed, or while
  the gallery only grew by a small share (`sample_fresh`); otherwise the store rebuilds it.

The files are caches of what the store holds (services/calibrations.py builds and rebuilds them); this
module only reads and writes them, without the store, so a search run without SQLAlchemy
(direct_search.py) reads them exactly as the engine does.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..errors import CalibrationError
from .core import Calibration, packaged_calibration
from .gallery import GallerySample

REBUILD_SHARE = 0.05
"""A gallery's sample is rebuilt once the gallery grew by more than this share since (or shrank)."""


def local_calibration_path(home: Path, model_id: str) -> Path:
    return Path(home) / "calibrations" / f"calibration-{model_id}.json"


def current_calibration(home: Path, model_id: str) -> Calibration:
    """The calibration fitted on this data directory, or the packaged one."""
    local = local_calibration_path(home, model_id)
    return Calibration.load(local) if local.is_file() else packaged_calibration(model_id)


def sample_path(home: Path, gallery_id: int, model_id: str) -> Path:
    return Path(home) / "calibrations" / f"gallery-{gallery_id}-{model_id}.json"


def sample_fresh(held_generation: int, held_faces: int, generation: int, faces: int) -> bool:
    """A sample still describes the gallery: nothing changed, or it only grew by a small share."""
    if held_generation == generation:
        return True
    return faces >= held_faces and faces - held_faces <= REBUILD_SHARE * max(held_faces, 1) and held_faces >= 1000


def load_sample(path: Path, *, generation: int, faces: int, model_id: str) -> GallerySample | None:
    """The kept sample if it still describes the gallery at (generation, faces); None: rebuild it."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not sample_fresh(int(data["generation"]), int(data["gallery_faces"]), generation, faces):
            return None
        return GallerySample.from_json(data["sample"], model_id=model_id, source=str(path))
    except (OSError, ValueError, KeyError, TypeError, CalibrationError):
        return None  # a cache: a corrupt or foreign file is rebuilt from the store


def save_sample(path: Path, *, generation: int, faces: int, sample: GallerySample) -> None:
    """Keep a sample beside the data (a cache: another process may write or remove it at the same time, so
    each writer uses its own temporary name, and a failed save only costs a rebuild)."""
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"generation": generation, "gallery_faces": faces, "sample": sample.to_json()}))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
