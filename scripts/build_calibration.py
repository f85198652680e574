"""Build faceledger's packaged impostor-score calibrations from LFW, and check one on held-out people.

Calibration data: the first image (Name_0001.jpg) of each of LFW's 5,749 identities, embedded with
the default pipeline (YuNet score threshold 0.7, central face); impostor scores = cosine of every
cross-identity pair (one image per person, so every pair is an impostor pair: ~16.5 M pairs).
Scores are counted block by block into the calibration histogram (never all held in memory).

Label noise removed (v2): LFW files some photographs under two names and some people under two
spellings; those "impostor" pairs are not impostors and they own the extreme tail. Cross-identity
pairs are removed from the histogram when (a) they score >= NEAR_DUPLICATE (the same photograph),
(b) the two names are one person's name reordered or re-spelt (same name tokens, or a string
similarity >= NAME_SIMILARITY) and the pair scores >= ALIAS_MIN_SCORE, (c) they are in KNOWN_ALIASES
(one person under two public names), or (d) they are in CHECKED_BY_EYE (the pairs above 0.7 left after
(a)-(c), looked at side by side: the same person under two names). Twins and siblings are real
impostors and stay (Tia/Tamara Mowry, Ashley/Mary-Kate Olsen, Carolina/Isabela Moraes, ...), and so
does every pair that could not be decided by eye. Every removed
pair is written with its reason to calibration-<model>.removed.csv beside the JSON.

Writes src/faceledger/data/calibration-sface-2021dec.json (+ .removed.csv); with --flip also the
+flip model (needs the flip-averaged embeddings, which take a second embedding run).

Held-out check: a calibration fitted on the people of View 1 pairsDevTrain.txt (one image each,
all cross pairs) predicts the FMR at its thresholds for FMR 1e-2, 1e-3, 1e-4; the observed impostor
rate is counted on disjoint people: (a) the View 2 (pairs.txt) people not in the training set and
(b) the people of pairsDevTest.txt. Writes benchmarks/results/calibration_check.json.

Usage: .venv/bin/python scripts/build_calibration.py [--lfw ../shared/data/lfw]
(uses the embeddings cached by faceledger.evaluate via benchmarks/lfw_common.py; computes them when missing).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import lfw_common as common

from faceledger.calibration import Calibration, score_histogram, wilson_interval

DATA_DIR = REPO_ROOT / "src" / "faceledger" / "data"
BIN_WIDTH = 0.0005
REPORT_FMRS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
CHECK_FMRS = (1e-2, 1e-3, 1e-4)
VERSION = "v2"
NEAR_DUPLICATE = 0.9  # cross-identity pairs at or above: the same photograph under two names
ALIAS_MIN_SCORE = 0.5  # name-based removals only for pairs that also score like one person
NAME_SIMILARITY = 0.84  # difflib ratio of the lower-cased names: a re-spelling (Noer_Moeis ~ Noer_Muis)
RESPELT_MIN_SCORE = 0.6  # re-spellings also need this score (similar names of two sisters stay)
COLLECT_ABOVE = 0.5  # pairs at or above are listed for the cleaning rules
# One person under two public names (name change, nickname, married name, title): checked by hand.
KNOWN_ALIASES = {
    frozenset({"Doc_Rivers", "Glenn_Rivers"}): "Glenn 'Doc' Rivers",
    frozenset({"Bison_Dele", "Brian_Williams"}): "Bison Dele was born Brian Williams",
    frozenset({"Felipe_De_Borbon", "Prince_Felipe"}): "Prince Felipe de Borbon",
    frozenset({"Talisa_Bratt", "Talisa_Soto"}): "Talisa Soto, married name Bratt",
    frozenset({"Bill_Pryor", "William_Pryor_Jr"}): "William 'Bill' Pryor Jr.",
    frozenset({"Joseph_Blatter", "Sepp_Blatter"}): "Joseph 'Sepp' Blatter",
}
# Looked at side by side (first images): one person filed under two names. Pairs that could be two
# people (look-alikes, siblings) were left in.
CHECKED_BY_EYE = {
    frozenset({"Shinya_Taniguchi", "Takahiro_Mori"}),
    frozenset({"Carlos_Ruckauf", "Eduardo_Duhalde"}),
    frozenset({"Jason_Kapono", "Ray_Young"}),
    frozenset({"Harold_Scott", "Jeff_Roehm"}),
}


def first_images(e: common.LfwEmbeddings, identities: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(paths, embeddings) of Name_0001.jpg of each identity (all, or the given ones) with a face found."""
    names = sorted(set(e.identities)) if identities is None else sorted(identities)
    paths, rows = [], []
    for name in names:
        row = e.index.get(common.image_path(name, 1))
        if row is None or e.failed[row]:
            continue
        paths.append(e.paths[row])
        rows.append(row)
    return paths, e.embeddings[np.array(rows, dtype=int)].astype(np.float32)


