"""A gallery's own calibration sample: cross-subject face pairs, and the duplicates it turns up.

Every pair of faces enrolled under different subjects is an impostor pair, unless the two subjects are
one person (a duplicate enrolment, an alias, the same photograph under two names). `gallery_sample`
scores those pairs (all of them while n(n-1)/2 <= max_pairs, else a seeded uniform random sample of
cross-subject pairs, drawn with replacement) into the same bins as the packaged calibration. Pairs
scoring at least `duplicate_score` (the same photograph) are left out and counted, as long as they are
a handful; when they are many (a gallery of one person under many names) they stay in the sample, so
the calibration rises instead of over-promising, and the sample says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from .core import SCORE_MAX, SCORE_MIN, Calibration, read_json, score_histogram

BIN_WIDTH = 0.0005
DUPLICATE_SCORE = 0.9  # cross-subject pairs at or above: the same photograph under two subjects
MAX_EXCLUDED_SHARE = 1e-4  # more duplicates than this share of the pairs (and > 10): keep them
ALIAS_SUSPECT = 0.5  # a cross-subject face pair at or above: check whether the face is the other's person
ALIAS_MEDIAN = 0.3  # ... it is, when its median score against all of that subject's faces reaches this
MAX_ALIAS_SHARE = 0.05  # more aliased faces than this share of the faces (and > 10): the population, kept
MIN_SUBJECTS = 50  # below this a gallery cannot calibrate itself; the packaged sample is used alone
MIN_PAIRS = 10_000
FORMAT = "faceledger-gallery-sample-v2"  # v2: aliased faces left out (a v1 file is rebuilt)


@dataclass(frozen=True)
class GallerySample:
    """A histogram of a gallery's cross-subject scores, with what it was made from."""

    model_id: str
    bin_width: float
    counts: np.ndarray = field(repr=False)
    pairs: int  # pairs in the histogram
    subjects: int
    faces: int
    exhaustive: bool
    seed: int
    duplicate_score: float
    duplicates_excluded: int  # pairs >= duplicate_score left out of the histogram
    duplicates_kept: int  # pairs >= duplicate_score kept in it (too many to be label noise)
    created: str = ""
    alias_faces: int = 0  # (face, other subject) pairs judged one person: the face is of that subject
    alias_pairs_excluded: int = 0  # the face pairs those aliases account for, left out of the histogram

    @property
    def large_enough(self) -> bool:
        return self.subjects >= MIN_SUBJECTS and self.pairs >= MIN_PAIRS

    @property
    def sample_id(self) -> str:
        kind = "all" if self.exhaustive else f"sample{self.seed}"
        return f"gallery-{self.faces}f-{self.subjects}s-{self.pairs}p-{kind}"

    def why_not_used(self) -> str | None:
        """None when the sample can calibrate the gallery, else the reason in words."""
        if self.subjects < 3:
            return (f"the gallery has {self.subjects} subject(s): too few for a cross-subject sample, "
                    "so it cannot calibrate itself")
        if not self.large_enough:
            return (f"the gallery's own sample is too small ({self.subjects:,} subjects, {self.pairs:,} "
                    f"cross-subject pairs; needs >= {MIN_SUBJECTS} subjects and >= {MIN_PAIRS:,} pairs)")
        return None

    def calibration(self) -> Calibration:
        if self.pairs <= 0:
            raise CalibrationError("the gallery sample holds no cross-subject pairs")
        return Calibration(calibration_id=self.sample_id, model_id=self.model_id, bin_width=self.bin_width,
                           counts=self.counts, description="the gallery's own cross-subject scores")

    def to_json(self) -> dict:
        nonzero = np.nonzero(self.counts)[0]
        first, last = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
        return {"format": FORMAT, "model_id": self.model_id, "bin_width": self.bin_width,
                "pairs": self.pairs, "subjects": self.subjects, "faces": self.faces,
                "exhaustive": self.exhaustive, "seed": self.seed, "duplicate_score": self.duplicate_score,
                "duplicates_excluded": self.duplicates_excluded, "duplicates_kept": self.duplicates_kept,
                "alias_faces": self.alias_faces, "alias_pairs_excluded": self.alias_pairs_excluded,
                "created": self.created, "first_bin": first, "counts": self.counts[first:last].tolist()}

    @classmethod
    def from_json(cls, data: dict, *, model_id: str | None = None, source: str = "gallery sample") -> GallerySample:
        if data.get("format") != FORMAT:
            raise CalibrationError(f"{source} is not a faceledger gallery sample (format {data.get('format')!r})")
        if model_id is not None and data.get("model_id") != model_id:
            raise CalibrationError(
                f"{source} was made for model {data.get('model_id')!r}, not {model_id!r}: its scores mean "
                "nothing for this model; rebuild the gallery sample")
        try:
            bins = round((SCORE_MAX - SCORE_MIN) / float(data["bin_width"]))
            counts = np.zeros(bins, dtype=np.int64)
            values = np.asarray(data["counts"], dtype=np.int64)
            first = int(data["first_bin"])
            counts[first:first + len(values)] = values
            if int(counts.sum()) != int(data["pairs"]) or counts.min(initial=0) < 0:
                raise ValueError("the counts do not add up to the pair count")
            return cls(model_id=str(data["model_id"]), bin_width=float(data["bin_width"]), counts=counts,
                       pairs=int(data["pairs"]), subjects=int(data["subjects"]), faces=int(data["faces"]),
                       exhaustive=bool(data["exhaustive"]), seed=int(data["seed"]),
                       duplicate_score=float(data["duplicate_score"]),
                       duplicates_excluded=int(data["duplicates_excluded"]),
                       duplicates_kept=int(data["duplicates_kept"]), created=str(data.get("created", "")),
                       alias_faces=int(data.get("alias_faces", 0)),
                       alias_pairs_excluded=int(data.get("alias_pairs_excluded", 0)))
        except (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise CalibrationError(f"{source} is corrupt ({type(exc).__name__}: {exc}); rebuild it") from exc

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path, *, model_id: str | None = None) -> GallerySample:
        """Read a saved sample; refuses one made for another model id (CalibrationError)."""
        return cls.from_json(read_json(path, what="gallery sample"), model_id=model_id, source=str(path))


