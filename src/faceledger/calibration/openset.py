"""Open-set thresholds from the packaged sample and the gallery's own sample, combined conservatively.

Each source (a score histogram) answers "which score has FMR p?" in one of two ways:
- p at or above the share its tail fit starts from (zeta_u, ~1e-4): the histogram itself;
- below: the GPD tail's bootstrap bound (tail.py), raised where needed so that the sample does not
  show, with 95 % confidence, an FMR above p at that score (Wilson lower bound of the count above it).
  Below the sample's own floor (3 / pairs) the figure is extrapolated, and says by how far; beyond
  `max_extrapolation` times the floor it is not supported.

Combined (COMBINE = "shift"): the packaged answer, raised by what the gallery's own pairs show. The
gallery counts when it has at least MIN_SUBJECTS subjects and MIN_PAIRS cross-subject pairs. Where its
sample holds at least REFERENCE_PAIRS pairs above the score for p, the gallery answers from its own
data: the lowest score whose FMR's 95 % Wilson upper bound is at most p. Deeper (fewer pairs to read),
it answers with the packaged tail moved up by the gallery's excess at its reference FMR (REFERENCE_PAIRS
/ pairs): its 95 % upper quantile there minus the packaged point quantile there, never negative, and never
below a score at which its own sample shows (95 % Wilson lower bound) an FMR above p. That reading
borrows the packaged tail's shape, so it is used only where the gallery's deeper pairs agree with it:
where the shifted packaged tail expects 30 or 10 of the gallery's pairs, the gallery must not hold
significantly more (Poisson, p < 0.01 each). A gallery whose tail is heavier than that (many faces of
a few people, a population unlike LFW) is answered by "max-bound" below, its own tail and bound. A gallery
whose people score higher among themselves than LFW's (one lab, one family, one camera) therefore
raises the threshold by how much higher, measured where it has data; a gallery like LFW's costs only
the uncertainty of that measurement, not the width of its own 5 M-pair tail fit extrapolated.

COMBINE = "max-bound" (before; kept for the comparison in benchmarks/openset_combine.py): the highest
score either source's own GPD bound asks for; beyond the gallery's reach (max_extrapolation of its
floor), the packaged threshold raised by the gallery's excess at the deepest FMR it supports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CalibrationError
from .core import SCORE_MIN, Calibration, FmrEstimate, Threshold, fpir_at, per_comparison_fmr
from .gallery import DUPLICATE_SCORE, MAX_EXCLUDED_SHARE, GallerySample
from .fit_cache import cached_fit_tail
from .tail import REPS, TailFit

MAX_EXTRAPOLATION = 100.0
REFERENCE_PAIRS = 100  # the gallery reads its own tail where it has at least this many pairs above
COMBINES = ("shift", "max-bound")
COMBINE = "shift"
CHECK_PAIRS = (30, 10)  # the shift's shape check: the shifted packaged tail's expected gallery pairs
SHAPE_ALPHA = 0.01


@dataclass(frozen=True)
class OpenSetThreshold(Threshold):
    """A Threshold with where it came from and how far it reaches beyond the data."""

    source: str = "packaged"  # packaged | gallery | combined (both consulted)
    binding: str = "packaged"  # the source that set the score
    extrapolated: bool = False
    extrapolation_factor: float = 1.0  # sample floor / needed FMR of the binding source (1: within data)
    sample_floor: float = 0.0  # the smallest FMR the binding source's sample shows
    predicted_fpir: float | None = None
    explanation: str = ""


@dataclass(frozen=True)
class SourceAnswer:
    score: float
    fmr_upper: float
    extrapolated: bool
    factor: float
    floor: float
    supported: bool
    method: str


def _wilson(k: np.ndarray, n: int, sign: float, z: float = 1.96) -> np.ndarray:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre + sign * half, 0.0, 1.0)


def _wilson_lower(k: np.ndarray, n: int) -> np.ndarray:
    return _wilson(k, n, -1.0)


def _poisson_at_least(k: int, mean: float) -> float:
    """P(K >= k) for K ~ Poisson(mean) (small means; far beyond the mean it is 0 for our purpose)."""
    if k <= 0:
        return 1.0
    if k > mean + 12 * math.sqrt(mean) + 40:
        return 0.0
    term, below = math.exp(-mean), 0.0
    for i in range(k):
        below += term
        term *= mean / (i + 1)
    return max(0.0, 1.0 - below)


class Source:
    """One histogram with its tail fit: scores for an FMR, FMR bounds for a score."""

    def __init__(self, name: str, cal: Calibration, *, reps: int = REPS, seed: int = 0,
                 max_extrapolation: float = MAX_EXTRAPOLATION, trust_top: bool = False) -> None:
        self.name = name
        # trust_top: the sample's most extreme pairs were checked (the packaged sample, cleaned of label
        # noise): they bind thresholds like any other impostor pair. Otherwise (a gallery's own sample)
        # the pairs the tail fit trims may be duplicate enrolments and do not set a threshold alone.
        self.trust_top = trust_top
        self.cal = cal
        self.max_extrapolation = max_extrapolation
        self.floor = 3.0 / cal.total
        # pairs at or above the near-duplicate level are one photograph under two names, not impostors,
        # as long as they are a handful: they never set a threshold on their own
        dup_bin = cal._bin(DUPLICATE_SCORE)
        self.duplicates = int(cal._tail[dup_bin])
        tail = cal._tail.astype(np.float64)
        if 0 < self.duplicates <= max(10, MAX_EXCLUDED_SHARE * cal.total):
            tail = np.where(np.arange(len(tail)) < dup_bin, tail - self.duplicates, 0.0)
        else:
            self.duplicates = 0
        self._lower = _wilson_lower(tail, cal.total)
        self._upper = _wilson(tail, cal.total, 1.0)
        self._counts_above = tail
        min_exc = int(min(1000, max(100, cal.total // 20)))
        self.tail: TailFit | None
        try:
            self.tail = cached_fit_tail(cal.counts, cal.bin_width, min_exceedances=min_exc, min_trim=min(10, min_exc // 20),
                                 reps=reps, seed=seed)
        except CalibrationError:
            self.tail = None

    def _edge(self, index: int) -> float:
        return round(SCORE_MIN + index * self.cal.bin_width, 6)

    def consistent_edge(self, p: float) -> float:
        """The lowest bin edge where the sample does not show FMR > p with 95 % confidence.

        Only the fitted part of the sample is read: the top exceedances the tail fit trims (label noise,
        one photograph under two names) are not trusted to set a threshold, above or below."""
        ok = np.nonzero(self._lower <= p)[0]
        edge = self._edge(int(ok[0])) if len(ok) else 1.0
        return min(edge, self.tail.censor_at) if self.tail is not None and not self.trust_top else edge

    def upper_quantile(self, p: float) -> float:
        """The lowest bin edge whose FMR's 95 % Wilson upper bound is at most p (the sample's own data,
        read conservatively; duplicates left out as in consistent_edge)."""
        ok = np.nonzero(self._upper <= p)[0]
        return self._edge(int(ok[0])) if len(ok) else 1.0

    def pairs_above(self, score: float) -> int:
        return int(self._counts_above[self.cal._bin(score)])

    def point_quantile(self, p: float) -> float:
        """The score with FMR p by the sample's point estimate (histogram where >= 100 pairs show it, else
        the tail fit's point estimate)."""
        if p * self.cal.total >= REFERENCE_PAIRS or self.tail is None or p >= self.tail.exceed_fraction:
            return self.cal.threshold_for_fmr(p).score
        return self.tail.quantile(p)

    def fmr_upper(self, score: float) -> tuple[float, float]:
        """(point, upper) FMR at score: histogram (Wilson) inside the data, tail bound beyond u."""
        est = self.cal.fmr(score)
        if self.tail is None or score < self.tail.threshold:
            return est.fmr, est.upper
        # the sample's own (Wilson lower) count still floors the estimate where the fit read it
        read = self.trust_top or score < self.tail.censor_at
        seen = float(self._lower[self.cal._bin(score)]) if read else 0.0
        point = max(self.tail.fmr(score), seen)
        return point, max(self.tail.fmr_upper(score), seen)

    def answer(self, p: float) -> SourceAnswer:
        factor = max(self.floor / p, 1.0)
        extrapolated = p < self.floor
        if self.tail is None or p >= self.tail.exceed_fraction:
            t = self.cal.threshold_for_fmr(p)
            supported = not extrapolated
            return SourceAnswer(t.score, self.fmr_upper(t.score)[1], extrapolated, factor, self.floor,
                                supported, "histogram" if supported else "histogram, capped at its floor")
        score = max(self.tail.quantile_bound(p), self.consistent_edge(p))
        score = min(math.ceil(score / self.cal.bin_width - 1e-9) * self.cal.bin_width, 1.0)
        supported = factor <= self.max_extrapolation and score < 1.0
        return SourceAnswer(round(score, 6), self.fmr_upper(score)[1], extrapolated, factor, self.floor,
                            supported, f"GPD tail, {self.tail.level:.0%} bootstrap bound")


