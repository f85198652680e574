"""Unit tests of calibration.py: synthetic impostor scores with a known tail, no LFW needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceledger.calibration import (
    Calibration,
    fpir_at,
    packaged_calibration,
    per_comparison_fmr,
    score_histogram,
)
from faceledger.errors import FaceledgerError

SIGMA = 0.1
N_SCORES = 2_000_000


def normal_tail(s: float, sigma: float = SIGMA) -> float:
    return 0.5 * math.erfc(s / (sigma * math.sqrt(2)))


@pytest.fixture(scope="module")
def scores() -> np.ndarray:
    return np.random.default_rng(20240501).normal(0.0, SIGMA, N_SCORES)


@pytest.fixture(scope="module")
def cal(scores) -> Calibration:
    return Calibration.from_scores(scores, calibration_id="synthetic-normal", model_id="test-model",
                                   description="N(0, 0.1) impostor scores")


@pytest.mark.parametrize("score", [0.1, 0.2, 0.25, 0.3, 0.35])
def test_fmr_matches_the_analytic_tail(cal, score):
    expected = normal_tail(score)
    estimate = cal.fmr(score)
    # sampling noise is at most ~6% at 0.35 (466 expected pairs); the bin holding the score adds < 2%
    assert estimate.fmr == pytest.approx(expected, rel=0.10)
    assert estimate.lower <= estimate.fmr <= estimate.upper
    assert estimate.impostors_total == N_SCORES


def test_fmr_never_understates_the_sample(cal, scores):
    for score in (0.15, 0.2731, 0.31, 0.4):
        observed = np.count_nonzero(scores >= score)
        assert cal.fmr(score).impostors_at_or_above >= observed


@pytest.mark.parametrize("target", [1e-2, 1e-3, 1e-4, 1e-5])
def test_threshold_for_fmr_holds_the_target(cal, scores, target):
    t = cal.threshold_for_fmr(target)
    assert t.supported
    assert t.predicted_fmr <= target
    assert cal.fmr(t.score).fmr <= target  # the returned edge reads back its own bin
    assert np.count_nonzero(scores >= t.score) / N_SCORES <= target
    # and it is the lowest such bin edge: one bin lower breaks the target
    assert np.count_nonzero(scores >= t.score - cal.bin_width) / N_SCORES > target
    # close to the normal quantile (1e-5 rests on ~20 sampled scores: looser)
    quantile = {1e-2: 2.3263, 1e-3: 3.0902, 1e-4: 3.7190, 1e-5: 4.2649}[target] * SIGMA
    assert t.score == pytest.approx(quantile, abs=0.01 if target >= 1e-4 else 0.02)


def test_every_bin_edge_maps_to_its_own_bin(cal):
    for index in range(0, len(cal.counts), 7):
        edge = round(-1.0 + index * cal.bin_width, 6)
        assert cal._bin(edge) == index


def test_per_comparison_fmr_and_fpir():
    assert per_comparison_fmr(0.01, 1) == pytest.approx(0.01, rel=1e-12)
    needed = per_comparison_fmr(0.01, 10_000)
    assert needed == pytest.approx(0.01 / 10_000, rel=0.01)
    assert fpir_at(needed, 10_000) == pytest.approx(0.01, rel=1e-9)
    with pytest.raises(FaceledgerError):
        per_comparison_fmr(0.0, 10)
    with pytest.raises(FaceledgerError):
        per_comparison_fmr(1.0, 10)


def test_threshold_for_fpir_rises_with_gallery_size(cal):
    thresholds = [cal.threshold_for_fpir(0.1, n) for n in (100, 10_000, 1_000_000)]
    scores = [t.score for t in thresholds]
    assert scores[0] < scores[1] <= scores[2]
    assert [t.supported for t in thresholds] == [True, True, False]  # 1e-7 per comparison: below 3/n
    for t, n in zip(thresholds, (100, 10_000, 1_000_000)):
        assert t.target == 0.1
        assert t.per_comparison_fmr == pytest.approx(per_comparison_fmr(0.1, n))
    assert thresholds[0].predicted_fmr <= thresholds[0].per_comparison_fmr


def test_the_sample_floor(cal):
    floor = 3.0 / N_SCORES
    assert cal.floor == pytest.approx(floor)
    low = cal.threshold_for_fmr(floor / 10)
    assert not low.supported
    assert low.predicted_fmr >= floor
    assert cal.threshold_for_fmr(floor * 2).supported
    for score in np.linspace(0.3, 1.0, 57):
        assert cal.fmr(float(score)).fmr >= floor
        assert cal.fmr(float(score)).upper >= floor
    assert cal.fmr(0.99).fmr == pytest.approx(floor)
    assert cal.fmr(0.99).at_sample_floor


def test_json_round_trip_preserves_fmr(cal, tmp_path):
    path = tmp_path / "calibration-test.json"
    cal.save(path)
    again = Calibration.load(path)
    assert again.calibration_id == cal.calibration_id
    assert again.model_id == cal.model_id
    assert again.description == cal.description
    assert again.total == cal.total
    assert again.max_impostor_score == pytest.approx(cal.max_impostor_score)
    for score in (-0.5, 0.0, 0.123, 0.25, 0.3, 0.41, 0.9):
        assert again.fmr(score) == cal.fmr(score)
    assert again.threshold_for_fmr(1e-4) == cal.threshold_for_fmr(1e-4)


def test_histograms_of_blocks_add_up(scores, cal):
    blocks = sum(score_histogram(block) for block in np.array_split(scores, 7))
    assert np.array_equal(blocks, cal.counts)
    built = Calibration(calibration_id="x", model_id="m", bin_width=cal.bin_width, counts=blocks)
    assert built.fmr(0.3) == cal.fmr(0.3)


def test_a_bad_histogram_is_refused():
    with pytest.raises(FaceledgerError):
        Calibration(calibration_id="x", model_id="m", bin_width=0.0005, counts=np.zeros(4000))
    with pytest.raises(FaceledgerError):
        Calibration(calibration_id="x", model_id="m", bin_width=0.0005, counts=np.ones(10))


@pytest.mark.parametrize("model_id", ["sface-2021dec", "sface-2021dec+flip"])
def test_packaged_calibration_loads(model_id):
    packaged = packaged_calibration(model_id)
    assert packaged.model_id == model_id
    assert packaged.total > 1_000_000
    assert "LFW" in packaged.description
    t = packaged.threshold_for_fmr(1e-4)
    assert t.supported and 0.3 < t.score < 0.6


def test_unknown_packaged_calibration_is_an_error():
    with pytest.raises(FaceledgerError, match="nope"):
        packaged_calibration("nope")