def _check(vectors: np.ndarray, subject_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    subject_ids = np.asarray(subject_ids)
    if vectors.ndim != 2 or subject_ids.shape != (len(vectors),):
        raise CalibrationError(f"need vectors (n, d) and n subject ids, got {vectors.shape} and {subject_ids.shape}")
    _, codes = np.unique(subject_ids, return_inverse=True)
    return vectors, codes.astype(np.int64)


def _aliases(vectors: np.ndarray, codes: np.ndarray, subjects: int, *, suspect: float, same_median: float,
             block: int) -> np.ndarray:
    """Keys (face * subjects + subject) of faces that are another subject's person.

    A face scoring at least `suspect` against some face of another subject is a suspect; it is that
    subject's person when its median score against all of that subject's faces (two or more) is at least
    `same_median` — one photograph filed under two names, one person enrolled twice, a mislabelled
    photo. A real stranger who resembles one photo of a subject does not resemble most of them."""
    n = len(vectors)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(subjects + 1))
    suspects: set[tuple[int, int]] = set()
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows, cols = np.nonzero(vectors[start:stop] @ vectors.T >= suspect)
        rows += start
        cross = codes[rows] != codes[cols]
        suspects.update(zip(rows[cross].tolist(), codes[cols[cross]].tolist()))
    keys = []
    for face, subject in suspects:
        members = order[bounds[subject]:bounds[subject + 1]]
        if len(members) >= 2 and float(np.median(vectors[members] @ vectors[face])) >= same_median:
            keys.append(face * subjects + subject)
    return np.unique(np.asarray(keys, dtype=np.int64))


def _aliased(aliases: np.ndarray, i: np.ndarray, j: np.ndarray, codes: np.ndarray, subjects: int) -> np.ndarray:
    """Which face pairs (i, j) an alias accounts for (either face being the other's person)."""
    if not len(aliases):
        return np.zeros(len(i), dtype=bool)
    return np.isin(i * subjects + codes[j], aliases) | np.isin(j * subjects + codes[i], aliases)


