"""matching.best_per_subject: each query's best face per subject, read lazily, against the plain rule.

The reference below is the rule as it was written before the subjects were read lazily: look up every
shortlisted face, keep each subject's first face in FAISS order, sort by score, keep top_k. The lazy one
must give the same subjects, faces and scores on shortlists with ties, several faces per subject, empty
slots (-1) and faces the store leaves out (gone, or past their retention date), and read far fewer faces
when the first ones already hold top_k subjects."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.matching import FIRST_LOOKUP, best_per_subject
from faceledger.results import SubjectHit


def reference(scores, ids, top_k, subject_of):
    ranked = []
    for row_scores, row_ids in zip(scores, ids):
        best = {}
        for score, fid in zip(row_scores, row_ids):
            info = subject_of.get(int(fid))
            if info is not None and info[0] not in best:
                best[info[0]] = SubjectHit(subject_id=info[0], subject=info[1], score=float(score),
                                           face_id=int(fid), image=info[2])
        ranked.append(sorted(best.values(), key=lambda h: h.score, reverse=True)[:top_k])
    return ranked


def shortlist(rng, queries: int, width: int, faces: int, subjects: int, *, ties: bool):
    """FAISS-like output: ids with scores sorted best first (some equal), -1 padding at the end."""
    scores = np.sort(rng.random((queries, width)).astype(np.float32), axis=1)[:, ::-1]
    if ties:
        scores = np.round(scores * 20) / 20
    ids = np.stack([rng.choice(faces, width, replace=False) for _ in range(queries)]).astype(np.int64)
    ids[:, width - width // 10:] = -1
    scores[ids < 0] = -np.inf
    owner = rng.integers(0, subjects, faces)
    subject_of = {f: (int(owner[f]), f"s{owner[f]}", f"img{f}.jpg") for f in range(faces) if f % 7}  # 1 in 7 left out
    return scores, ids, subject_of


@pytest.mark.parametrize("seed", range(12))
def test_lazy_lookups_give_the_rule_s_answer(seed):
    rng = np.random.default_rng(seed)
    subjects = [5, 30, 400, 2000][seed % 4]
    queries = 1 + seed % 3
    scores, ids, subject_of = shortlist(rng, queries=queries, width=272, faces=3000, subjects=subjects,
                                        ties=seed % 2 == 0)
    asked = []

    def lookup(wanted: set[int]) -> dict:
        asked.append(set(wanted))
        return {f: subject_of[f] for f in wanted if f in subject_of}

    for top_k in (1, 10, 30, 300):
        asked.clear()
        assert best_per_subject(scores, ids, top_k, lookup) == reference(scores, ids, top_k, subject_of)
        looked_up = [f for batch in asked for f in batch]
        assert len(looked_up) == len(set(looked_up))  # no face is read twice
        if subjects >= 400 and top_k <= 30:  # many subjects: each query's first read holds top_k of them
            assert len(asked) <= queries and len(looked_up) <= FIRST_LOOKUP * queries


def test_an_unsorted_shortlist_is_ranked_by_score_all_the_same():
    rng = np.random.default_rng(7)
    scores, ids, subject_of = shortlist(rng, queries=2, width=100, faces=500, subjects=40, ties=False)
    shuffled = rng.permutation(100)
    lookup = lambda wanted: {f: subject_of[f] for f in wanted if f in subject_of}  # noqa: E731
    mixed = best_per_subject(scores[:, shuffled], ids[:, shuffled], 10, lookup)
    ordered = best_per_subject(scores, ids, 10, lookup)
    assert [[(h.subject_id, h.score) for h in row] for row in mixed] == \
           [[(h.subject_id, h.score) for h in row] for row in ordered]
