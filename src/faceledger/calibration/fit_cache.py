"""Tail fits kept on disk, so that a fresh process (each CLI command) does not refit the same histogram.

A tail fit (tail.py: 200 bootstrap refits) takes about 1.5 s of CPU and is a pure function of its inputs:
the histogram's counts, the bin width, the keyword options, and the code that fits (tail.py, core.py,
numpy and scipy). The key is a sha256 of all of these, so a changed histogram, option, fitting code or library
version never reads an old fit; the stored numbers are the fit's own float64 values, so a fit read back
is identical to the one computed. A missing, corrupt or foreign file is refitted (and rewritten).

Off until `caches.use_dir` names a folder (the engine names `<home>/cache`; fits go to its `tail-fits`).
At most MAX_FILES fits are kept there (the least recently written go first).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import caches
from . import core, tail
from .tail import TailFit, fit_tail

MAX_FILES = 32
_SCALARS = ("threshold", "exceed_fraction", "exceedances", "total", "shape", "scale", "censored", "censor_at",
            "level")
_code: dict[str, str] = {}


def _code_digest() -> str:
    """What the fit depends on besides its arguments: tail.py's and core.py's source (SCORE_MIN places
    the bins) and the numeric libraries."""
    if "digest" not in _code:
        source = Path(tail.__file__).read_bytes() + Path(core.__file__).read_bytes()
        _code["digest"] = hashlib.sha256(source + f"|{np.__version__}|".encode() + _scipy_version()).hexdigest()
    return _code["digest"]


def _scipy_version() -> bytes:
    """scipy's version file, read without importing scipy (0.5 s: the point of the cache is not to)."""
    import importlib.util

    spec = importlib.util.find_spec("scipy")
    version_file = Path(spec.origin).parent / "version.py" if spec is not None and spec.origin else None
    if version_file is not None and version_file.is_file():
        return version_file.read_bytes()
    import scipy

    return scipy.__version__.encode()


def fit_key(counts: np.ndarray, bin_width: float, options: dict) -> str:
    counts = np.ascontiguousarray(np.asarray(counts, dtype=np.int64))
    described = repr((float(bin_width), sorted(options.items()), counts.shape)).encode()
    return hashlib.sha256(_code_digest().encode() + described + counts.tobytes()).hexdigest()[:40]


def cached_fit_tail(counts: np.ndarray, bin_width: float, **options) -> TailFit:
    """`fit_tail(counts, bin_width, **options)`, read from the folder when it was fitted before."""
    folder = caches.folder("tail-fits")
    if folder is None:
        return fit_tail(counts, bin_width, **options)
    path = folder / f"tail-{fit_key(counts, bin_width, options)}.npz"
    found = _read(path)
    if found is not None:
        return found
    fit = fit_tail(counts, bin_width, **options)  # a CalibrationError is not cached: it is cheap to repeat
    _write(path, fit)
    return fit


def _read(path: Path) -> TailFit | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            values = {name: data[name].item() for name in _SCALARS}
            boot = np.array(data["boot"], dtype=np.float64).reshape(-1, 3)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    values["exceedances"] = int(values["exceedances"])
    values["total"] = int(values["total"])
    values["censored"] = int(values["censored"])
    return TailFit(**values, boot=boot)


def _write(path: Path, fit: TailFit) -> None:
    """Another process may write the same fit at the same time: each writes its own temporary file and
    renames it into place. A failed write only costs a refit next time."""
    tmp = caches.temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, boot=fit.boot, **{name: np.float64(getattr(fit, name)) for name in _SCALARS})
        tmp.replace(path)
        caches.prune(path.parent, "tail-*.npz", MAX_FILES)
    except OSError:
        tmp.unlink(missing_ok=True)
