"""A generalised Pareto tail (peaks over threshold) fitted to an impostor-score histogram.

Above a fit threshold u (a bin edge with about `tail_fraction` of the sample above it, at least
`min_exceedances` pairs) the share of impostor pairs scoring at least s is modelled as

    FMR(s) = zeta_u * (1 + xi * (s - u) / sigma) ** (-1 / xi)        (s >= u)

where zeta_u is the sample share above u. The fit is a maximum-likelihood fit to the binned counts
(each bin contributes count * log P(bin)), so the histogram is used as it is, never re-sampled.

Robust to label noise: the top `trim_fraction` of the exceedances (at least `min_trim` pairs) are
trimmed: the GPD is fitted to the excesses below the trim point with a truncated likelihood (each
bin's probability divided by P(excess < trim point)), so the trimmed pairs neither steer the shape nor
add mass; zeta_u still counts them. A handful of cross-identity pairs of one photograph (scores near
1) therefore cannot drag the tail up, and a clean tail is not biased down by the trimming.

Uncertainty: a parametric bootstrap (the number of exceedances drawn Poisson, the excesses drawn from
the fitted GPD, binned, censored and refitted the same way) gives `reps` (xi, sigma, zeta) replicates;
a conservative threshold is the `level` quantile of the replicates' return levels, a conservative FMR
the `level` quantile of their tail probabilities. Pairs share faces, so the sample is less informative
than its pair count suggests; the held-out checks in docs/accuracy.md measure what the bound is worth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import CalibrationError
from .core import SCORE_MIN

TAIL_FRACTION = 1e-4
MIN_EXCEEDANCES = 1000
TRIM_FRACTION = 0.005
MIN_TRIM = 10
REPS = 200
LEVEL = 0.95


def gpd_survival(y: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """P(excess >= y) of a GPD(shape, scale); 0 beyond the upper end point when shape < 0."""
    y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
    if abs(shape) < 1e-9:
        return np.exp(-y / scale)
    base = 1.0 + shape * y / scale
    out = np.zeros_like(base)
    ok = base > 0
    out[ok] = base[ok] ** (-1.0 / shape)
    return out


def gpd_survival_many(y: float, shape: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """P(excess >= y) under each of many GPDs (the bootstrap replicates) at once."""
    y = max(float(y), 0.0)
    shape = np.asarray(shape, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    near_zero = np.abs(shape) < 1e-9
    safe = np.where(near_zero, 1.0, shape)
    base = 1.0 + safe * y / scale
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        powered = np.where(base > 0, np.abs(base) ** (-1.0 / safe), 0.0)
    return np.where(near_zero, np.exp(-y / scale), powered)


def gpd_excess_quantile(prob: np.ndarray | float, shape, scale):
    """The excess y with P(excess >= y) = prob (prob in (0, 1]); vectorised over shape/scale."""
    prob = np.asarray(prob, dtype=np.float64)
    shape = np.asarray(shape, dtype=np.float64)
    safe = np.where(np.abs(shape) < 1e-9, 1.0, shape)
    return np.where(np.abs(shape) < 1e-9, -scale * np.log(prob), scale / safe * (prob ** (-safe) - 1.0))


def linear_quantile(values: np.ndarray, q: float) -> float:
    """`np.quantile(values, q)` (its default "linear" method) bit for bit, without its fixed costs.

    numpy's quantile goes through np.unique, whose first call imports numpy.ma (about 7 ms: in a one-shot
    CLI search, which asks for one bound, that import was the calibration's largest cost), then costs
    about 30 us a call in argument handling; here it is one sort of the 200 replicates and numpy's own
    interpolation formula (`_lerp`), in the same float64 operations (tests/test_openset_calibration.py)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())  # a NaN sorts last, as in numpy
    n = len(ordered)
    if not n:
        raise ValueError("the quantile of an empty sample")
    if math.isnan(ordered[-1]):
        return math.nan
    virtual = (n - 1) * float(q)
    below, above = math.floor(virtual), math.floor(virtual) + 1
    if virtual >= n - 1:  # numpy's bounds: the last value, the first value
        below = above = -1
    if virtual < 0:
        below = above = 0
    a, b = float(ordered[below]), float(ordered[above])
    t = virtual - below
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _censor_bin(tail_counts: np.ndarray, exceedances: int, trim_fraction: float, min_trim: int) -> int:
    """Index (into tail_counts) of the first censored bin: the top k exceedances, k by the trim rule."""
    k = max(min_trim, math.ceil(trim_fraction * exceedances))
    return int(np.nonzero(tail_counts >= k)[0][-1]) if np.any(tail_counts >= k) else 0


