"""Open-set calibration v2: GPD tail, gallery samples, duplicates, the conservative combination.

Synthetic data with known tails; no LFW needed. No timings are asserted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import genpareto, norm

from faceledger.calibration import (
    Calibration,
    GallerySample,
    OpenSetCalibration,
    find_duplicates,
    fit_tail,
    gallery_sample,
    packaged_calibration,
    score_histogram,
)
from faceledger.errors import CalibrationError, FaceledgerError

BIN = 0.0005


def normal_calibration(n: int = 2_000_000, sigma: float = 0.1, seed: int = 1, extra: list[float] = ()) -> Calibration:
    scores = np.random.default_rng(seed).normal(0.0, sigma, n)
    if len(extra):
        scores = np.concatenate([scores, np.asarray(extra)])
    return Calibration(calibration_id=f"normal-{seed}", model_id="test-model", bin_width=BIN,
                       counts=score_histogram(scores))


def unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- the GPD tail -----------------------------------------------------------------------------------

# scores = U + GPD(shape, scale) above a 1e-3 share of a body; the truth at FMR p is known in closed form
U, SHAPE, SCALE, ZETA = 0.4, 0.05, 0.03, 1e-3


def gpd_sample(seed: int, n: int = 2_000_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_tail = rng.binomial(n, ZETA)
    body = U - np.abs(rng.normal(0, 0.15, n - n_tail))
    tail = U + genpareto.rvs(SHAPE, scale=SCALE, size=n_tail, random_state=rng)
    return np.concatenate([body, np.minimum(tail, 0.9999)])


def gpd_truth(p: float) -> float:
    return U + genpareto.isf(p / ZETA, SHAPE, scale=SCALE)


def test_tail_fit_recovers_a_known_gpd_quantile():
    fit = fit_tail(score_histogram(gpd_sample(0)), BIN, reps=50)
    assert fit.shape == pytest.approx(SHAPE, abs=0.08)
    # 1e-6 is ~2 pairs deep in a 2M sample: the shape's sampling error (~0.04) moves it by a few hundredths
    for p, tol in ((1e-5, 0.03), (1e-6, 0.06)):
        assert fit.quantile(p) == pytest.approx(gpd_truth(p), abs=tol)
        assert fit.quantile_bound(p) >= fit.quantile(p)


def test_the_bound_covers_the_truth_in_most_repetitions():
    """The conservative bound at FMR 1e-7 (x20 beyond a 2M sample) is above the truth in >= 90 % of seeds."""
    covered = 0
    seeds = range(12)
    for seed in seeds:
        fit = fit_tail(score_histogram(gpd_sample(100 + seed)), BIN, reps=60, seed=seed)
        covered += fit.quantile_bound(1e-7) >= gpd_truth(1e-7)
    assert covered >= 0.9 * len(seeds)


def test_tail_of_a_normal_sample_is_close_and_conservative():
    cal = normal_calibration()
    fit = fit_tail(cal.counts, BIN, reps=60)
    for p in (1e-5, 1e-6):
        truth = 0.1 * norm.isf(p)
        assert fit.quantile(p) == pytest.approx(truth, abs=0.03)
        assert fit.quantile_bound(p) >= truth - 0.005


def test_a_handful_of_label_noise_pairs_does_not_move_the_threshold():
    clean = OpenSetCalibration(normal_calibration(), None, reps=60)
    noisy = OpenSetCalibration(normal_calibration(extra=[0.99, 0.985, 0.98, 0.97, 0.995]), None, reps=60)
    a, b = clean.threshold_for_fmr(1e-6), noisy.threshold_for_fmr(1e-6)
    assert b.score < 0.7  # not the ~0.95 the raw histogram would give
    assert abs(a.score - b.score) < 0.06
    raw = normal_calibration(extra=[0.99, 0.985, 0.98, 0.97, 0.995]).threshold_for_fmr(1e-6)
    assert raw.score > 0.9  # what the histogram alone does


def test_too_few_pairs_for_a_tail_is_a_clear_error():
    with pytest.raises(CalibrationError, match="needs at least"):
        fit_tail(score_histogram(np.random.default_rng(0).normal(0, 0.1, 500)), BIN)


# -- open-set thresholds from the packaged sample ---------------------------------------------------

@pytest.fixture(scope="module")
def packaged() -> OpenSetCalibration:
    return OpenSetCalibration(packaged_calibration("sface-2021dec"), None)


def test_packaged_thresholds_are_supported_to_a_million_faces(packaged):
    t = packaged.threshold_for_fpir(0.01, 1_000_000)
    assert t.supported and t.extrapolated
    assert 10 < t.extrapolation_factor < 100
    assert t.score < 0.9  # not the label-noise ceiling of the landed sample
    assert "Extrapolated: needed FMR 1e-08" in t.explanation and "beyond" in t.explanation
    assert t.source == "packaged" and t.binding == "packaged"
    assert t.predicted_fpir == pytest.approx(0.01, rel=0.5)


def test_packaged_thresholds_rise_with_gallery_size_and_say_when_unsupported(packaged):
    scores = [packaged.threshold_for_fpir(0.01, n).score for n in (1_000, 10_000, 100_000, 1_000_000)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    far = packaged.threshold_for_fpir(0.001, 10_000_000)
    assert not far.supported and "Not supported" in far.explanation


def test_packaged_at_ten_thousand_faces_is_near_the_oracle(packaged):
    # the reference oracle at ~8-10k faces and FPIR 0.01 is ~0.53; the landed threshold was 0.68
    assert packaged.threshold_for_fpir(0.01, 10_000).score < 0.56


def test_the_clean_packaged_sample_says_how_it_was_built():
    cal = packaged_calibration("sface-2021dec")
    assert cal.provenance["pairs_removed"] >= 10
    assert cal.max_impostor_score < 0.9
    assert cal.provenance["removed_file"].endswith(".removed.csv")


def test_fmr_estimate_is_the_larger_of_the_sources():
    rng = np.random.default_rng(3)
    base = normal_calibration(sigma=0.1)
    x = unit(rng, 3000, 24)  # cos of random 24-d vectors: sd ~ 0.2, far above the 0.1 packaged sample
    g = gallery_sample(x, np.arange(3000), model_id="test-model")
    both = OpenSetCalibration(base, g, reps=40)
    only = OpenSetCalibration(base, None, reps=40)
    for s in (0.3, 0.45, 0.6):
        assert both.fmr(s).upper >= only.fmr(s).upper
        assert both.fmr(s).fmr >= only.fmr(s).fmr


# -- gallery samples --------------------------------------------------------------------------------

def test_gallery_sample_counts_cross_subject_pairs_exhaustively():
    rng = np.random.default_rng(0)
    x = unit(rng, 300)
    subjects = np.repeat(np.arange(100), 3)
    g = gallery_sample(x, subjects, model_id="m", alias_suspect=2.0)  # counting only: no alias check
    same = sum(3 for _ in range(100))  # 3 within-subject pairs per subject
    assert g.exhaustive and g.pairs == 300 * 299 // 2 - same
    assert (g.subjects, g.faces) == (100, 300)
    scores = x @ x.T
    iu = np.triu_indices(300, 1)
    cross = subjects[iu[0]] != subjects[iu[1]]
    assert np.array_equal(g.counts, score_histogram(scores[iu][cross]))


def test_gallery_sample_beyond_max_pairs_is_a_seeded_sample():
    rng = np.random.default_rng(1)
    x = unit(rng, 3000)
    subjects = np.arange(3000) // 2
    a = gallery_sample(x, subjects, max_pairs=200_000, seed=5, model_id="m")
    b = gallery_sample(x, subjects, max_pairs=200_000, seed=5, model_id="m")
    c = gallery_sample(x, subjects, max_pairs=200_000, seed=6, model_id="m")
    assert not a.exhaustive and a.pairs == 200_000
    assert np.array_equal(a.counts, b.counts) and not np.array_equal(a.counts, c.counts)
    full = gallery_sample(x, subjects, max_pairs=10**8, model_id="m")
    # the sample's quantiles match the exhaustive ones
    qa = Calibration(calibration_id="a", model_id="m", bin_width=BIN, counts=a.counts).threshold_for_fmr(1e-2)
    qf = Calibration(calibration_id="f", model_id="m", bin_width=BIN, counts=full.counts).threshold_for_fmr(1e-2)
    assert qa.score == pytest.approx(qf.score, abs=0.01)


def test_gallery_sample_round_trip_and_foreign_model_refused(tmp_path):
    g = gallery_sample(unit(np.random.default_rng(2), 200), np.arange(200), model_id="sface-2021dec")
    path = tmp_path / "sample.json"
    g.save(path)
    again = GallerySample.load(path, model_id="sface-2021dec")
    assert np.array_equal(again.counts, g.counts) and again.pairs == g.pairs and again.subjects == 200
    with pytest.raises(CalibrationError, match="made for model 'sface-2021dec', not 'other-model'"):
        GallerySample.load(path, model_id="other-model")
    with pytest.raises(CalibrationError, match="rebuild the gallery sample"):
        OpenSetCalibration(Calibration(calibration_id="x", model_id="other-model", bin_width=BIN,
                                       counts=normal_calibration().counts), g)


@pytest.mark.parametrize("subjects", [1, 2])
def test_one_or_two_subjects_fall_back_to_packaged(subjects):
    rng = np.random.default_rng(4)
    x = unit(rng, 40)
    g = gallery_sample(x, np.arange(40) % subjects, model_id="test-model")
    oc = OpenSetCalibration(normal_calibration(), g, reps=40)
    t = oc.threshold_for_fpir(0.01, 40)
    assert oc.source == "packaged" and t.source == "packaged"
    assert "Packaged calibration only" in t.explanation and f"{subjects} subject" in t.explanation


def test_corrupt_files_give_clear_errors(tmp_path):
    bad = tmp_path / "calibration.json"
    bad.write_text("{not json")
    with pytest.raises(FaceledgerError, match="corrupt"):
        Calibration.load(bad)
    bad.write_text(json.dumps({"calibration_id": "x"}))
    with pytest.raises(CalibrationError, match="not a faceledger calibration"):
        Calibration.load(bad)
    with pytest.raises(CalibrationError, match="does not exist"):
        Calibration.load(tmp_path / "missing.json")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(CalibrationError, match="not a JSON object"):
        GallerySample.load(bad)
    bad.write_text(json.dumps({"format": "faceledger-gallery-sample-v1", "model_id": "m", "bin_width": BIN,
                               "first_bin": 0, "counts": [1, 2], "pairs": 99}))
    with pytest.raises(CalibrationError, match="corrupt"):
        GallerySample.load(bad)


# -- duplicates and population shift ----------------------------------------------------------------

def test_find_duplicates_within_and_across_galleries():
    rng = np.random.default_rng(5)
    x = unit(rng, 50, 64)
    x[10] = x[3] + 0.01 * unit(rng, 1, 64)[0]
    x[10] /= np.linalg.norm(x[10])
    subjects = np.array([f"s{i}" for i in range(50)])
    found = find_duplicates(x, subjects, min_score=0.9)
    assert [(a, b, i, j) for a, b, i, j, _ in found] == [("s3", "s10", 3, 10)]
    assert found[0][4] > 0.99
    subjects[10] = "s3"  # the same subject twice is not a finding
    assert find_duplicates(x, subjects, min_score=0.9) == []
    other = x[[3, 20]]
    across = find_duplicates(x[:5], subjects[:5], other, np.array(["t1", "t2"]), min_score=0.9)
    assert [(a, b, i, j) for a, b, i, j, _ in across] == [("s3", "t1", 3, 0)]
    with pytest.raises(CalibrationError):
        find_duplicates(x, subjects, min_score=2.0)


def test_a_few_duplicates_are_left_out_of_the_gallery_sample():
    rng = np.random.default_rng(6)
    x = unit(rng, 2000, 64)
    x[1000:1005] = x[:5]  # five photographs enrolled again under other subjects
    g = gallery_sample(x, np.arange(2000), model_id="test-model")
    assert g.duplicates_excluded == 5 and g.duplicates_kept == 0
    assert g.pairs == 2000 * 1999 // 2 - 5
    t = OpenSetCalibration(normal_calibration(), g, reps=20).threshold_for_fpir(0.01, 2000)
    assert "5 cross-subject pairs scoring like one photograph" in t.explanation


def test_one_person_under_many_names_does_not_over_promise():
    """Every face is one person under a different name: all cross-subject scores are high."""
    rng = np.random.default_rng(7)
    centre = unit(rng, 1, 64)[0]
    x = centre + 0.035 * rng.standard_normal((400, 64)).astype(np.float32)  # cosines ~0.9
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    subjects = np.arange(400)
    g = gallery_sample(x, subjects, model_id="test-model")
    assert g.duplicates_kept > 1000 and g.duplicates_excluded == 0  # too many to be label noise: kept
    assert len(find_duplicates(x, subjects, min_score=0.9)) > 1000
    oc = OpenSetCalibration(normal_calibration(), g, reps=40)
    t = oc.threshold_for_fpir(0.01, 400)
    packaged_only = OpenSetCalibration(normal_calibration(), None, reps=40).threshold_for_fpir(0.01, 400)
    assert t.binding == "gallery" and t.score > packaged_only.score + 0.3
    assert "counted as impostors" in t.explanation
    scores = (x @ x.T)[np.triu_indices(400, 1)]
    assert np.mean(scores >= t.score) <= 1e-3  # the threshold holds on the gallery itself


def test_a_shifted_population_raises_the_combined_threshold():
    """The gallery's impostor scores sit 0.09 higher than the packaged sample's: the promise must hold."""
    base = normal_calibration(sigma=0.1, seed=8)
    rng = np.random.default_rng(9)
    n = 3000
    # vectors whose pairwise cosines are ~ N(0.09, 0.1): a shared component plus noise in 100 dims
    shared = unit(rng, 1, 100)[0]
    noise = rng.standard_normal((n, 100)).astype(np.float32) / 10.0
    x = math.sqrt(0.09) * shared + math.sqrt(0.91) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = gallery_sample(x, np.arange(n), max_pairs=2_000_000, model_id="test-model")
    combined = OpenSetCalibration(base, g, reps=40)
    only = OpenSetCalibration(base, None, reps=40)
    target, size = 0.01, 10_000
    t, p = combined.threshold_for_fpir(target, size), only.threshold_for_fpir(target, size)
    assert t.source == "combined" and t.binding == "gallery"
    assert t.score > p.score + 0.05
    # check the FMR the threshold needs on fresh pairs from the same population
    y = math.sqrt(0.09) * shared + math.sqrt(0.91) * rng.standard_normal((4000, 100)).astype(np.float32) / 10.0
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    fresh = (y[:2000] @ y[2000:].T).ravel()
    needed = t.per_comparison_fmr
    assert np.mean(fresh >= t.score) <= 3 * needed + 3 / fresh.size
    assert np.mean(fresh >= p.score) > 5 * needed  # the packaged threshold alone over-promises here


def test_a_stricter_target_never_gets_a_lower_threshold():
    """Regression: a small gallery sample with a heavy tail, where no finite score holds the deeper FMRs.
    The threshold used to fall back to the shifted packaged tail there (0.896 at FPIR 0.01, 0.653 at
    0.001): a stricter target got a lower threshold, and a promise the gallery's own data refuse."""
    from scipy.stats import genpareto

    from faceledger.calibration import OpenSetCalibration, packaged_calibration
    from faceledger.calibration.core import score_histogram
    from faceledger.calibration.gallery import GallerySample

    rng = np.random.default_rng(1)
    scores = rng.normal(0.06, 0.1, 40_000)
    heavy = rng.random(len(scores)) < 0.02
    scores[heavy] = 0.35 + genpareto.rvs(0.25, scale=0.05, size=int(heavy.sum()), random_state=2)
    counts = score_histogram(np.clip(scores, -1, 1), 0.0005)
    sample = GallerySample(model_id="sface-2021dec", bin_width=0.0005, counts=counts, pairs=int(counts.sum()),
                           subjects=2000, faces=2000, exhaustive=False, seed=0, duplicate_score=0.9,
                           duplicates_excluded=0, duplicates_kept=0)
    calibration = OpenSetCalibration(packaged_calibration("sface-2021dec"), sample)
    for size in (1_000, 10_000, 100_000):
        found = [calibration.threshold_for_fpir(target, size) for target in (0.1, 0.01, 0.001, 0.0001)]
        scores_found = [t.score for t in found]
        assert scores_found == sorted(scores_found), (size, scores_found)
        assert all(t.supported or t.score == 1.0 or t.binding == "packaged" for t in found)