def cross_pair_histogram(x: np.ndarray, *, bin_width: float = BIN_WIDTH, block: int = 512,
                         top: int = 10, collect: list | None = None,
                         collect_above: float = COLLECT_ABOVE) -> tuple[np.ndarray, int, list[tuple[float, int, int]]]:
    """Histogram of x[i] . x[j] over all i < j, computed in row blocks; also the top scores.

    With `collect` (a list), every pair scoring at least collect_above is appended as (score, i, j)."""
    n = len(x)
    counts = np.zeros(round(2.0 / bin_width), dtype=np.int64)
    total = 0
    best: list[tuple[float, int, int]] = []
    for start in range(0, n - 1, block):
        stop = min(start + block, n)
        s = x[start:stop] @ x[start:].T  # (b, n - start)
        i, j = np.triu_indices(stop - start, k=1, m=n - start)
        values = s[i, j]
        counts += score_histogram(values, bin_width)
        total += len(values)
        if collect is not None:
            hit = np.nonzero(values >= collect_above)[0]
            collect.extend((float(values[t]), start + int(i[t]), start + int(j[t])) for t in hit)
        k = min(top, len(values))
        if k:
            idx = np.argpartition(values, -k)[-k:]
            best.extend((float(values[t]), start + int(i[t]), start + int(j[t])) for t in idx)
            best = sorted(best, reverse=True)[:top]
    assert total == n * (n - 1) // 2 == counts.sum()
    return counts, total, best


def threshold_rows(cal: Calibration, fmrs=REPORT_FMRS) -> list[dict]:
    rows = []
    for target in fmrs:
        t = cal.threshold_for_fmr(target)
        est = cal.fmr(t.score)
        rows.append({
            "target_fmr": target, "threshold": t.score, "supported": t.supported,
            "impostors_at_or_above": est.impostors_at_or_above, "predicted_fmr": est.fmr,
            "wilson95": [est.lower, est.upper],
        })
    return rows


def name_tokens(name: str) -> frozenset[str]:
    return frozenset(t for t in re.split(r"[_\-\s]+", name.lower()) if t)


def removal_reason(score: float, name_a: str, name_b: str) -> str | None:
    """Why a cross-identity pair is label noise rather than an impostor pair, or None to keep it."""
    if score >= NEAR_DUPLICATE:
        return f"near-duplicate photograph (score >= {NEAR_DUPLICATE:g})"
    alias = KNOWN_ALIASES.get(frozenset({name_a, name_b}))
    if alias and score >= ALIAS_MIN_SCORE:
        return f"known alias: {alias}"
    if frozenset({name_a, name_b}) in CHECKED_BY_EYE:
        return "checked by eye: one person under two names"
    if score >= ALIAS_MIN_SCORE and name_tokens(name_a) == name_tokens(name_b):
        return "same name, tokens reordered"
    ratio = difflib.SequenceMatcher(None, name_a.lower(), name_b.lower()).ratio()
    if score >= RESPELT_MIN_SCORE and ratio >= NAME_SIMILARITY:
        return f"name re-spelt (similarity {ratio:.2f})"
    return None


def clean_pairs(counts: np.ndarray, paths: list[str], high: list[tuple[float, int, int]],
                bin_width: float = BIN_WIDTH) -> tuple[np.ndarray, list[dict]]:
    """The histogram less the label-noise pairs, and the removed pairs with their reasons."""
    counts = counts.copy()
    removed = []
    for score, i, j in sorted(high, reverse=True):
        a, b = paths[i].split("/", 1)[0], paths[j].split("/", 1)[0]
        reason = removal_reason(score, a, b)
        if reason is None:
            continue
        counts -= score_histogram(np.array([score]), bin_width)
        removed.append({"score": round(score, 4), "image_a": paths[i], "image_b": paths[j], "reason": reason})
    return counts, removed


