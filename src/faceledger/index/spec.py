"""Index settings strings: `auto`, FAISS factory strings with search parameters, and the re-rank depth.

Parsing and choosing only: nothing here imports FAISS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FaceledgerError

AUTO = "auto"
AUTO_FLAT_MAX = 200_000
"""Largest gallery `auto` keeps exact (see docs/benchmarks-scale.md for the measurements behind it)."""
AUTO_COMPRESSED = "IVF1024,PQ{m}x4fs;nprobe=512;rerank=300"
"""Above AUTO_FLAT_MAX: 4-bit fast-scan PQ with dim/2 sub-quantizers (32 B/face for 128-D) in 1024 lists of
which half are scanned, then the best 300 rows re-scored exactly from the memory-mapped float32 file.
At 10M faces on one core: p50 7.7 ms on an AMD EPYC guest (round 4), 17.9 ms on an Intel Xeon guest
(round 5), where fast-scan PQ is slower per code; mate rank-1 retention 0.999-1.000 on both, trained on
400k faces. Scanning less loses mates on face-like data: at 10M on the Intel guest (1,466 mates) 384 of
1024 lists keep 0.9973 (13.0 ms), 320 keep 0.9952 (about 11 ms), and 4096 lists at 1024 or 1280 probes
keep 0.9939 / 0.9966 (9.9 / 12.6 ms); see docs/benchmarks-scale.md, "Round 5"."""
AUTO_COMPRESSED_RERANK = 300
TRAIN_SAMPLE = 400_000
"""Faces sampled to train a compressed index (was 100k: 400k keeps more mates at the same nprobe)."""
ADD_CHUNK = 65_536


@dataclass(frozen=True)
class IndexSpec:
    """A parsed settings string: FAISS factory, FAISS search parameters, and the re-rank depth."""

    factory: str
    params: tuple[tuple[str, str], ...] = ()
    rerank: int = AUTO_COMPRESSED_RERANK

    @property
    def exact(self) -> bool:
        return self.factory.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        parts = [p.strip() for p in str(text).split(";")]
        if not parts[0]:
            raise FaceledgerError(f"empty FAISS factory string in index setting {text!r}")
        params, rerank = [], AUTO_COMPRESSED_RERANK
        for part in parts[1:]:
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise FaceledgerError(f"index setting {text!r}: expected param=value after ';', got {part!r}")
            if key.strip() == "rerank":
                try:
                    rerank = int(value)
                except ValueError:
                    raise FaceledgerError(f"index setting {text!r}: rerank must be a whole number") from None
                if rerank < 0:
                    raise FaceledgerError(f"index setting {text!r}: rerank must be 0 or more")
            else:
                params.append((key.strip(), value.strip()))
        return cls(parts[0], tuple(params), rerank)

    def __str__(self) -> str:
        extra = [f"{k}={v}" for k, v in self.params]
        if not self.exact:
            extra.append(f"rerank={self.rerank}")
        return ";".join([self.factory, *extra])


def resolve(description: str, count: int, dim: int) -> str:
    """The concrete index string for a setting: `auto` depends on the gallery size."""
    if description.strip().lower() != AUTO:
        return description
    if count < AUTO_FLAT_MAX or dim % 2:
        return "Flat"
    return AUTO_COMPRESSED.format(m=dim // 2)


def same_family(kind: str, other: str) -> bool:
    """Whether two resolved index strings are alike in what `auto` converts between: exact or compressed.
    (A compressed index made under an earlier `auto` recipe is not converted again.)"""
    return IndexSpec.parse(kind).exact == IndexSpec.parse(other).exact


def min_train(factory: str) -> int:
    """Vectors needed to train without FAISS warnings (39 per centroid, FAISS's own minimum)."""
    need = 1
    for match in re.finditer(r"IVF(\d+)", factory):
        need = max(need, int(match.group(1)) * 39)
    for match in re.finditer(r"PQ(\d+)(?:x(\d+))?", factory):
        bits = int(match.group(2) or 8)
        need = max(need, (1 << bits) * 39)
    if "SQ" in factory or "OPQ" in factory or "PCA" in factory:
        need = max(need, 1000)
    return need
