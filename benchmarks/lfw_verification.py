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
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lfw_common as common

from faceledger.evaluate.metrics import auc, eer, tar_at_far, ten_fold

CONFIGS = [
    # (label, detector score threshold, flip averaging)
    ("default (det 0.7)", 0.7, False),
    ("flip-averaged (det 0.7)", 0.7, True),
    ("det 0.9", 0.9, False),
]
FIXED_THRESHOLD = 0.363  # OpenCV's published SFace cosine threshold, for comparison
FARS = (1e-2, 1e-3)


# The pure metric functions live in the package (faceledger.evaluate.metrics).


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