def build(e: common.LfwEmbeddings, *, clean: bool = True) -> tuple[Calibration, dict]:
    paths, x = first_images(e)
    high: list[tuple[float, int, int]] = []
    raw, total, best = cross_pair_histogram(x, collect=high)
    counts, removed = clean_pairs(raw, paths, high) if clean else (raw, [])
    kept = total - len(removed)
    removed_keys = {(r["image_a"], r["image_b"]) for r in removed}
    best_kept = [(s, i, j) for s, i, j in sorted(high, reverse=True) if (paths[i], paths[j]) not in removed_keys]
    identities = len(set(e.identities))
    description = (
        f"LFW (lfw-deepfunneled), the first image (Name_0001.jpg) of each of {len(paths):,} of {identities:,} "
        f"people, faceledger pipeline (YuNet score threshold {e.det_threshold:g}, central face, "
        f"{e.model_id}); impostor scores = cosine of {kept:,} of the {total:,} cross-identity pairs "
        f"(exhaustive; pairs share images, so they are not independent). {len(removed)} label-noise pairs "
        "removed (the same photograph under two names, one person under two spellings or names; listed "
        "with reasons in the .removed.csv beside this file). Twins and siblings stay: they are impostors. "
        "Built by scripts/build_calibration.py."
    )
    provenance = {
        "builder": "scripts/build_calibration.py", "version": VERSION, "dataset": "LFW lfw-deepfunneled",
        "images": "Name_0001.jpg of each identity", "detector_score_threshold": e.det_threshold,
        "pairs_total": total, "pairs_removed": len(removed),
        "rules": {"near_duplicate_score": NEAR_DUPLICATE, "alias_min_score": ALIAS_MIN_SCORE,
                  "name_similarity": NAME_SIMILARITY, "respelt_min_score": RESPELT_MIN_SCORE, "known_aliases": sorted("~".join(sorted(k)) for k in KNOWN_ALIASES),
                  "checked_by_eye": sorted("~".join(sorted(k)) for k in CHECKED_BY_EYE)},
        "removed_file": f"calibration-{e.model_id}.removed.csv",
    }
    cal = Calibration(
        calibration_id=f"lfw-1perid-{e.model_id}-{VERSION}", model_id=e.model_id, bin_width=BIN_WIDTH,
        counts=counts, description=description,
        max_impostor_score=best_kept[0][0] if best_kept else (best[0][0] if best else None),
        provenance=provenance if clean else None,
    )
    info = {
        "model_id": e.model_id, "calibration_id": cal.calibration_id, "people": len(paths),
        "people_skipped_no_face": identities - len(paths), "impostor_pairs": cal.total,
        "removed_pairs": removed,
        "floor_fmr": cal.floor, "thresholds": threshold_rows(cal),
        "top_impostor_pairs": [
            {"score": round(s, 4), "a": paths[i], "b": paths[j]} for s, i, j in best_kept[:10]
        ],
    }
    return cal, info


def write_removed(path: Path, removed: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["score", "image_a", "image_b", "reason"])
        writer.writeheader()
        writer.writerows(removed)


def pair_file_identities(path: Path) -> set[str]:
    folds, _, _ = common.parse_pairs(path)
    return {p.split("/", 1)[0] for fold in folds for pair in fold for p in (pair.a, pair.b)}