def test_a_face_filed_under_another_name_leaves_the_gallery_sample():
    """One person under two names (and one mislabelled photo) are duplicates to report, not impostors:
    their pairs leave the histogram; a stranger who resembles one photo of a subject stays in it."""
    rng = np.random.default_rng(11)
    people = unit(rng, 60, 128)
    faces, subjects = [], []
    for person in range(60):
        for _ in range(4):
            v = people[person] + 0.08 * rng.standard_normal(128).astype(np.float32)
            faces.append(v / np.linalg.norm(v))
            subjects.append(person)
    for _ in range(4):  # person 0 enrolled again under a second name (subject 60)
        v = people[0] + 0.08 * rng.standard_normal(128).astype(np.float32)
        faces.append(v / np.linalg.norm(v))
        subjects.append(60)
    faces[5] = faces[200]  # subject 1's second photo is really person 50 (mislabelled)
    look = faces[100] * 0.6 + unit(rng, 1, 128)[0] * 0.8  # subject 61 resembles one photo of subject 25
    faces.append(look / np.linalg.norm(look))
    subjects.append(61)
    x, s = np.array(faces, np.float32), np.array(subjects)
    g = gallery_sample(x, s, model_id="m")
    plain = gallery_sample(x, s, model_id="m", alias_suspect=2.0)
    # 4 + 4 faces of the two names; the mislabelled photo belongs to subject 50 (one of subject 1's four
    # photos does not make subject 50's faces look like subject 1)
    assert g.alias_faces == 8 + 1
    assert g.alias_pairs_excluded == 16 + 4
    assert g.pairs == plain.pairs + plain.duplicates_excluded - g.alias_pairs_excluded  # plain left the copy out
    top = lambda sample: float(np.nonzero(sample.counts)[0][-1])  # noqa: E731
    assert top(g) < top(plain)  # the same-person pairs owned the top of the tail
    assert (x[-1] @ x[100]) >= 0.5 and g.counts.sum() > 0  # the look-alike's pair is still an impostor pair


