"""Score -> estimated false-match rate (FMR), and thresholds that hold a target FPIR at gallery size N.

A calibration is a histogram of impostor (non-mated) comparison scores for one model. The FMR of a
score s is the share of impostor comparisons scoring at least s. With n impostor comparisons the
sample cannot support an FMR below about 3/n (the "rule of three" 95% upper bound when none is seen),
so estimates are floored there and flagged, never extrapolated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, FaceledgerError

SCORE_MIN, SCORE_MAX = -1.0, 1.0


@dataclass(frozen=True)
class FmrEstimate:
    """FMR at a score: point estimate, Wilson 95% interval, and the counts behind it."""

    score: float
    fmr: float
    lower: float
    upper: float
    impostors_at_or_above: int
    impostors_total: int

    @property
    def at_sample_floor(self) -> bool:
        """True when so few impostors score this high that the value is the smallest claimable FMR."""
        return self.impostors_at_or_above < 3


@dataclass(frozen=True)
class Threshold:
    """An operating threshold and what it promises."""

    score: float
    target: float  # the asked-for rate (FMR for 1:1, FPIR for 1:N)
    per_comparison_fmr: float  # FMR the threshold must hold
    predicted_fmr: float  # FMR the sample shows at the threshold (floored at what it supports)
    supported: bool  # False: the sample is too small to show a rate that low; the threshold is capped


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def per_comparison_fmr(target_fpir: float, gallery_size: int) -> float:
    """FMR per comparison so that a search of N non-mated faces has FPIR = 1 - (1 - FMR)^N."""
    if not 0 < target_fpir < 1:
        raise FaceledgerError(f"target FPIR must be between 0 and 1, got {target_fpir}")
    n = max(int(gallery_size), 1)
    return -math.expm1(math.log1p(-target_fpir) / n)


def fpir_at(fmr: float, gallery_size: int) -> float:
    """Chance that a gallery of N non-mates holds at least one at or above a score of this FMR."""
    return -math.expm1(max(int(gallery_size), 1) * math.log1p(-min(fmr, 1.0 - 1e-16)))


def score_histogram(scores: np.ndarray, bin_width: float = 0.0005) -> np.ndarray:
    """Counts of scores in the calibration bins over [SCORE_MIN, SCORE_MAX).

    Histograms of several blocks of scores, summed, equal the histogram of all of them, so a large
    impostor set can be counted block by block and passed to Calibration(counts=...).
    """
    scores = np.clip(np.asarray(scores, dtype=np.float64).ravel(), SCORE_MIN, SCORE_MAX - 1e-9)
    bins = round((SCORE_MAX - SCORE_MIN) / bin_width)
    counts, _ = np.histogram(scores, bins=bins, range=(SCORE_MIN, SCORE_MAX))
    return counts.astype(np.int64)


def impostor_histogram(vectors: np.ndarray, *, bin_width: float = 0.0005, block: int = 512) -> np.ndarray:
    """Histogram of the cosine of every pair i < j of (one-per-identity) unit vectors, in row blocks."""
    vectors = np.asarray(vectors, dtype=np.float32)
    counts = np.zeros(round((SCORE_MAX - SCORE_MIN) / bin_width), dtype=np.int64)
    n = len(vectors)
    for start in range(0, max(n - 1, 0), block):
        stop = min(start + block, n)
        scores = vectors[start:stop] @ vectors[start:].T
        i, j = np.triu_indices(stop - start, k=1, m=n - start)
        counts += score_histogram(scores[i, j], bin_width)
    return counts


class Calibration:
    """An impostor-score histogram for one model, with the FMR arithmetic on top."""

    def __init__(self, *, calibration_id: str, model_id: str, bin_width: float, counts: np.ndarray,
                 description: str = "", max_impostor_score: float | None = None,
                 provenance: dict | None = None) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        expected = round((SCORE_MAX - SCORE_MIN) / bin_width)
        if counts.shape != (expected,) or counts.min(initial=0) < 0 or counts.sum() == 0:
            raise FaceledgerError(f"calibration {calibration_id}: bad histogram ({counts.shape}, want {expected})")
        self.calibration_id = calibration_id
        self.model_id = model_id
        self.bin_width = bin_width
        self.counts = counts
        self.description = description
        self.max_impostor_score = max_impostor_score
        self.provenance = dict(provenance or {})  # how it was built (cleaning, sources); free-form
        self.total = int(counts.sum())
        # tail[i] = impostor scores in bin i or above: a score in bin i counts every bin from i up,
        # so the FMR of a score is never under-stated by the binning.
        self._tail = np.cumsum(counts[::-1])[::-1]

    @classmethod
    def from_scores(cls, scores: np.ndarray, *, calibration_id: str, model_id: str,
                    bin_width: float = 0.0005, description: str = "") -> Calibration:
        scores = np.asarray(scores, dtype=np.float64)
        return cls(calibration_id=calibration_id, model_id=model_id, bin_width=bin_width,
                   counts=score_histogram(scores, bin_width), description=description,
                   max_impostor_score=float(min(scores.max(), SCORE_MAX)))

    @property
    def floor(self) -> float:
        """The smallest FMR this sample can support (rule of three)."""
        return 3.0 / self.total

    def _bin(self, score: float) -> int:
        # the small tolerance keeps a bin edge (what threshold_for_fmr returns) in the bin it starts:
        # (edge - SCORE_MIN) / bin_width can land a hair below the integer in floating point.
        index = math.floor((float(score) - SCORE_MIN) / self.bin_width + 1e-6)
        return min(max(index, 0), len(self.counts) - 1)

    def fmr(self, score: float) -> FmrEstimate:
        k = int(self._tail[self._bin(score)])
        lower, upper = wilson_interval(k, self.total)
        point = max(k / self.total, self.floor) if k < 3 else k / self.total
        return FmrEstimate(score=float(score), fmr=point, lower=lower, upper=max(upper, self.floor),
                           impostors_at_or_above=k, impostors_total=self.total)

    def threshold_for_fmr(self, target_fmr: float) -> Threshold:
        """The lowest bin edge whose FMR is at most target_fmr (capped where the sample runs out)."""
        supported = target_fmr >= self.floor
        allowed = max(target_fmr, self.floor) * self.total
        candidates = np.nonzero(self._tail <= allowed)[0]
        index = int(candidates[0]) if len(candidates) else len(self.counts) - 1
        score = SCORE_MIN + index * self.bin_width
        return Threshold(score=round(score, 6), target=target_fmr, per_comparison_fmr=target_fmr,
                         predicted_fmr=self.fmr(score).fmr, supported=supported)

    def threshold_for_fpir(self, target_fpir: float, gallery_size: int) -> Threshold:
        """Threshold so that a search of a gallery of this size has at most target_fpir false positives."""
        needed = per_comparison_fmr(target_fpir, gallery_size)
        base = self.threshold_for_fmr(needed)
        return Threshold(score=base.score, target=target_fpir, per_comparison_fmr=needed,
                         predicted_fmr=base.predicted_fmr, supported=base.supported)

    def to_json(self) -> dict:
        nonzero = np.nonzero(self.counts)[0]
        return {
            "calibration_id": self.calibration_id,
            "model_id": self.model_id,
            "description": self.description,
            "bin_width": self.bin_width,
            "impostor_pairs": self.total,
            "max_impostor_score": self.max_impostor_score,
            "first_bin": int(nonzero[0]),
            "counts": self.counts[nonzero[0]: nonzero[-1] + 1].tolist(),
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    @classmethod
    def from_json(cls, data: dict, *, source: str = "calibration data") -> Calibration:
        try:
            bins = round((SCORE_MAX - SCORE_MIN) / float(data["bin_width"]))
            counts = np.zeros(bins, dtype=np.int64)
            first = int(data["first_bin"])
            values = np.asarray(data["counts"], dtype=np.int64)
            if first < 0 or first + len(values) > bins:
                raise ValueError("histogram outside the score range")
            counts[first: first + len(values)] = values
            return cls(calibration_id=str(data["calibration_id"]), model_id=str(data["model_id"]),
                       bin_width=float(data["bin_width"]), counts=counts,
                       description=data.get("description", ""),
                       max_impostor_score=data.get("max_impostor_score"),
                       provenance=data.get("provenance"))
        except FaceledgerError as exc:
            raise CalibrationError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise CalibrationError(
                f"{source} is not a faceledger calibration ({type(exc).__name__}: {exc}); "
                "rebuild it with `faceledger calibrate` or delete it to use the packaged one"
            ) from exc

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        return cls.from_json(read_json(path, what="calibration"), source=str(path))


def read_json(path: Path, *, what: str) -> dict:
    """A JSON object from a file, or a CalibrationError that says which file and why."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise CalibrationError(f"{what} file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(
            f"{what} file {path} is unreadable or corrupt ({exc}); rebuild it or delete it"
        ) from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{what} file {path} is corrupt (not a JSON object); rebuild it or delete it")
    return data


def packaged_calibration(model_id: str) -> Calibration:
    """The default calibration shipped with faceledger for this model id."""
    filename = f"calibration-{model_id}.json"
    resource = resources.files("faceledger") / "data" / filename
    if not resource.is_file():
        raise FaceledgerError(
            f"no calibration ships for model {model_id!r} (looked for {filename}); "
            "build one with scripts/build_calibration.py"
        )
    try:
        data = json.loads(resource.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"the packaged calibration {filename} is corrupt ({exc}); reinstall faceledger") from exc
    return Calibration.from_json(data, source=f"packaged {filename}")
