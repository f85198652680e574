"""Pure metric functions over score arrays (numpy only). Accept a comparison when score >= threshold
unless a function says otherwise.

Verification (1:1): `best_threshold`, `ten_fold` (the LFW View 2 protocol), `auc`, `roc`, `eer`,
`tar_at_far`. Identification (1:N, open set): `rank_hits`, `open_set_curve`, `fnir_at_fpir`,
`rates_at_threshold`. Groups: `group_rates`, `flag_groups`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..calibration import wilson_interval as _wilson


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials, exactly 0 / 1 at the ends."""
    lo, hi = _wilson(k, n, z)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)

__all__ = [
    "auc", "best_threshold", "eer", "flag_groups", "fnir_at_fpir", "group_rates", "open_set_curve",
    "rank_hits", "roc", "tar_at_far", "ten_fold", "wilson_interval",
]


# --- verification ------------------------------------------------------------------------------


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold (midpoint between consecutive distinct scores) maximising accuracy of score >= t.

    Ties: the middle of the first run of best candidates. Returns (threshold, accuracy).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if len(scores) == 0:
        raise ValueError("best_threshold needs at least one score")
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.unique(s)
    candidates = np.concatenate(([distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6]))
    below = np.searchsorted(s, candidates, side="left")  # pairs with s < t
    genuine_below = np.concatenate(([0], np.cumsum(y)))[below]
    impostor_below = below - genuine_below
    correct = (y.sum() - genuine_below) + impostor_below
    best = correct.max()
    hits = np.nonzero(correct == best)[0]
    run_end = hits[0]
    while run_end + 1 < len(correct) and correct[run_end + 1] == best:
        run_end += 1
    index = (hits[0] + run_end) // 2
    return float(candidates[index]), float(best / len(s))


def ten_fold(scores: np.ndarray, labels: np.ndarray, failed: np.ndarray, fold_of: np.ndarray) -> dict:
    """The LFW View 2 protocol over any number of folds (10 for LFW).

    For each fold the accuracy-maximising threshold is found on the other folds (pairs where both
    faces were found) and applied to the held-out fold, where a pair with a failure-to-enrol counts
    as wrong. Mean and std (ddof=0) over folds; also on the both-found subset. scores may be NaN
    where failed.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    failed = np.asarray(failed, dtype=bool)
    fold_of = np.asarray(fold_of)
    accuracies, accuracies_found, thresholds = [], [], []
    for k in np.unique(fold_of):
        train = (fold_of != k) & ~failed
        test = fold_of == k
        if not train.any():
            raise ValueError("ten_fold: a training split has no pair with both faces found")
        t, _ = best_threshold(scores[train], labels[train])
        predicted = np.where(failed[test], ~labels[test], scores[test] >= t)  # failure = wrong answer
        accuracies.append(float(np.mean(predicted == labels[test])))
        found = test & ~failed
        accuracies_found.append(float(np.mean((scores[found] >= t) == labels[found])) if found.any() else math.nan)
        thresholds.append(t)
    return {
        "folds": len(accuracies),
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "accuracy_both_found_mean": float(np.nanmean(accuracies_found)),
        "accuracy_both_found_std": float(np.nanstd(accuracies_found)),
        "fold_accuracies": accuracies,
        "fold_thresholds": thresholds,
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); -inf scores allowed."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auc needs both genuine and impostor scores")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    boundaries = np.concatenate(([0], np.nonzero(s[1:] != s[:-1])[0] + 1, [len(s)]))
    for start, end in itertools.pairwise(boundaries):
        ranks[start:end] = (start + end + 1) / 2.0  # 1-based average rank of a run of ties
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FAR, FRR) for accept-if-score>=t at every distinct finite score (descending)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.unique(scores[np.isfinite(scores)])[::-1]
    gen = np.sort(scores[labels])
    imp = np.sort(scores[~labels])
    far = (len(imp) - np.searchsorted(imp, thresholds, side="left")) / max(len(imp), 1)
    tar = (len(gen) - np.searchsorted(gen, thresholds, side="left")) / max(len(gen), 1)
    return thresholds, far, 1.0 - tar


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate: mean of FAR and FRR at the threshold where they are closest."""
    _, far, frr = roc(scores, labels)
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """TAR with at most floor(far x impostors) impostors strictly above the threshold.

    Returns (TAR, threshold): accept when score > threshold = the (k+1)-th highest impostor score.
    With fewer than 1/far impostors, k = 0: the threshold is the highest impostor score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    imp = np.sort(scores[~labels])[::-1]
    k = int(np.floor(far * len(imp) + 1e-9))
    threshold = imp[k] if k < len(imp) else -np.inf
    return float(np.mean(scores[labels] > threshold)), float(threshold)


# --- identification (open set) -----------------------------------------------------------------


def rank_hits(ranked_subjects: list[list[str]], truth: list[str | None]) -> np.ndarray:
    """1-based rank of the true subject in each ranked list; 0 when it is absent (or truth is None)."""
    ranks = np.zeros(len(truth), dtype=np.int64)
    for i, (subjects, true) in enumerate(zip(ranked_subjects, truth)):
        if true is not None and true in subjects:
            ranks[i] = subjects.index(true) + 1
    return ranks


def open_set_curve(mated_scores: np.ndarray, nonmated_scores: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FPIR, FNIR) at every distinct finite score, descending; accept when score >= t.

    mated_scores: per mated search, the score of the mate if it is ranked first, else -inf (a miss
    at any threshold; the NIST rank-1 definition). nonmated_scores: per non-mated search, its top
    score (-inf when nothing was returned).
    """
    mated = np.asarray(mated_scores, dtype=np.float64)
    nonmated = np.asarray(nonmated_scores, dtype=np.float64)
    allscores = np.concatenate([mated, nonmated])
    thresholds = np.unique(allscores[np.isfinite(allscores)])[::-1]
    m = np.sort(mated)
    n = np.sort(nonmated)
    fpir = (len(n) - np.searchsorted(n, thresholds, side="left")) / max(len(n), 1)
    tpir = (len(m) - np.searchsorted(m, thresholds, side="left")) / max(len(m), 1)
    return thresholds, fpir, 1.0 - tpir