def _sample_of(scores: np.ndarray, subjects: int = 1000) -> GallerySample:
    counts = score_histogram(np.clip(scores, -1, 1), BIN)
    return GallerySample(model_id="test-model", bin_width=BIN, counts=counts, pairs=int(counts.sum()),
                         subjects=subjects, faces=subjects, exhaustive=True, seed=0, duplicate_score=0.9,
                         duplicates_excluded=0, duplicates_kept=0)


def test_a_gallery_like_the_packaged_population_costs_only_its_shift():
    """A 1,000-face gallery (0.5 M pairs) from the packaged population: the shift rule reads it where it has
    100 pairs, finds no excess, and keeps (about) the packaged threshold and its promise. (On LFW the
    gallery's own bound at FMR 1e-5 is much wider than on this normal tail: benchmarks/openset_combine.py.)"""
    packaged = normal_calibration(sigma=0.1, seed=1)
    sample = _sample_of(np.random.default_rng(21).normal(0.0, 0.1, 499_500))
    shift = OpenSetCalibration(packaged, sample, reps=100)
    old = OpenSetCalibration(packaged, sample, reps=100, combine="max-bound")
    alone = OpenSetCalibration(packaged, None, reps=100).threshold_for_fpir(0.01, 1000)
    t, t_old = shift.threshold_for_fpir(0.01, 1000), old.threshold_for_fpir(0.01, 1000)
    described = shift.describe()
    assert described["combine"] == "shift" and described["gallery_shift"]["applied"]
    assert described["gallery_shift"]["shift"] < 0.02  # the Wilson bound on 100 pairs, no real excess
    assert alone.score <= t.score <= alone.score + 0.02
    assert abs(t.score - t_old.score) < 0.02  # a light (normal) tail: its own bound is narrow too
    truth = norm.sf(t.score, 0.0, 0.1)  # the population's FMR at the threshold: the promise holds
    assert truth <= t.per_comparison_fmr
    assert t.predicted_fpir <= 0.011  # what it says matches what it asks for
    # a shallow target the gallery answers from its own pairs (FMR 2.2e-4: ~110 of them): the predicted
    # rate is read the same way, not from the shifted packaged tail (it said 0.21 for 0.2 before)
    shallow = shift.threshold_for_fpir(0.2, 1000)
    assert shallow.per_comparison_fmr >= shift.reference_fmr and shallow.predicted_fpir <= 0.2


