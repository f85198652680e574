"""Append-only deltas beside a gallery's base index file: one small file per committed enrolment batch.

The store bumps a gallery's `generation` in every transaction that changes its faces. An enrolment batch
committed at generation g writes `gallery-N.delta-g` (its new face ids and vectors) instead of rewriting
the whole index; the meta file keeps naming the generation its base holds. A reader loads the base and
applies the deltas base+1 .. current; a missing one (a process killed between its commit and its delta)
means "rebuild from the store", exactly as for a stale index. Removals never write deltas: they rewrite
the base and delete every delta, so no removed vector stays on disk.

Writers of one gallery's files (a delta, a new base, a discard) take `gallery-N.lock` (flock), so a delta
is never written for a generation a newer base already holds, nor after a removal discarded the files.
Readers take no lock: files only ever appear or disappear whole (atomic renames); a reader that loses a
race with a compaction tries again, then rebuilds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MAGIC = b"FLDELTA1"
MAX_PENDING = 128
"""Deltas kept before the next save compacts them into the base (bounds a reader's file count)."""
MAX_SHARE = 0.10
"""Compact once the deltas hold more than this share of the base's faces (bounds a reader's extra work)."""
MAX_FACES = 1_000_000
"""No delta may claim more faces than this (a damaged file cannot make a reader allocate without bound)."""


def delta_path(directory: Path, gallery_id: int, generation: int) -> Path:
    return Path(directory) / f"gallery-{gallery_id}.delta-{generation:012d}"


def pending(directory: Path, gallery_id: int) -> dict[int, Path]:
    """Every delta file of the gallery, by generation."""
    found = {}
    pattern = re.compile(rf"gallery-{gallery_id}\.delta-(\d+)")
    for path in Path(directory).glob(f"gallery-{gallery_id}.delta-*"):
        match = pattern.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def write(directory: Path, gallery_id: int, generation: int, ids: np.ndarray, vectors: np.ndarray,
          model_id: str) -> Path:
    """The batch's faces as one file, atomically (readers see all of it or none)."""
    ids = np.ascontiguousarray(ids, dtype="<i8").reshape(-1)
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"a delta needs one vector per id, got {vectors.shape} for {len(ids)} ids")
    header = json.dumps({"gallery_id": gallery_id, "generation": generation, "model_id": model_id,
                         "count": len(ids), "dim": int(vectors.shape[1])}).encode()
    path = delta_path(directory, gallery_id, generation)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + struct.pack("<I", len(header)) + header + ids.tobytes() + vectors.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read(path: Path, *, gallery_id: int, generation: int, model_id: str, dim: int
         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The delta's (ids, vectors), or None if it is missing, damaged or not the one asked for."""
    try:
        data = Path(path).read_bytes()
        if data[:8] != MAGIC:
            return None
        (size,) = struct.unpack("<I", data[8:12])
        header = json.loads(data[12:12 + size])
        count = int(header["count"])
        if (header["gallery_id"], header["generation"], header["model_id"], header["dim"]) != (
                gallery_id, generation, model_id, dim) or not 0 <= count <= MAX_FACES:
            return None
        body = data[12 + size:]
        if len(body) != count * (8 + 4 * dim):
            return None
        ids = np.frombuffer(body, "<i8", count).astype(np.int64)
        vectors = np.frombuffer(body, "<f4", count * dim, offset=8 * count).astype(np.float32).reshape(count, dim)
        return ids, vectors
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def faces_in(path: Path) -> int:
    """How many faces a delta holds, from its header (0 if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
        (size,) = struct.unpack("<I", head[8:12])
        return max(0, int(json.loads(head[12:12 + size])["count"]))
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return 0


def drop(directory: Path, gallery_id: int, *, upto: int | None = None) -> None:
    """Delete the gallery's deltas up to a generation (all of them when None), and stray temp files."""
    for generation, path in pending(directory, gallery_id).items():
        if upto is None or generation <= upto:
            path.unlink(missing_ok=True)
    if upto is None:
        for path in Path(directory).glob(f"gallery-{gallery_id}.delta-*.tmp"):
            path.unlink(missing_ok=True)


def pending_faces(directory: Path, gallery_id: int, *, base_generation: int) -> tuple[int, int]:
    """(deltas, faces) pending on top of a base."""
    newer = [p for g, p in pending(directory, gallery_id).items() if g > base_generation]
    return len(newer), sum(faces_in(p) for p in newer)


def too_many(count: int, faces: int, *, base_faces: int) -> bool:
    """Whether pending deltas have grown past the rule (count, or share of the base)."""
    return count > MAX_PENDING or faces > max(1000, MAX_SHARE * base_faces)


@contextlib.contextmanager
def locked(directory: Path, gallery_id: int) -> Iterator[None]:
    """Exclusive, across processes, for the writers of one gallery's index files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"gallery-{gallery_id}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