_PACKAGED: dict[tuple, Source] = {}


def _packaged_source(cal: Calibration, reps: int, max_extrapolation: float) -> Source:
    """The packaged calibration's Source, fitted once per process (a tail fit takes about a second)."""
    key = (cal.calibration_id, cal.total, hash(cal.counts.tobytes()), reps, max_extrapolation)
    if key not in _PACKAGED:
        if len(_PACKAGED) >= 8:
            _PACKAGED.pop(next(iter(_PACKAGED)))
        _PACKAGED[key] = Source("packaged", cal, reps=reps, max_extrapolation=max_extrapolation, trust_top=True)
    return _PACKAGED[key]


class OpenSetCalibration:
    """Packaged and gallery calibrations combined: a drop-in for Calibration in the search path."""

    def __init__(self, packaged: Calibration | None, gallery: GallerySample | None = None, *,
                 reps: int = REPS, max_extrapolation: float = MAX_EXTRAPOLATION, combine: str = COMBINE) -> None:
        if combine not in COMBINES:
            raise CalibrationError(f"unknown combination rule {combine!r} (one of {', '.join(COMBINES)})")
        self.combine = combine
        if packaged is None and gallery is None:
            raise CalibrationError("an open-set calibration needs a packaged calibration or a gallery sample")
        if packaged is not None and gallery is not None and gallery.model_id and gallery.model_id != packaged.model_id:
            raise CalibrationError(f"the gallery sample was made for model {gallery.model_id!r}, the calibration "
                                   f"is for {packaged.model_id!r}; rebuild the gallery sample")
        self.packaged = _packaged_source(packaged, reps, max_extrapolation) if packaged is not None else None
        self.gallery_sample = gallery
        self.gallery_note = gallery.why_not_used() if gallery is not None else "no gallery sample"
        self.gallery = None
        if gallery is not None and self.gallery_note is None:
            self.gallery = Source("gallery", gallery.calibration(), reps=reps, max_extrapolation=max_extrapolation)
        if self.packaged is None and self.gallery is None:
            raise CalibrationError(f"no calibration to use: {self.gallery_note}")
        self.model_id = packaged.model_id if packaged is not None else gallery.model_id
        parts = [packaged.calibration_id] if packaged is not None else []
        if self.gallery is not None:
            parts.append(gallery.sample_id)
        self.calibration_id = "+".join(parts)
        self.source = "combined" if self.packaged and self.gallery else ("gallery" if self.gallery else "packaged")
        self._thresholds: dict[tuple[float, int], OpenSetThreshold] = {}
        self.reference_fmr = self.shift = None
        self.shift_check: list[dict] = []
        if self.gallery is not None and self.packaged is not None and combine == "shift":
            g = self.gallery
            self.reference_fmr = min(REFERENCE_PAIRS / g.cal.total, 1.0)
            self._reference_score = g.upper_quantile(self.reference_fmr)
            self._packaged_reference = self.packaged.point_quantile(self.reference_fmr)
            self.shift = self._shift_measured = round(max(0.0, self._reference_score - self._packaged_reference), 6)
            self.shift_check = self._shape_check()
            if not all(c["consistent"] for c in self.shift_check):
                self.shift = None  # the gallery's tail is not the packaged one's shape: its own bound answers

    # -- thresholds ------------------------------------------------------------------------------

    def threshold_for_fmr(self, target_fmr: float, *, target: float | None = None) -> OpenSetThreshold:
        if not 0 < target_fmr < 1:
            raise CalibrationError(f"target FMR must be between 0 and 1, got {target_fmr}")
        answers: dict[str, SourceAnswer] = {}
        notes: list[str] = []
        if self.packaged is not None:
            answers["packaged"] = self.packaged.answer(target_fmr)
        if self.gallery is not None:
            if self.shift is not None:
                g = self._gallery_over_packaged(target_fmr, answers["packaged"], notes)
            else:
                g = self.gallery.answer(target_fmr)
                # Beyond the gallery's reach, its excess over the packaged tail is carried down. Within its
                # reach but with no finite score holding p (score 1.0), the gallery's "cannot promise" stands.
                if not g.supported and g.factor > self.gallery.max_extrapolation and self.packaged is not None:
                    g = self._gallery_shift(target_fmr, answers["packaged"], g, notes)
            answers["gallery"] = g
        binding = max(answers, key=lambda k: (answers[k].score, k == "gallery"))
        b = answers[binding]
        score = b.score
        upper = max(self._upper(name, score) for name in answers)
        supported = all(a.supported for a in answers.values())
        text = self._explain(target_fmr, binding, answers, notes)
        return OpenSetThreshold(score=score, target=target if target is not None else target_fmr,
                                per_comparison_fmr=target_fmr, predicted_fmr=upper, supported=supported,
                                source=self.source, binding=binding, extrapolated=b.extrapolated,
                                extrapolation_factor=round(b.factor, 2), sample_floor=b.floor, explanation=text)

    def threshold_for_fpir(self, target_fpir: float, gallery_size: int) -> OpenSetThreshold:
        """Threshold so that a search compared against gallery_size faces holds target_fpir (memoised:
        a calibration object is immutable, and searches ask the same question many times)."""
        key = (float(target_fpir), int(gallery_size))
        cached = self._thresholds.get(key)
        if cached is None:
            if len(self._thresholds) > 256:
                self._thresholds.clear()
            cached = self._thresholds[key] = self._threshold_for_fpir(*key)
        return cached

    def _threshold_for_fpir(self, target_fpir: float, gallery_size: int) -> OpenSetThreshold:
        needed = per_comparison_fmr(target_fpir, gallery_size)
        t = self.threshold_for_fmr(needed, target=target_fpir)
        predicted = fpir_at(t.predicted_fmr, gallery_size)
        text = (f"FPIR {target_fpir:g} over {int(gallery_size):,} faces needs FMR {needed:.2g} per comparison; "
                + t.explanation + f" Predicted FPIR {predicted:.3g}.")
        return OpenSetThreshold(**{**t.__dict__, "predicted_fpir": predicted, "explanation": text})

    def _shape_check(self) -> list[dict]:
        """Does the gallery's tail beyond its reference FMR follow the shifted packaged tail? At the scores
        where that model expects CHECK_PAIRS of the gallery's pairs, the gallery must not hold
        significantly more (one-sided Poisson test at SHAPE_ALPHA)."""
        g, out = self.gallery, []
        for expected in CHECK_PAIRS:
            q = expected / g.cal.total
            if q >= self.reference_fmr:
                continue
            score = self.packaged.point_quantile(q) + self.shift
            seen = g.pairs_above(score) if score < 1.0 else 0
            chance = _poisson_at_least(seen, expected)
            out.append({"expected_pairs": expected, "score": round(score, 6), "pairs_seen": seen,
                        "p_value": chance, "consistent": chance >= SHAPE_ALPHA})
        return out

    def _gallery_over_packaged(self, p: float, packaged: SourceAnswer, notes: list[str]) -> SourceAnswer:
        """COMBINE "shift": the gallery's own upper quantile where it has data, else the packaged answer
        raised by the gallery's excess at its reference FMR (see the module docstring)."""
        g = self.gallery
        if p >= self.reference_fmr:
            score = g.upper_quantile(p)
            return SourceAnswer(score, self._gallery_fmr(score)[1], False, 1.0, g.floor, score < 1.0,
                                "the gallery's own pairs, 95 % upper bound")
        edge = g.consistent_edge(p)
        score = min(round(max(packaged.score + self.shift, edge), 6), 1.0)
        if self.shift > 0:
            notes.append(f"at FMR {self.reference_fmr:.2g} ({REFERENCE_PAIRS} of its pairs) the gallery's scores reach "
                         f"{self._reference_score:.4f} (95 % upper bound) against the packaged {self._packaged_reference:.4f}, "
                         f"so the packaged threshold is raised by {self.shift:.4f}")
        if edge > packaged.score + self.shift:
            notes.append(f"the gallery's own pairs show an FMR above {p:.2g} up to {edge:.4f}")
        return SourceAnswer(score, self._gallery_fmr(score)[1], packaged.extrapolated, packaged.factor,
                            packaged.floor, packaged.supported and score < 1.0,
                            "packaged tail raised by the gallery's excess")

    def _gallery_fmr(self, score: float) -> tuple[float, float]:
        """(point, upper) FMR at score as COMBINE "shift" reads the gallery: its own counts (Wilson) where
        their upper bound reaches the reference FMR, else the packaged tail moved up by the shift."""
        g = self.gallery
        if self.shift is None:
            return g.fmr_upper(score)
        est = g.cal.fmr(score)
        if est.upper >= self.reference_fmr:  # where the gallery answers thresholds from its own pairs
            return est.fmr, est.upper
        read = g.tail is None or score < g.tail.censor_at  # the trimmed top pairs may be duplicates
        seen = float(g._lower[g.cal._bin(score)]) if read else 0.0
        point, upper = self.packaged.fmr_upper(score - self.shift)
        return max(point, seen), max(upper, seen)

    def _gallery_shift(self, p: float, packaged: SourceAnswer, g: SourceAnswer, notes: list[str]) -> SourceAnswer:
        """The gallery beyond its reach: the packaged threshold moved by the gallery's excess where it can speak."""
        deepest = self.gallery.floor * self.gallery.max_extrapolation  # where the gallery has data to compare
        at = self.gallery.answer(deepest)
        ref = self.packaged.answer(deepest)
        shift = max(0.0, at.score - ref.score)
        # A stricter target never gets a lower threshold: at least what the gallery asks for at the
        # deepest FMR it still supports by itself (its floor / max_extrapolation).
        reach = self.gallery.answer(self.gallery.floor / self.gallery.max_extrapolation * 1.0001)
        floor_score = reach.score  # 1.0 when not even that FMR is held by a finite score
        score = min(round(max(packaged.score + shift, floor_score), 6), 1.0)
        notes.append(f"the gallery's own sample has data to FMR {deepest:.2g}; there its threshold is {at.score:.4f} "
                     f"against the packaged {ref.score:.4f}, so the packaged threshold is raised by {shift:.4f}"
                     + (f", and kept at or above the gallery's own {floor_score:.4f} at the deepest FMR it "
                        "supports" if floor_score > packaged.score + shift else ""))
        return SourceAnswer(score, g.fmr_upper, True, g.factor, g.floor, packaged.supported and score < 1.0,
                            "packaged tail shifted by the gallery's excess")

    def _upper(self, name: str, score: float) -> float:
        return self.packaged.fmr_upper(score)[1] if name == "packaged" else self._gallery_fmr(score)[1]

    def _explain(self, p: float, binding: str, answers: dict[str, SourceAnswer], notes: list[str]) -> str:
        b = answers[binding]
        parts = [f"threshold {b.score:.4f} set by the {binding} sample ({b.method})."]
        if b.extrapolated:
            parts.append(f"Extrapolated: needed FMR {p:.2g}, the sample supports down to {b.floor:.2g}, "
                         f"×{b.factor:.0f} beyond.")
        if not b.supported:
            parts.append(f"Not supported: more than ×{MAX_EXTRAPOLATION:.0f} beyond the data or no finite "
                         "score holds it; choose a higher target FPIR or calibrate on more pairs.")
        for name, a in answers.items():
            if name != binding:
                parts.append(f"The {name} sample asks for {a.score:.4f} ({a.method}).")
        if self.gallery is None:
            parts.append(f"Packaged calibration only: {self.gallery_note}.")
        if self.gallery is not None and self.gallery_sample.duplicates_excluded:
            parts.append(f"{self.gallery_sample.duplicates_excluded:,} cross-subject pairs scoring like one "
                         f"photograph (>= {self.gallery_sample.duplicate_score:g}) were left out of the gallery "
                         "sample as probable duplicate enrolments (list them with find_duplicates).")
        if self.gallery is not None and self.gallery_sample.alias_pairs_excluded:
            parts.append(f"{self.gallery_sample.alias_faces:,} faces look like another subject's person (median "
                         f"score against that subject's faces); their {self.gallery_sample.alias_pairs_excluded:,} "
                         "pairs were left out of the gallery sample as duplicate enrolments (`gallery duplicates`).")
        if self.gallery is not None and self.gallery_sample.duplicates_kept:
            parts.append(f"The gallery holds {self.gallery_sample.duplicates_kept:,} cross-subject pairs scoring "
                         "like one photograph; they are counted as impostors.")
        parts.extend(n[0].upper() + n[1:] + "." for n in notes)
        return " ".join(parts)

    # -- scores ----------------------------------------------------------------------------------

    def fmr(self, score: float) -> FmrEstimate:
        """FMR at a score: the larger point and the larger upper bound of the sources (conservative)."""
        sources = [s for s in (self.packaged, self.gallery) if s is not None]
        values = [self._gallery_fmr(score) if s is self.gallery else s.fmr_upper(score) for s in sources]
        base = sources[0].cal.fmr(score)
        point = max(v[0] for v in values)
        upper = max(v[1] for v in values)
        return FmrEstimate(score=float(score), fmr=point, lower=min(base.lower, point), upper=max(upper, point),
                           impostors_at_or_above=base.impostors_at_or_above, impostors_total=base.impostors_total)

    def describe(self) -> dict:
        """What the calibration rests on, for the ledger and the transparency report."""
        out = {"calibration_id": self.calibration_id, "source": self.source, "gallery_note": self.gallery_note,
               "combine": self.combine}
        if self.reference_fmr is not None:
            out["gallery_shift"] = {"reference_fmr": self.reference_fmr, "reference_pairs": REFERENCE_PAIRS,
                                    "gallery_score": self._reference_score,
                                    "packaged_score": self._packaged_reference, "shift": self._shift_measured,
                                    "applied": self.shift is not None}
        if self.shift_check:
            out["gallery_shape_check"] = self.shift_check
        for name, s in (("packaged", self.packaged), ("gallery", self.gallery)):
            if s is not None:
                out[name] = {"pairs": s.cal.total, "floor": s.floor,
                             "tail": s.tail.summary() if s.tail is not None else None}
        if self.gallery_sample is not None:
            g = self.gallery_sample
            out["gallery_sample"] = {"subjects": g.subjects, "faces": g.faces, "pairs": g.pairs,
                                     "exhaustive": g.exhaustive, "duplicates_excluded": g.duplicates_excluded,
                                     "duplicates_kept": g.duplicates_kept, "alias_faces": g.alias_faces,
                                     "alias_pairs_excluded": g.alias_pairs_excluded}
        return out