def test_a_gallery_tail_heavier_than_the_packaged_one_keeps_its_own_bound():
    """The shifted packaged tail borrows the packaged shape: a gallery whose deeper pairs refute it (more
    pairs than the shifted tail expects) is answered by its own tail and bound, as before."""
    rng = np.random.default_rng(1)
    scores = rng.normal(0.06, 0.1, 40_000)
    heavy = rng.random(len(scores)) < 0.02
    scores[heavy] = 0.35 + genpareto.rvs(0.25, scale=0.05, size=int(heavy.sum()), random_state=2)
    sample = _sample_of(scores, subjects=2000)
    packaged = normal_calibration(sigma=0.1, seed=1)
    shift = OpenSetCalibration(packaged, sample, reps=100)
    old = OpenSetCalibration(packaged, sample, reps=100, combine="max-bound")
    described = shift.describe()
    assert not described["gallery_shift"]["applied"]
    assert any(not c["consistent"] and c["pairs_seen"] > 2 * c["expected_pairs"] for c in described["gallery_shape_check"])
    for target, size in ((0.1, 1000), (0.01, 1000), (0.01, 10_000)):
        assert shift.threshold_for_fpir(target, size).score == old.threshold_for_fpir(target, size).score


def test_an_unknown_combination_rule_is_refused():
    with pytest.raises(CalibrationError, match="combination rule"):
        OpenSetCalibration(normal_calibration(), None, combine="mean")