def held_out_check(e: common.LfwEmbeddings, lfw: Path) -> dict:
    train_ids = pair_file_identities(lfw / "pairsDevTrain.txt")
    view2_ids = pair_file_identities(lfw / "pairs.txt")
    devtest_ids = pair_file_identities(lfw / "pairsDevTest.txt")
    _, x_train = first_images(e, sorted(train_ids))
    counts, total, _ = cross_pair_histogram(x_train)
    cal = Calibration(calibration_id=f"lfw-devtrain-1perid-{e.model_id}", model_id=e.model_id,
                      bin_width=BIN_WIDTH, counts=counts)
    result = {
        "model_id": e.model_id,
        "train": {"set": "people of View 1 pairsDevTrain.txt, Name_0001.jpg each", "people": len(x_train),
                  "impostor_pairs": total},
        "tests": {},
    }
    tests = {
        "view2_people_not_in_train": sorted(view2_ids - train_ids),
        "devtest_people": sorted(devtest_ids - train_ids),
    }
    for name, ids in tests.items():
        _, x_test = first_images(e, ids)
        test_counts, test_total, _ = cross_pair_histogram(x_test)
        test_cal = Calibration(calibration_id=name, model_id=e.model_id, bin_width=BIN_WIDTH, counts=test_counts)
        rows = []
        for target in CHECK_FMRS:
            t = cal.threshold_for_fmr(target)
            predicted = cal.fmr(t.score)
            observed = test_cal.fmr(t.score)  # the bins at or above the threshold edge: exact counts
            k = observed.impostors_at_or_above
            lo, hi = wilson_interval(k, test_total)
            rows.append({
                "target_fmr": target, "threshold": t.score,
                "predicted_fmr": predicted.fmr, "predicted_count": predicted.impostors_at_or_above,
                "predicted_wilson95": [predicted.lower, predicted.upper],
                "observed_fmr": k / test_total, "observed_count": k, "observed_wilson95": [lo, hi],
                "observed_over_predicted": (k / test_total) / predicted.fmr,
            })
        result["tests"][name] = {"people": len(x_test), "overlap_with_train": len(set(ids) & train_ids),
                                 "impostor_pairs": test_total, "rows": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the packaged LFW impostor-score calibrations.")
    common.add_lfw_argument(parser)
    parser.add_argument("--det", type=float, default=0.7, help="YuNet score threshold of the pipeline")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--check-out", type=Path, default=common.RESULTS_DIR / "calibration_check.json")
    parser.add_argument("--flip", action="store_true", help="also rebuild the +flip model's calibration")
    args = parser.parse_args()

    infos = []
    checks = []
    for flip in (False, True) if args.flip else (False,):
        e = common.load_embeddings(args.lfw, det_threshold=args.det, flip_average=flip, workers=args.workers)
        cal, info = build(e)
        path = args.out_dir / f"calibration-{e.model_id}.json"
        cal.save(path)
        write_removed(args.out_dir / f"calibration-{e.model_id}.removed.csv", info["removed_pairs"])
        info["file"] = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
        info["file_bytes"] = path.stat().st_size
        infos.append(info)
        checks.append(held_out_check(e, args.lfw))

    print("| model id | people | impostor pairs | " + " | ".join(f"FMR {f:g}" for f in REPORT_FMRS)
          + " | most similar impostor |")
    print("|---|---|---|" + "---|" * len(REPORT_FMRS) + "---|")
    for info in infos:
        cells = [f"{r['threshold']:.4f} ({r['impostors_at_or_above']:,})" for r in info["thresholds"]]
        print(f"| {info['model_id']} | {info['people']:,} | {info['impostor_pairs']:,} | " + " | ".join(cells)
              + f" | {info['top_impostor_pairs'][0]['score']:.3f} |")
    print("\nCells: threshold (impostor pairs at or above it). Top impostor pairs (default model):")
    for p in infos[0]["top_impostor_pairs"][:6]:
        print(f"  {p['score']:.3f}  {p['a']} ~ {p['b']}")

    print("\nHeld-out check: thresholds from a calibration fitted on pairsDevTrain people")
    print("| model id | test people | test pairs | target FMR | threshold | predicted FMR (count / train pairs) "
          "| observed FMR (count / test pairs) | observed 95% CI | observed / predicted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for check in checks:
        for name, test in check["tests"].items():
            for r in test["rows"]:
                print(f"| {check['model_id']} | {name} ({test['people']:,}) | {test['impostor_pairs']:,} "
                      f"| {r['target_fmr']:g} | {r['threshold']:.4f} "
                      f"| {r['predicted_fmr']:.2e} ({r['predicted_count']:,} / {check['train']['impostor_pairs']:,}) "
                      f"| {r['observed_fmr']:.2e} ({r['observed_count']:,}) "
                      f"| {r['observed_wilson95'][0]:.1e} – {r['observed_wilson95'][1]:.1e} "
                      f"| {r['observed_over_predicted']:.2f} |")
    args.check_out.parent.mkdir(parents=True, exist_ok=True)
    args.check_out.write_text(json.dumps({"calibrations": infos, "held_out_checks": checks}, indent=2) + "\n")
    print(f"\nwrote {', '.join(i['file'] for i in infos)} and {args.check_out}")


if __name__ == "__main__":
    main()