def gallery_sample(vectors: np.ndarray, subject_ids: np.ndarray, *, max_pairs: int = 5_000_000, seed: int = 0,
                   model_id: str = "", bin_width: float = BIN_WIDTH,
                   duplicate_score: float = DUPLICATE_SCORE, block: int = 1024,
                   chunk: int = 250_000, alias_suspect: float = ALIAS_SUSPECT,
                   alias_median: float = ALIAS_MEDIAN) -> GallerySample:
    """Histogram of the gallery's cross-subject pair scores (unit vectors: cosine = dot product).

    Pairs that one face's aliasing accounts for (the face is the other subject's person, see _aliases)
    are left out and counted: they are duplicates to report, not impostors."""
    vectors, codes = _check(vectors, subject_ids)
    n = len(vectors)
    subjects = int(codes.max()) + 1 if n else 0
    nbins = round((SCORE_MAX - SCORE_MIN) / bin_width)
    below = np.zeros(nbins, dtype=np.int64)
    high = np.zeros(nbins, dtype=np.int64)
    found = (_aliases(vectors, codes, subjects, suspect=alias_suspect, same_median=alias_median, block=block)
             if subjects >= 2 else np.empty(0, dtype=np.int64))
    # A handful are duplicates to report; when many faces look like other subjects' people, that is the
    # population (one lab, one camera, one family): they stay in, and the calibration rises.
    aliases = found if len(found) <= max(10, MAX_ALIAS_SHARE * n) else np.empty(0, dtype=np.int64)
    aliased_pairs = 0

    def add(values: np.ndarray, i: np.ndarray, j: np.ndarray) -> int:
        nonlocal aliased_pairs
        alias = _aliased(aliases, i, j, codes, subjects)
        aliased_pairs += int(alias.sum())
        values = values[~alias]
        dup = values >= duplicate_score
        below[:] += score_histogram(values[~dup], bin_width)
        if dup.any():
            high[:] += score_histogram(values[dup], bin_width)
        return len(values)

    exhaustive = n * (n - 1) // 2 <= max_pairs
    if subjects >= 2 and exhaustive:
        for start in range(0, n - 1, block):
            stop = min(start + block, n)
            scores = vectors[start:stop] @ vectors[start:].T
            cross = codes[start:stop, None] != codes[None, start:]
            cross &= np.triu(np.ones((stop - start, n - start), dtype=bool), k=1)
            rows, cols = np.nonzero(cross)
            add(scores[rows, cols], rows + start, cols + start)
    elif subjects >= 2:
        rng = np.random.default_rng(seed)
        wanted = int(max_pairs)
        for _ in range(10_000):  # bounded: a gallery of aliases only could otherwise never fill the sample
            if wanted <= 0:
                break
            m = int(min(chunk, wanted * 1.2 + 1000))
            i = rng.integers(0, n, m)
            j = rng.integers(0, n, m)
            keep = codes[i] != codes[j]
            i, j = i[keep][:wanted], j[keep][:wanted]
            wanted -= add(np.einsum("ij,ij->i", vectors[i], vectors[j]), i, j)
    duplicates = int(high.sum())
    keep_dups = duplicates > max(10, MAX_EXCLUDED_SHARE * (below.sum() + duplicates))
    counts = below + high if keep_dups else below
    return GallerySample(model_id=model_id, bin_width=bin_width, counts=counts, pairs=int(counts.sum()),
                         subjects=subjects, faces=n, exhaustive=exhaustive or subjects < 2, seed=seed,
                         duplicate_score=duplicate_score,
                         duplicates_excluded=0 if keep_dups else duplicates,
                         duplicates_kept=duplicates if keep_dups else 0,
                         created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         alias_faces=len(found), alias_pairs_excluded=aliased_pairs)


def find_duplicates(vectors_a: np.ndarray, subjects_a: np.ndarray, vectors_b: np.ndarray | None = None,
                    subjects_b: np.ndarray | None = None, *, min_score: float, block: int = 1024,
                    limit: int = 100_000) -> list[tuple[object, object, int, int, float]]:
    """Cross-subject face pairs scoring at least min_score: (subject_a, subject_b, face_a, face_b, score).

    Within one gallery (b omitted): pairs i < j of different subjects. Across two: every pair whose
    subject ids differ (the same id on both sides is taken to be the same, known subject). Faces are
    row numbers. Highest scores first, at most `limit` pairs. Exhaustive: n_a * n_b dot products.
    """
    if not -1.0 <= min_score <= 1.0 or math.isnan(min_score):
        raise CalibrationError(f"min_score must be a cosine score in [-1, 1], got {min_score}")
    va = np.ascontiguousarray(vectors_a, dtype=np.float32)
    sa = np.asarray(subjects_a)
    same = vectors_b is None
    vb = va if same else np.ascontiguousarray(vectors_b, dtype=np.float32)
    sb = sa if same else np.asarray(subjects_b)
    if va.ndim != 2 or vb.ndim != 2 or sa.shape != (len(va),) or sb.shape != (len(vb),) or va.shape[1] != vb.shape[1]:
        raise CalibrationError("find_duplicates needs (n, d) vectors with one subject id per row on each side")
    found: list[tuple[object, object, int, int, float]] = []
    for start in range(0, len(va), block):
        stop = min(start + block, len(va))
        scores = va[start:stop] @ vb.T
        hit = scores >= min_score
        if same:
            hit &= np.arange(start, stop)[:, None] < np.arange(len(vb))[None, :]
        i, j = np.nonzero(hit)
        for a, b in zip(i + start, j):
            if sa[a] != sb[b]:
                found.append((sa[a].item() if hasattr(sa[a], "item") else sa[a],
                              sb[b].item() if hasattr(sb[b], "item") else sb[b], int(a), int(b),
                              float(scores[a - start, b])))
    found.sort(key=lambda t: -t[4])
    return found[:limit]