def _fit_binned(counts: np.ndarray, censored: int, width: float, start: tuple[float, float]) -> tuple[float, float]:
    """ML (shape, scale) of binned excesses counts[j] in [j*w, (j+1)*w), truncated at len(counts)*w.

    `censored` (the trimmed count above the truncation point) only marks that there was a trim."""
    lo = np.arange(len(counts)) * width
    hi = lo + width
    y_c = len(counts) * width
    keep = counts > 0
    lo, hi, c = lo[keep], hi[keep], counts[keep].astype(np.float64)

    def nll(params: np.ndarray) -> float:
        shape, log_scale = params
        if not -0.95 < shape < 2.0:
            return 1e300
        scale = math.exp(log_scale)
        p = gpd_survival(lo, shape, scale) - gpd_survival(hi, shape, scale)
        if np.any(p <= 0):
            return 1e300
        value = -float(c @ np.log(p))
        if censored:
            inside = 1.0 - float(gpd_survival(np.array([y_c]), shape, scale)[0])
            if inside <= 0:
                return 1e300
            value += float(c.sum()) * math.log(inside)
        return value

    from scipy.optimize import minimize  # here, not at import: a fit read from fit_cache needs no scipy

    best = None
    for x0 in (start, (0.0, start[1]), (-0.2, start[1])):
        r = minimize(nll, np.array(x0, dtype=np.float64), method="Nelder-Mead",
                     options={"xatol": 1e-5, "fatol": 1e-7, "maxiter": 2000})
        if best is None or r.fun < best.fun:
            best = r
        if r.fun < 1e299 and x0 == start:
            break
    if best is None or best.fun >= 1e299:
        raise CalibrationError("the score tail could not be fitted (degenerate sample)")
    return float(best.x[0]), float(math.exp(best.x[1]))


@dataclass(frozen=True)
class TailFit:
    """A fitted GPD tail with its bootstrap replicates; scores and FMRs in the calibration's terms."""

    threshold: float  # u, a bin edge
    exceed_fraction: float  # zeta_u: share of the sample at or above u
    exceedances: int
    total: int
    shape: float
    scale: float
    censored: int  # top exceedances trimmed from the fit (at or above censor_at); still in zeta
    censor_at: float
    level: float
    boot: np.ndarray = field(repr=False)  # (reps, 3): shape, scale, zeta

    @property
    def sample_floor(self) -> float:
        """The smallest FMR the sample itself shows (rule of three)."""
        return 3.0 / self.total

    def fmr(self, score: float) -> float:
        """Point estimate of the share of impostor pairs at or above score (score >= threshold)."""
        return self.exceed_fraction * float(gpd_survival(np.array([score - self.threshold]), self.shape,
                                                          self.scale)[0])

    def fmr_upper(self, score: float) -> float:
        """The `level` bootstrap bound of that share (never below the point estimate)."""
        point = self.fmr(score)
        if not len(self.boot):
            return point
        y = max(score - self.threshold, 0.0)
        shape, scale, zeta = self.boot[:, 0], self.boot[:, 1], self.boot[:, 2]
        values = zeta * gpd_survival_many(y, shape, scale)
        return max(point, linear_quantile(values, self.level))

    def quantile(self, fmr: float) -> float:
        """Point estimate of the score with this FMR (fmr below exceed_fraction)."""
        p = min(fmr / self.exceed_fraction, 1.0)
        return self.threshold + float(gpd_excess_quantile(p, self.shape, self.scale))

    def quantile_bound(self, fmr: float) -> float:
        """Conservative score for this FMR: the `level` quantile of the bootstrap return levels."""
        point = self.quantile(fmr)
        if not len(self.boot):
            return point
        s, c, z = self.boot[:, 0], self.boot[:, 1], self.boot[:, 2]
        levels = self.threshold + gpd_excess_quantile(np.minimum(fmr / z, 1.0), s, c)
        return max(point, linear_quantile(levels, self.level))

    def summary(self) -> dict:
        return {"threshold": round(self.threshold, 6), "exceed_fraction": self.exceed_fraction,
                "exceedances": self.exceedances, "pairs": self.total, "shape": round(self.shape, 5),
                "scale": round(self.scale, 6), "censored_top": self.censored,
                "censor_at": round(self.censor_at, 6), "bootstrap_reps": len(self.boot),
                "bound_level": self.level}


