"""The open-set answer for a probe vector: rank subjects, set the threshold, list the candidates.

Pure of the store: the indexes, calibrations and the gallery rows come from the caller, and the faces'
subjects through `subjects_of` (face ids -> (subject id, subject name, image name), leaving out faces that
are gone or whose retention has passed). services/search.py calls it with SQLAlchemy sessions behind
those; direct_search.py with stdlib sqlite3. One ranking, whichever way the store is read.

A gallery row is anything with the attributes `name`, `target_fpir` (and, for `ranked_state`, `id`,
`generation`, `model_id`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .calibration import Threshold, fpir_at
from .results import CANDIDATE_LABEL, LEAD_LABEL, Candidate, SubjectHit

EVIDENCE_SUBJECTS = 30
"""Subjects ranked for a search's own evidence (its top score against the next ones)."""

SubjectsOf = Callable[[set[int]], dict[int, tuple[int, str, str]]]


@dataclass(frozen=True)
class Match:
    """One probe vector's open-set answer against one or more galleries searched as one."""

    threshold: Threshold
    candidates: list[Candidate]
    gallery_size: int
    calibration_id: str
    evidence: dict | None = None
    """The probe's own evidence: its top score against its next-best subjects (see probe_evidence)."""


def probe_evidence(ranked: list[SubjectHit]) -> dict | None:
    """How the best subject's score stands out from this probe's next-best subjects (mostly non-mates):
    the margin over the second, and a z-score against ranks 2..K. Reported beside the calibrated FMR;
    not a gate (its error rates are not calibrated)."""
    if len(ranked) < 6:
        return None
    rest = np.array([h.score for h in ranked[1:]], dtype=np.float64)
    spread = float(rest.std()) or 1e-6
    return {"top_score": round(ranked[0].score, 6), "second_score": round(ranked[1].score, 6),
            "margin": round(ranked[0].score - ranked[1].score, 6),
            "z_against_next": round((ranked[0].score - float(rest.mean())) / spread, 3),
            "subjects_compared": len(ranked)}


def match_galleries(galleries: Sequence, indexes: Sequence, calibrations: Sequence, vector: np.ndarray, *,
                    top_k: int, investigative: bool, subjects_of: SubjectsOf, lock: threading.RLock) -> Match:
    """The open-set answer over several galleries searched as one: N is every face compared, the target
    the strictest of theirs, and the threshold the highest any gallery's calibration asks for at N.
    `lock` is held while an index is searched (another thread may be adding to it)."""
    size = sum(len(index) for index in indexes)
    target = min(g.target_fpir for g in galleries)
    threshold = max((c.threshold_for_fpir(target, max(size, 1)) for c in calibrations), key=lambda t: t.score)
    candidates: list[Candidate] = []
    evidence = None
    for gallery, index, calibration in zip(galleries, indexes, calibrations):
        found, seen = candidates_in(index, vector, None if investigative else threshold.score, top_k, size,
                                    threshold.score, investigative, calibration, subjects_of, lock,
                                    gallery.name if len(galleries) > 1 else None)
        candidates += found
        if seen is not None and (evidence is None or seen["top_score"] > evidence["top_score"]):
            evidence = {**seen, "gallery": gallery.name}
    candidates.sort(key=lambda c: c.score, reverse=True)
    candidates = [replace(c, rank=rank) for rank, c in enumerate(candidates[:top_k], start=1)]
    return Match(threshold=threshold, candidates=candidates, gallery_size=size,
                 calibration_id="; ".join(dict.fromkeys(c.calibration_id for c in calibrations)),
                 evidence=evidence)