def fnir_at_fpir(mated_scores: np.ndarray, nonmated_scores: np.ndarray, fpir: float) -> dict:
    """FNIR at the threshold letting at most floor(fpir x non-mated searches) through.

    Accept when score > threshold = the (k+1)-th highest non-mated top score. `resolved` is False
    when the non-mated sample is too small to show that rate (fpir x n < 1).
    """
    mated = np.asarray(mated_scores, dtype=np.float64)
    nonmated = np.sort(np.asarray(nonmated_scores, dtype=np.float64))[::-1]
    n = len(nonmated)
    k = int(np.floor(fpir * n + 1e-9))
    threshold = float(nonmated[k]) if k < n else -math.inf
    return {
        "target_fpir": fpir,
        "threshold": threshold,
        "fnir": float(np.mean(~(mated > threshold))) if len(mated) else math.nan,
        "observed_fpir": float(np.mean(nonmated > threshold)) if n else math.nan,
        "nonmated_searches": n,
        "mated_searches": len(mated),
        "resolved": fpir * n >= 1,
    }


def rates_at_threshold(mated_scores: np.ndarray, nonmated_scores: np.ndarray, threshold: float) -> dict:
    """Observed FNIR and FPIR (accept when score >= threshold) with counts and Wilson 95% intervals."""
    mated = np.asarray(mated_scores, dtype=np.float64)
    nonmated = np.asarray(nonmated_scores, dtype=np.float64)
    misses = int(np.sum(~(mated >= threshold)))
    false_positives = int(np.sum(nonmated >= threshold))
    return {
        "threshold": float(threshold),
        "fnir": misses / len(mated) if len(mated) else math.nan,
        "fnir_count": misses, "mated_searches": len(mated),
        "fnir_wilson95": list(wilson_interval(misses, len(mated))),
        "fpir": false_positives / len(nonmated) if len(nonmated) else math.nan,
        "fpir_count": false_positives, "nonmated_searches": len(nonmated),
        "fpir_wilson95": list(wilson_interval(false_positives, len(nonmated))),
    }


# --- groups ------------------------------------------------------------------------------------


def group_rates(groups: np.ndarray, errors: np.ndarray) -> dict[str, dict]:
    """Error count, trials, rate and Wilson 95% interval for each group label."""
    groups = np.asarray(groups).astype(str)
    errors = np.asarray(errors, dtype=bool)
    out = {}
    for label in sorted(set(groups.tolist())):
        mask = groups == label
        n, k = int(mask.sum()), int(errors[mask].sum())
        lo, hi = wilson_interval(k, n)
        out[label] = {"errors": k, "trials": n, "rate": k / n if n else math.nan, "wilson95": [lo, hi]}
    return out


def flag_groups(rates: dict[str, dict], factor: float) -> dict:
    """Groups whose error rate exceeds `factor` x the best group's.

    The best group is the one with the lowest rate among groups with trials; its rate is floored
    at one error in its sample (1 / trials), so a best group with no errors does not flag every
    group that has a single one. Returns {"reference_group", "reference_rate", "flagged": [...]}.
    """
    measured = {g: r for g, r in rates.items() if r["trials"] > 0}
    if not measured:
        return {"reference_group": None, "reference_rate": math.nan, "flagged": []}
    best = min(measured, key=lambda g: (measured[g]["rate"], -measured[g]["trials"]))
    reference = max(measured[best]["rate"], 1.0 / measured[best]["trials"])
    flagged = [g for g, r in measured.items() if g != best and r["rate"] > factor * reference]
    return {"reference_group": best, "reference_rate": reference, "factor": factor, "flagged": sorted(flagged)}