# --- the bootstrap bound's quantile -----------------------------------------------------------------


def test_linear_quantile_is_numpys_bit_for_bit():
    from faceledger.calibration.tail import linear_quantile

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 7, 199, 200, 201):
        for values in (rng.random(n), rng.exponential(1e-7, n), np.round(rng.random(n), 1)):  # ties too
            for q in (0.0, 0.05, 0.5, 0.9, 0.95, 0.975, 0.999, 1.0, rng.random()):
                expected = np.quantile(values, q)
                got = linear_quantile(values, q)
                assert type(got) is float and got == expected and math.copysign(1, got) == math.copysign(1, expected)
    assert math.isnan(linear_quantile(np.array([0.3, np.nan, 0.1]), 0.95))


def test_tail_bounds_are_the_same_as_with_np_quantile():
    """fmr_upper and quantile_bound read the bootstrap quantile without np.quantile (tail.linear_quantile):
    the same floats as before for scores across the tail and beyond, and FMRs across the range."""
    from faceledger.calibration.tail import gpd_excess_quantile, gpd_survival_many

    fit = fit_tail(normal_calibration().counts, BIN, reps=60)
    s, c, z = fit.boot[:, 0], fit.boot[:, 1], fit.boot[:, 2]
    for score in np.linspace(fit.threshold - 0.05, 1.0, 97):
        values = z * gpd_survival_many(max(score - fit.threshold, 0.0), s, c)
        assert fit.fmr_upper(float(score)) == max(fit.fmr(float(score)), float(np.quantile(values, fit.level)))
    for fmr in np.geomspace(1e-12, fit.exceed_fraction, 41):
        levels = fit.threshold + gpd_excess_quantile(np.minimum(fmr / z, 1.0), s, c)
        assert fit.quantile_bound(float(fmr)) == max(fit.quantile(float(fmr)), float(np.quantile(levels, fit.level)))