def fit_tail(counts: np.ndarray, bin_width: float, *, tail_fraction: float = TAIL_FRACTION,
             min_exceedances: int = MIN_EXCEEDANCES, trim_fraction: float = TRIM_FRACTION,
             min_trim: int = MIN_TRIM, reps: int = REPS, level: float = LEVEL, seed: int = 0) -> TailFit:
    """Fit the GPD tail of a calibration histogram (bins of bin_width from SCORE_MIN)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    wanted = max(tail_fraction * total, float(min_exceedances))
    if total < 4 * min_exceedances:
        raise CalibrationError(f"a tail fit needs at least {4 * min_exceedances:,} pairs, the sample has {total:,}")
    tail_counts = np.cumsum(counts[::-1])[::-1]
    iu = int(np.nonzero(tail_counts >= wanted)[0][-1])
    n_u = int(tail_counts[iu])
    above = counts[iu:]
    ic = _censor_bin(tail_counts[iu:], n_u, trim_fraction, min_trim)
    if ic < 3:
        raise CalibrationError("the score tail is too concentrated to fit (almost every pair in one bin)")
    censored = int(tail_counts[iu + ic]) if iu + ic < len(counts) else 0
    body = above[:ic]
    mean_excess = float((np.arange(len(body)) + 0.5) @ body) * bin_width / max(int(body.sum()), 1)
    shape, scale = _fit_binned(body, censored, bin_width, (0.05, math.log(max(mean_excess, bin_width))))

    rng = np.random.default_rng(seed)
    boot = []
    nbins = len(above)
    for _ in range(reps):
        n_b = int(rng.poisson(n_u))
        if n_b < min_exceedances // 2:
            continue
        y = gpd_excess_quantile(rng.random(n_b), shape, scale)
        b_counts = np.bincount(np.minimum((y / bin_width).astype(np.int64), nbins - 1), minlength=nbins)
        b_tail = np.cumsum(b_counts[::-1])[::-1]
        b_ic = _censor_bin(b_tail, n_b, trim_fraction, min_trim)
        if b_ic < 3:
            continue
        try:
            s_b, c_b = _fit_binned(b_counts[:b_ic], int(b_tail[b_ic]) if b_ic < nbins else 0, bin_width,
                                   (shape, math.log(scale)))
        except CalibrationError:
            continue
        boot.append((s_b, c_b, n_b / total))
    edge = SCORE_MIN + iu * bin_width
    return TailFit(threshold=edge, exceed_fraction=n_u / total, exceedances=n_u, total=total, shape=shape,
                   scale=scale, censored=censored, censor_at=edge + ic * bin_width, level=level,
                   boot=np.array(boot, dtype=np.float64).reshape(-1, 3))
