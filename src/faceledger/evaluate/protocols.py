"""The two evaluation protocols: 1:1 verification (pairs) and 1:N open-set identification (engine).

Verification with a pairs file follows LFW View 2 exactly. Without one, `generate_pairs` builds a
seeded, documented pair set from a folder-per-identity dataset (protocol "faceledger-pairs-v1").
Identification (protocol "faceledger-open-set-v1", see `identification_splits`) runs through the
engine: a temporary data directory, `Engine.enroll_embeddings` and `Engine.rank`, exactly the store
and FAISS path a real search takes, and the engine's calibration for its operating thresholds.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibration import fpir_at
from ..config import Settings
from ..enrollment import PrecomputedFace
from ..errors import FaceledgerError
from . import metrics
from .datasets import EmbeddingSet, Pair, identity_of

FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (0.1, 0.01, 0.001)
PAIRS_PROTOCOL = "faceledger-pairs-v1"
OPEN_SET_PROTOCOL = "faceledger-open-set-v1"


# --- verification ------------------------------------------------------------------------------


def generate_pairs(identities: dict[str, list[str]], *, folds: int = 10, per_fold: int = 300,
                   seed: int = 0) -> tuple[list[list[Pair]], list[str]]:
    """Seeded genuine/impostor pairs in identity-disjoint folds ("faceledger-pairs-v1").

    1. Identities with >= 2 images (shuffled with the seed), then the others (shuffled), are dealt
       round-robin into the folds, so no identity appears in two folds. Folds are reduced to
       min(folds, identities with >= 2 images, identities // 2) when the dataset is small.
    2. Genuine pairs per fold (at most per_fold): the fold's identities take turns, each drawing a
       random pair of its images not drawn before, until per_fold or none is left.
    3. Impostor pairs: as many as genuine ones, each two random distinct identities of the fold with
       a random image each, no pair twice. If a small fold offers fewer, its genuine pairs are cut to
       the same number (the first drawn are kept), so every fold is balanced.
    Returns (folds of pairs, notes on any reduction).
    """
    rng = np.random.default_rng(seed)
    notes = []
    names = sorted(identities)
    mateable = [names[i] for i in rng.permutation(len(names)) if len(identities[names[i]]) >= 2]
    singles = [n for n in (names[i] for i in rng.permutation(len(names))) if len(identities[n]) < 2]
    usable_folds = min(folds, len(mateable), len(names) // 2)
    if usable_folds < 2:
        raise FaceledgerError(
            f"the dataset has {len(names)} identities, {len(mateable)} with two or more images: too few for "
            "cross-validated verification (need at least 2 identities with 2+ images and 4 identities)")
    if usable_folds < folds:
        notes.append(f"{folds} folds asked for, {usable_folds} used ({len(mateable)} identities with 2+ images, "
                     f"{len(names)} identities in all)")
    members: list[list[str]] = [[] for _ in range(usable_folds)]
    for k, name in enumerate(mateable + singles):
        members[k % usable_folds].append(name)
    out = []
    for fold_ids in members:
        genuine: list[Pair] = []
        available = {n: [(a, b) for a in range(len(identities[n])) for b in range(a + 1, len(identities[n]))]
                     for n in fold_ids if len(identities[n]) >= 2}
        for n in available:
            rng.shuffle(available[n])
        turn = [n for n in fold_ids if n in available]
        while len(genuine) < per_fold and turn:
            for n in list(turn):
                if len(genuine) >= per_fold:
                    break
                if not available[n]:
                    turn.remove(n)
                    continue
                a, b = available[n].pop()
                genuine.append(Pair(identities[n][a], identities[n][b], True))
        impostor: list[Pair] = []
        seen = set()
        attempts = 0
        while len(impostor) < len(genuine) and attempts < 20 * len(genuine) + 100 and len(fold_ids) >= 2:
            attempts += 1
            i, j = rng.choice(len(fold_ids), 2, replace=False)
            a = identities[fold_ids[i]][rng.integers(len(identities[fold_ids[i]]))]
            b = identities[fold_ids[j]][rng.integers(len(identities[fold_ids[j]]))]
            key = tuple(sorted((a, b)))
            if key not in seen:
                seen.add(key)
                impostor.append(Pair(a, b, False))
        keep = min(len(genuine), len(impostor))  # balanced: a small fold may offer fewer impostor pairs
        out.append(genuine[:keep] + impostor[:keep])
    if any(not fold for fold in out):
        raise FaceledgerError("a fold has no genuine or no impostor pair; use fewer --folds")
    return out, notes


def pair_scores(e: EmbeddingSet, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cosine scores, NaN where failed; labels; failed mask) for a list of pairs."""
    ia = e.rows([p.a for p in pairs])
    ib = e.rows([p.b for p in pairs])
    scores = np.einsum("ij,ij->i", e.embeddings[ia].astype(np.float64), e.embeddings[ib].astype(np.float64))
    failed = e.failed[ia] | e.failed[ib]
    return scores, np.array([p.genuine for p in pairs], dtype=bool), failed


def evaluate_verification(e: EmbeddingSet, folds: list[list[Pair]], *, operating_threshold: float | None = None
                          ) -> tuple[dict, dict]:
    """(metrics, curves) of the k-fold protocol, AUC, EER, TAR@FAR, and rates at an operating threshold.

    Failed pairs (a face missing) count as wrong in the fold accuracy and score -inf ("no match")
    in AUC/EER/TAR@FAR: they count against TAR and never as a false accept.
    """
    pairs = [p for fold in folds for p in fold]
    fold_of = np.repeat(np.arange(len(folds)), [len(f) for f in folds])
    scores, labels, failed = pair_scores(e, pairs)
    if labels.all() or not labels.any():
        raise FaceledgerError("verification needs both genuine and impostor pairs")
    result: dict = {"pairs": len(pairs), "genuine_pairs": int(labels.sum()), "impostor_pairs": int((~labels).sum()),
                    "pairs_with_failure": int(failed.sum())}
    result.update(metrics.ten_fold(scores, labels, failed, fold_of))
    scored = np.where(failed, -np.inf, scores)
    result["auc"] = metrics.auc(scored, labels)
    result["eer"] = metrics.eer(scored, labels)
    result["tar_at_far"] = {}
    n_imp = int((~labels).sum())
    for far in FARS:
        tar, thr = metrics.tar_at_far(scored, labels, far)
        result["tar_at_far"][f"{far:g}"] = {"tar": tar, "threshold": thr, "resolved": far * n_imp >= 1}
    found = ~failed
    if found.any() and labels[found].any() and (~labels[found]).any():
        result["both_found"] = {"n": int(found.sum()), "auc": metrics.auc(scores[found], labels[found]),
                                "eer": metrics.eer(scores[found], labels[found])}
    if operating_threshold is not None:
        accept = np.where(failed, False, scores >= operating_threshold)
        fm, fnm = int((accept & ~labels).sum()), int((~accept & labels).sum())
        result["at_operating_threshold"] = {
            "threshold": operating_threshold,
            "fmr": fm / n_imp, "fmr_count": fm, "fmr_wilson95": list(metrics.wilson_interval(fm, n_imp)),
            "fnmr": fnm / int(labels.sum()), "fnmr_count": fnm,
            "fnmr_wilson95": list(metrics.wilson_interval(fnm, int(labels.sum()))),
        }
    thresholds, far, frr = metrics.roc(scored, labels)
    curves = {"far": far, "frr": frr, "thresholds": thresholds,
              "genuine": scores[labels & found], "impostor": scores[~labels & found]}
    return result, curves


def reference_images(e: EmbeddingSet) -> tuple[list[str], np.ndarray]:
    """One image per identity (the first in name order with a face found) for impostor comparisons."""
    chosen: dict[str, int] = {}
    for i, path in enumerate(e.paths):
        identity = identity_of(path)
        if identity not in chosen and not e.failed[i]:
            chosen[identity] = i
    names = sorted(chosen)
    return names, e.embeddings[[chosen[n] for n in names]] if names else np.zeros((0, e.embeddings.shape[1]))


# --- identification ----------------------------------------------------------------------------


@dataclass
class GallerySplit:
    size: int  # identities enrolled
    mated: list[str]  # identities with a held-out probe
    distractors: list[str]
    probe_of: dict[str, str]  # mated identity -> its probe image
    enrol_order: dict[str, list[str]]  # identity -> images in the seeded order (probe excluded)


def identification_splits(identities: dict[str, list[str]], gallery_sizes: list[int], *, seed: int = 0,
                          nonmated_per_identity: int = 3) -> tuple[list[GallerySplit], list[tuple[str, str]], dict]:
    """The seeded open-set protocol "faceledger-open-set-v1".

    1. Identities (sorted by name) are shuffled with the seed; each identity's images too.
    2. Non-mated identities: the first R = min(identities - largest gallery, identities // 2) of
       them. They never enter any gallery; up to `nonmated_per_identity` of each one's images are
       non-mated searches.
    3. For each gallery size N (in identities), from the remaining identities in shuffled order:
       mated identities = the first min(N // 2, available) with two or more images; each is probed
       with its first image and enrolled with the next one (single-image template) or up to three
       (multi-image template). Distractors = the next N - mated identities (any image count),
       enrolled with their first one or up to three images, never probed.
    Returns (splits, non-mated searches as (identity, image), protocol facts).
    """
    rng = np.random.default_rng(seed)
    names = sorted(identities)
    order = [names[i] for i in rng.permutation(len(names))]
    shuffled = {n: [identities[n][i] for i in rng.permutation(len(identities[n]))] for n in order}
    total = len(order)
    largest = max(gallery_sizes)
    reserved_count = min(total - largest, total // 2)
    if reserved_count < 1:
        raise FaceledgerError(
            f"a gallery of {largest:,} identities leaves none of the dataset's {total:,} identities for "
            f"non-mated searches; use gallery sizes below {total:,} (e.g. --gallery-sizes {max(1, total // 2)})")
    reserved, pool = order[:reserved_count], order[reserved_count:]
    if largest > len(pool):
        raise FaceledgerError(f"gallery size {largest:,} is larger than the {len(pool):,} identities left "
                              "after setting aside non-mated ones")
    nonmated = [(n, img) for n in reserved for img in shuffled[n][:nonmated_per_identity]]
    splits = []
    for size in gallery_sizes:
        mateable = [n for n in pool if len(shuffled[n]) >= 2]
        mated = mateable[: min(size // 2, len(mateable))]
        if not mated:
            raise FaceledgerError("no identity with two or more images is left to search for (mated searches)")
        chosen = set(mated)
        distractors = [n for n in pool if n not in chosen][: size - len(mated)]
        splits.append(GallerySplit(
            size=size, mated=mated, distractors=distractors,
            probe_of={n: shuffled[n][0] for n in mated},
            enrol_order={**{n: shuffled[n][1:] for n in mated}, **{n: shuffled[n] for n in distractors}}))
    facts = {"identities": total, "nonmated_identities": len(reserved), "nonmated_searches": len(nonmated),
             "nonmated_per_identity": nonmated_per_identity, "seed": seed}
    return splits, nonmated, facts


def _sha(dataset: str, path: str) -> str:
    return hashlib.sha256(f"{dataset}\0{path}".encode()).hexdigest()


def run_identification(e: EmbeddingSet, splits: list[GallerySplit], nonmated: list[tuple[str, str]], *,
                       settings: Settings, templates: dict[str, int] | None = None, top_k: int = 10,
                       target_fpirs=FPIRS, progress=None) -> list[dict]:
    """Enrol each split into a temporary engine and rank its searches through Engine.rank.

    templates: mode name -> images per enrolled identity ({"single": 1, "multi": 3}).
    A search whose probe image failed to enrol returns nothing: a miss for a mated search, a correct
    "no match" for a non-mated one (both counted). Enrolment images that failed are skipped and
    counted; an identity left with no image is not in the gallery (counted).
    """
    from ..engine import Engine

    templates = templates or {"single": 1, "multi": 3}
    results = []
    with tempfile.TemporaryDirectory(prefix="faceledger-eval-") as tmp:
        engine_settings = settings.model_copy(update={"home": Path(tmp) / "home", "db": None,
                                                      "enroll_batch": 1000, "operator": "faceledger-evaluate"})
        engine = Engine(engine_settings)
        try:
            if engine.model_id != e.model_id:
                raise FaceledgerError(f"embeddings are from {e.model_id}, the engine uses {engine.model_id}")
            nm_rows = e.rows([img for _, img in nonmated])
            for split in splits:
                for mode, per_identity in templates.items():
                    if progress:
                        progress(f"gallery {split.size:,} identities, {mode}-image templates")
                    results.append(_one_gallery(engine, e, split, mode, per_identity, nm_rows, nonmated,
                                                top_k=top_k, target_fpirs=target_fpirs))
        finally:
            engine.close()
    return results


def _rank(engine, gallery: str, e: EmbeddingSet, rows: np.ndarray, top_k: int) -> list[list]:
    """Ranked subject hits per row; [] where the probe failed to enrol."""
    out: list[list] = [[] for _ in rows]
    ok = [k for k, r in enumerate(rows) if not e.failed[r]]
    for start in range(0, len(ok), 512):
        chunk = ok[start:start + 512]
        hits = engine.rank(gallery, e.embeddings[rows[chunk]], top_k=top_k)
        for k, h in zip(chunk, hits):
            out[k] = h
    return out


def _one_gallery(engine, e: EmbeddingSet, split: GallerySplit, mode: str, per_identity: int,
                 nm_rows: np.ndarray, nonmated: list[tuple[str, str]], *, top_k: int, target_fpirs) -> dict:
    gallery = f"eval-{split.size}-{mode}"
    engine.create_gallery(gallery)
    entries, failed_images, attempted = [], 0, 0
    enrolled_ids = set()
    for identity in split.mated + split.distractors:
        for path in split.enrol_order[identity][:per_identity]:
            attempted += 1
            row = e.index[path]
            if e.failed[row]:
                failed_images += 1
                continue
            enrolled_ids.add(identity)
            entries.append(PrecomputedFace(subject=identity, sha256=_sha(e.dataset, path), name=path,
                                           embedding=e.embeddings[row], model_id=e.model_id))
    report = engine.enroll_embeddings(entries, gallery=gallery, source=f"evaluation: {e.dataset}",
                                      legal_basis="accuracy evaluation in a temporary data directory")
    if report.failures:
        raise FaceledgerError(f"{len(report.failures)} evaluation embeddings could not be enrolled")
    info = engine.gallery_info(gallery)
    faces = info["faces"]
    mated_rows = e.rows([split.probe_of[n] for n in split.mated])
    mated_hits = _rank(engine, gallery, e, mated_rows, top_k)
    nonmated_hits = _rank(engine, gallery, e, nm_rows, 1)
    ranks = metrics.rank_hits([[h.subject for h in hits] for hits in mated_hits], split.mated)
    mated_scores = np.array([hits[0].score if r == 1 else -np.inf for hits, r in zip(mated_hits, ranks)])
    nonmated_scores = np.array([hits[0].score if hits else -np.inf for hits in nonmated_hits])
    rows = []
    for target in target_fpirs:
        threshold = engine.calibration.threshold_for_fpir(target, faces)
        observed = metrics.rates_at_threshold(mated_scores, nonmated_scores, threshold.score)
        rows.append({"target_fpir": target, "gallery_faces": faces, "threshold": threshold.score,
                     "threshold_supported": threshold.supported,
                     "per_comparison_fmr": threshold.per_comparison_fmr,
                     "predicted_fpir": fpir_at(threshold.predicted_fmr, faces), **observed})
    default = engine.calibration.threshold_for_fpir(engine.settings.target_fpir, faces)
    _, fpir_curve, fnir_curve = metrics.open_set_curve(mated_scores, nonmated_scores)
    n_mated = len(split.mated)
    return {
        "gallery_identities": split.size, "template": mode, "images_per_identity": per_identity,
        "enrolled_identities": len(enrolled_ids), "identities_without_enrolled_image": split.size - len(enrolled_ids),
        "enrolment_images": attempted, "enrolment_images_failed": failed_images, "gallery_faces": faces,
        "mated_searches": n_mated, "mated_probes_failed": int(e.failed[mated_rows].sum()),
        "nonmated_searches": len(nonmated), "nonmated_probes_failed": int(e.failed[nm_rows].sum()),
        "rank1": float(np.mean(ranks == 1)), "rank10": float(np.mean((ranks >= 1) & (ranks <= 10))),
        "rank1_count": int(np.sum(ranks == 1)), "rank10_count": int(np.sum((ranks >= 1) & (ranks <= 10))),
        "fnir_at_fpir": [metrics.fnir_at_fpir(mated_scores, nonmated_scores, f) for f in FPIRS],
        "engine_thresholds": rows,
        "default_target_fpir": engine.settings.target_fpir,
        "_curve": {"fpir": fpir_curve, "fnir": fnir_curve},
        "_errors_at_default": {
            "threshold": default.score,
            "mated_identity": split.mated, "mated_error": ~(mated_scores >= default.score),
            "nonmated_identity": [n for n, _ in nonmated], "nonmated_error": nonmated_scores >= default.score},
    }


def finite(value):
    """JSON-safe: inf/nan -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
