"""Score -> false-match rate, and open-set thresholds that hold a target FPIR at a gallery's size.

- `core`: the impostor-score histogram (`Calibration`), Wilson intervals, FPIR <-> FMR arithmetic.
- `tail`: a generalised Pareto tail fitted to a histogram's upper tail, robust to a few label-noise
  pairs, with a parametric-bootstrap bound used for extrapolated thresholds.
- `gallery`: a gallery's own cross-subject score sample and a duplicate finder.
- `openset`: the packaged and gallery calibrations combined conservatively (`OpenSetCalibration`).
"""

from .core import (
    SCORE_MAX,
    SCORE_MIN,
    Calibration,
    FmrEstimate,
    Threshold,
    fpir_at,
    impostor_histogram,
    packaged_calibration,
    per_comparison_fmr,
    score_histogram,
    wilson_interval,
)

__all__ = [
    "SCORE_MAX", "SCORE_MIN", "Calibration", "FmrEstimate", "Threshold", "fpir_at", "impostor_histogram",
    "packaged_calibration", "per_comparison_fmr", "score_histogram", "wilson_interval",
]

from .gallery import GallerySample, find_duplicates, gallery_sample
from .openset import OpenSetCalibration, OpenSetThreshold
from .tail import TailFit, fit_tail

__all__ += ["GallerySample", "OpenSetCalibration", "OpenSetThreshold", "TailFit", "find_duplicates", "fit_tail",
            "gallery_sample"]