def candidates_in(index, vector: np.ndarray, minimum: float | None, top_k: int, compared: int, threshold: float,
                  investigative: bool, calibration, subjects_of: SubjectsOf, lock: threading.RLock,
                  gallery: str | None = None) -> tuple[list[Candidate], dict | None]:
    """Best face per subject (at or above `minimum` when given), ranked, each with its error rates."""
    ranked = rank_subjects(index, vector, max(top_k, EVIDENCE_SUBJECTS), subjects_of, lock)[0]
    hits = ranked[:top_k]
    if minimum is not None:
        hits = [h for h in hits if h.score >= minimum]
    candidates = []
    for rank, hit in enumerate(hits, start=1):
        estimate = calibration.fmr(hit.score)
        candidates.append(Candidate(
            rank=rank, subject=hit.subject, subject_id=hit.subject_id, score=hit.score,
            false_match_rate=estimate.fmr, false_match_rate_upper=estimate.upper,
            gallery_false_positive_chance=fpir_at(estimate.fmr, compared),
            image=hit.image, face_id=hit.face_id, above_threshold=hit.score >= threshold,
            label=LEAD_LABEL if investigative else CANDIDATE_LABEL, gallery=gallery))
    return candidates, probe_evidence(ranked)


def rank_subjects(index, vectors: np.ndarray, top_k: int, subjects_of: SubjectsOf, lock: threading.RLock
                  ) -> list[list[SubjectHit]]:
    """Shortlist faces from the index, keep each subject's best face, best first. The shortlist widens
    until every query has top_k subjects or covers the gallery, so a subject with many faces cannot
    crowd the others out."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if len(index) == 0:
        return [[] for _ in vectors]
    shortlist = min(len(index), top_k * 8 + 32)
    while True:
        with lock:  # not while another thread adds to or removes from this index
            scores, ids = index.search(vectors, shortlist)
        ranked = best_per_subject(scores, ids, top_k, subjects_of)
        if shortlist >= len(index) or all(len(row) >= top_k for row in ranked):
            return ranked
        shortlist = min(len(index), shortlist * 4)


FIRST_LOOKUP = 64
"""Faces whose subjects are read first, best scores first; then twice as many at a time, as needed."""


def best_per_subject(scores: np.ndarray, ids: np.ndarray, top_k: int, subjects_of: SubjectsOf
                     ) -> list[list[SubjectHit]]:
    """Each query's best face per subject, its top_k subjects, best first.

    Faces are taken best score first (FAISS returns them so; not relied upon: a stable sort keeps its
    order among equal scores), so a subject's first face is its best, and once top_k subjects are found no
    later face can enter. Their subjects are read as they are reached, FIRST_LOOKUP faces first, then
    twice as many at a time: a shortlist of a few hundred faces rarely needs more than the first read."""
    known: dict[int, tuple[int, str, str] | None] = {}
    ranked = []
    for row_scores, row_ids in zip(scores, ids):
        order = [int(i) for i in np.argsort(-np.asarray(row_scores), kind="stable") if row_ids[i] >= 0]
        best: dict[int, SubjectHit] = {}
        read, chunk = 0, FIRST_LOOKUP
        for position, i in enumerate(order):
            if len(best) >= top_k:
                break
            if position >= read:
                wanted = {int(row_ids[j]) for j in order[read:read + chunk]} - known.keys()
                found = subjects_of(wanted) if wanted else {}
                known.update({fid: found.get(fid) for fid in wanted})
                read, chunk = read + chunk, chunk * 2
            fid = int(row_ids[i])
            info = known[fid]
            if info is not None and info[0] not in best:
                best[info[0]] = SubjectHit(subject_id=info[0], subject=info[1], score=float(row_scores[i]),
                                           face_id=fid, image=info[2])
        ranked.append(sorted(best.values(), key=lambda h: h.score, reverse=True)[:top_k])
    return ranked


def ranked_state(galleries: Sequence) -> list[tuple]:
    """What a ranking depends on in the gallery rows: which galleries, their faces (generation) and the
    target FPIR that sets the threshold."""
    return [(g.id, g.generation, g.target_fpir, g.model_id) for g in galleries]
