"""LFW View 2 verification (the standard 10-fold protocol) for faceledger's pipeline configs.

Protocol (same as ../shared/reference/lfw-baseline.md):
- pairs.txt: 10 folds of 300 genuine + 300 impostor pairs; cosine score, accept when score >= t.
- For each fold, t is the accuracy-maximising threshold on the other 9 folds, using only pairs where
  both faces were found; it is applied to the held-out fold where a pair with a failure-to-enrol
  counts as wrong. Mean +- std (np.std, ddof=0) over the 10 folds.
- AUC, EER and TAR@FAR over all 6,000 pairs, failed pairs scored as "no match" (below every real
  score: they count against TAR and never as a false accept); also over the both-found subset.
  TAR@FAR uses the empirical impostor quantile: at most floor(FAR x impostors) impostors above t.

Usage: .venv/bin/python benchmarks/lfw_verification.py [--lfw ../shared/data/lfw]
Prints a markdown table and writes benchmarks/results/lfw_verification.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lfw_common as common

CONFIGS = [
    # (label, detector score threshold, flip averaging)
    ("default (det 0.7)", 0.7, False),
    ("flip-averaged (det 0.7)", 0.7, True),
    ("det 0.9", 0.9, False),
]
FIXED_THRESHOLD = 0.363  # OpenCV's published SFace cosine threshold, for comparison
FARS = (1e-2, 1e-3)


# --- pure metric functions (numpy only) -------------------------------------------------------


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold (midpoint between consecutive distinct scores) maximising accuracy of score >= t.

    Ties: the middle of the first widest run of best candidates. Returns (threshold, accuracy).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.unique(s)
    candidates = np.concatenate(([distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6]))
    # accuracy(t) = (genuine with s >= t + impostors with s < t) / n
    below = np.searchsorted(s, candidates, side="left")  # pairs with s < t
    genuine_below = np.concatenate(([0], np.cumsum(y)))[below]
    impostor_below = below - genuine_below
    correct = (y.sum() - genuine_below) + impostor_below
    best = correct.max()
    hits = np.nonzero(correct == best)[0]
    # first run of consecutive best candidates, take its middle
    run_end = hits[0]
    while run_end + 1 < len(correct) and correct[run_end + 1] == best:
        run_end += 1
    index = (hits[0] + run_end) // 2
    return float(candidates[index]), float(best / len(s))


def ten_fold(scores: np.ndarray, labels: np.ndarray, failed: np.ndarray, fold_of: np.ndarray) -> dict:
    """The View 2 protocol. scores may be NaN where failed."""
    accuracies, accuracies_found, thresholds = [], [], []
    for k in np.unique(fold_of):
        train = (fold_of != k) & ~failed
        test = fold_of == k
        t, _ = best_threshold(scores[train], labels[train])
        predicted = np.where(failed[test], ~labels[test], scores[test] >= t)  # failure = wrong answer
        accuracies.append(float(np.mean(predicted == labels[test])))
        found = test & ~failed
        accuracies_found.append(float(np.mean((scores[found] >= t) == labels[found])))
        thresholds.append(t)
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "accuracy_both_found_mean": float(np.mean(accuracies_found)),
        "accuracy_both_found_std": float(np.std(accuracies_found)),
        "fold_accuracies": accuracies,
        "fold_thresholds": thresholds,
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); -inf allowed."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    # average ranks over runs of ties
    boundaries = np.concatenate(([0], np.nonzero(s[1:] != s[:-1])[0] + 1, [len(s)]))
    for start, end in itertools.pairwise(boundaries):
        ranks[start:end] = (start + end + 1) / 2.0  # 1-based average rank
    r = np.empty(len(s))
    r[order] = ranks
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FAR, FRR) for accept-if-score>=t at every distinct score (descending)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.unique(scores[np.isfinite(scores)])[::-1]
    gen = np.sort(scores[labels])
    imp = np.sort(scores[~labels])
    far = (len(imp) - np.searchsorted(imp, thresholds, side="left")) / len(imp)
    tar = (len(gen) - np.searchsorted(gen, thresholds, side="left")) / len(gen)
    return thresholds, far, 1.0 - tar


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate: mean of FAR and FRR at the threshold where they are closest."""
    _, far, frr = roc(scores, labels)
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """TAR with at most floor(far x impostors) impostors strictly above the threshold.

    Returns (TAR, threshold): accept when score > threshold = the (k+1)-th highest impostor score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    imp = np.sort(scores[~labels])[::-1]
    k = int(np.floor(far * len(imp)))
    threshold = imp[k] if k < len(imp) else -np.inf
    return float(np.mean(scores[labels] > threshold)), float(threshold)


# --- the benchmark ----------------------------------------------------------------------------


def evaluate(e: common.LfwEmbeddings, folds: list[list[common.Pair]]) -> dict:
    pairs = [p for fold in folds for p in fold]
    fold_of = np.repeat(np.arange(len(folds)), [len(f) for f in folds])
    scores, labels, failed = common.pair_scores(e, pairs)
    result = {"model_id": e.model_id, "detector_score_threshold": e.det_threshold}
    result.update(ten_fold(scores, labels, failed, fold_of))
    scored = np.where(failed, -np.inf, scores)
    found = ~failed
    result["all_pairs"] = {
        "n": len(scores),
        "auc": auc(scored, labels),
        "eer": eer(scored, labels),
        **{f"tar_at_far_{far:g}": tar_at_far(scored, labels, far)[0] for far in FARS},
        f"fixed_threshold_accuracy_{FIXED_THRESHOLD}": float(
            np.mean(np.where(failed, ~labels, scores >= FIXED_THRESHOLD) == labels)),
    }
    result["both_found"] = {
        "n": int(found.sum()),
        "auc": auc(scores[found], labels[found]),
        "eer": eer(scores[found], labels[found]),
        **{f"tar_at_far_{far:g}": tar_at_far(scores[found], labels[found], far)[0] for far in FARS},
    }
    images_in_pairs = {p.a for p in pairs} | {p.b for p in pairs}
    result["enrolment"] = {
        "images": len(e.paths),
        "failed_to_enrol": int(e.failed.sum()),
        "fte_rate": float(e.failed.mean()),
        "failed_images": [e.paths[i] for i in np.nonzero(e.failed)[0]],
        "multi_face_images": int((e.n_faces > 1).sum()),
        "chosen_face_fails_quality_rules": int((~e.usable & ~e.failed).sum()),
        "view2_images": len(images_in_pairs),
        "view2_pairs_with_failure": int(failed.sum()),
    }
    ok = ~e.failed
    result["timing_ms"] = {
        "note": "per image, measured during the embedding run (2 worker processes, cv2 1 thread each, decode excluded)",
        "detect_median": float(np.median(e.detect_ms)),
        "embed_per_face_median": float(np.median(e.embed_ms[ok])),
        "detect_plus_embed_median": float(np.median(e.detect_ms[ok] + e.embed_ms[ok])),
        "detect_plus_embed_mean": float(np.mean(e.detect_ms[ok] + e.embed_ms[ok])),
    }
    return result


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def table(results: list[tuple[str, dict]]) -> str:
    rows = [
        (
            "| config | model id | FTE (images) | pairs with a failure | acc, all pairs (fail = wrong) "
            "| acc, both found | AUC | EER | TAR@FAR 1e-2 | TAR@FAR 1e-3 | acc @ 0.363 | per-fold thresholds |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results:
        a = r["all_pairs"]
        t = r["fold_thresholds"]
        rows.append(
            f"| {label} | {r['model_id']} | {r['enrolment']['failed_to_enrol']} "
            f"| {r['enrolment']['view2_pairs_with_failure']} "
            f"| {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % "
            f"| {100 * r['accuracy_both_found_mean']:.2f} ± {100 * r['accuracy_both_found_std']:.2f} % "
            f"| {a['auc']:.4f} | {pct(a['eer'])} | {pct(a['tar_at_far_0.01'])} | {pct(a['tar_at_far_0.001'])} "
            f"| {pct(a[f'fixed_threshold_accuracy_{FIXED_THRESHOLD}'])} | {min(t):.3f} – {max(t):.3f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_lfw_argument(parser)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "lfw_verification.json")
    args = parser.parse_args()
    folds, n_folds, per = common.parse_pairs(args.lfw / "pairs.txt")
    if (n_folds, per) != (10, 300):
        raise SystemExit(f"pairs.txt: expected 10 folds of 300+300, got {n_folds} x {per}")
    results = []
    for label, det, flip in CONFIGS:
        e = common.load_embeddings(args.lfw, det_threshold=det, flip_average=flip, workers=args.workers)
        results.append((label, evaluate(e, folds)))
    print(table(results))
    print()
    for label, r in results:
        b = r["both_found"]
        print(f"- {label}: both-found n={b['n']}: AUC {b['auc']:.4f}, EER {pct(b['eer'])}, "
              f"TAR@1e-3 {pct(b['tar_at_far_0.001'])}; per-fold thresholds "
              + ", ".join(f"{t:.3f}" for t in r["fold_thresholds"])
              + f"; timing median detect {r['timing_ms']['detect_median']:.1f} ms, "
              f"embed {r['timing_ms']['embed_per_face_median']:.1f} ms")
    payload = {
        "benchmark": "LFW View 2 verification, 10-fold (pairs.txt)",
        "data": str(args.lfw.name) + "/lfw-deepfunneled + pairs.txt",
        "protocol": (
            "per fold: accuracy-maximising threshold on the other 9 folds (both-found pairs), applied to the "
            "held-out fold; failed pairs count as wrong; mean and std (ddof=0) over 10 folds. AUC/EER/TAR@FAR "
            "over all 6,000 pairs with failed pairs scored as no-match; cosine similarity, accept >= t."
        ),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version()},
        "configs": {label: r for label, r in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
