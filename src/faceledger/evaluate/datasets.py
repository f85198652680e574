"""Evaluation datasets as small objects, and their embeddings (computed once, cached).

- `FolderDataset`: one folder per identity, images inside (the LFW layout: DIR/Name/*.jpg).
- `parse_pairs`: LFW's official pairs files (pairs.txt, pairsDevTrain.txt, pairsDevTest.txt).
- `SyntheticDataset`: seeded random unit vectors with identity structure (no images), for fast tests.

Embeddings go through `faceledger.pipeline.FacePipeline` (detect -> align -> embed). When an image
holds several faces the one whose box centre is nearest the image centre is kept (`central_face`, the
LFW convention); the quality gate is not applied, but how many chosen faces fail it is recorded. An
image with no face (or unreadable) is a failure to enrol: a NaN row with its reason, never dropped.

The cache is one .npz per (dataset folder, model id, detector threshold), keyed by relative path,
file size and modification time, so a rerun only embeds new or changed images.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Settings
from ..enrollment import IMAGE_SUFFIXES
from ..errors import FaceledgerError

Progress = Callable[[int, int], None]

STATUS_OK, STATUS_NO_FACE, STATUS_UNREADABLE = 0, 1, 2
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NO_FACE: "no face found", STATUS_UNREADABLE: "unreadable image"}


# --- embeddings --------------------------------------------------------------------------------


@dataclass
class EmbeddingSet:
    """One embedding per image (NaN where the image failed to enrol), with what the pipeline saw."""

    dataset: str  # a plain description: "folder /data/lfw-deepfunneled", "synthetic ..."
    model_id: str
    det_threshold: float | None
    paths: list[str]  # relative paths "Identity/file.jpg" (synthetic: "Identity/#k")
    embeddings: np.ndarray  # (n, d) float32, L2-normalised; NaN where failed
    status: np.ndarray  # (n,) int8: STATUS_*
    n_faces: np.ndarray  # (n,) faces the detector reported
    usable: np.ndarray  # (n,) the chosen face passes faceledger's quality gate
    det_score: np.ndarray  # (n,) detector score of the chosen face (NaN if failed)
    detect_ms: np.ndarray  # (n,) detection (+ alignment and quality of every face)
    embed_ms: np.ndarray  # (n,) embedding of the chosen face
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {p: i for i, p in enumerate(self.paths)}

    @property
    def failed(self) -> np.ndarray:
        return self.status != STATUS_OK

    @property
    def identities(self) -> np.ndarray:
        return np.array([identity_of(p) for p in self.paths])

    def rows(self, paths: list[str]) -> np.ndarray:
        return np.array([self.index[p] for p in paths], dtype=np.int64)

    def enrolment_summary(self) -> dict:
        failed = self.failed
        return {
            "images": len(self.paths),
            "identities": len(set(identity_of(p) for p in self.paths)),
            "failed_to_enrol": int(failed.sum()),
            "fte_rate": float(failed.mean()) if len(failed) else 0.0,
            "failures_by_reason": {STATUS_NAMES[s]: int((self.status == s).sum())
                                   for s in (STATUS_NO_FACE, STATUS_UNREADABLE) if (self.status == s).any()},
            "failed_images": [self.paths[i] for i in np.nonzero(failed)[0]],
            "multi_face_images": int((self.n_faces > 1).sum()),
            "chosen_face_fails_quality_gate": int((~self.usable & ~failed).sum()),
        }


def identity_of(path: str) -> str:
    return path.split("/", 1)[0]


# --- folder datasets ---------------------------------------------------------------------------


class FolderDataset:
    """DIR/Identity/image.jpg: every sub-folder is one identity (the LFW layout)."""

    kind = "folder"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FaceledgerError(f"{self.root}: no such dataset folder (expected DIR/Identity/image.jpg)")
        self.images = sorted(
            p.relative_to(self.root).as_posix() for p in self.root.glob("*/*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise FaceledgerError(
                f"{self.root}: no images found; a dataset folder holds one sub-folder per identity "
                f"with images inside (DIR/Name/photo.jpg; {', '.join(sorted(IMAGE_SUFFIXES))})")

    @property
    def name(self) -> str:
        return self.root.resolve().name

    def describe(self) -> str:
        return f"folder {self.root.resolve()} ({len(self.images):,} images, {len(self.identities()):,} identities)"

    def identities(self) -> dict[str, list[str]]:
        """identity -> its relative image paths, sorted."""
        out: dict[str, list[str]] = {}
        for path in self.images:
            out.setdefault(identity_of(path), []).append(path)
        return out

    def cache_file(self, cache_dir: Path, model_id: str, det_threshold: float) -> Path:
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.name)
        return Path(cache_dir) / f"{safe}-{digest}-{model_id}-det{det_threshold:g}.npz"


# --- the worker side of embedding --------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(settings_json: str, root: str, cache_dir: str | None = None) -> None:
    """Load this worker's models once (reading the parent's caches folder: see enrollment._init_worker)."""
    import cv2

    cv2.setNumThreads(1)
    from .. import caches
    from ..pipeline import FacePipeline

    caches.use_dir(cache_dir)

    pipeline = FacePipeline.from_settings(Settings.model_validate_json(settings_json))
    pipeline.load()
    _WORKER.update(pipeline=pipeline, root=Path(root), settings=Settings.model_validate_json(settings_json))


def _embed_one(rel: str) -> tuple[int, int, bool, float, float, float, np.ndarray | None]:
    """(status, faces, usable, detector score, detect ms, embed ms, vector) for one image."""
    from ..errors import FaceledgerError as Error
    from ..imaging import load_image
    from ..pipeline import central_face

    pipeline = _WORKER["pipeline"]
    settings = _WORKER["settings"]
    try:
        rgb = load_image(_WORKER["root"] / rel, max_bytes=settings.max_image_bytes,
                         max_pixels=settings.max_image_pixels).rgb
    except Error:
        return STATUS_UNREADABLE, 0, False, float("nan"), 0.0, 0.0, None
    start = time.perf_counter()
    faces = pipeline.faces(rgb, embed=False)
    face = central_face(faces, rgb.shape)
    detect_ms = (time.perf_counter() - start) * 1000
    if face is None:
        return STATUS_NO_FACE, 0, False, float("nan"), detect_ms, 0.0, None
    start = time.perf_counter()
    vector = np.asarray(pipeline.embedder.embed(rgb, face.detection.landmarks), dtype=np.float32)
    embed_ms = (time.perf_counter() - start) * 1000
    return (STATUS_OK, len(faces), bool(face.quality.usable), float(face.detection.score), detect_ms,
            embed_ms, vector)


FIELDS = ("status", "n_faces", "usable", "det_score", "detect_ms", "embed_ms")


def _stats(root: Path, paths: list[str]) -> np.ndarray:
    out = np.empty((len(paths), 2), dtype=np.int64)
    for i, rel in enumerate(paths):
        st = (root / rel).stat()
        out[i] = (st.st_size, st.st_mtime_ns)
    return out


def model_id_for(settings: Settings) -> str:
    from ..pipeline import FacePipeline

    return FacePipeline.from_settings(settings).model_id  # constructors do not load models


def embedding_dim(settings: Settings) -> int:
    from ..pipeline import FacePipeline

    return int(FacePipeline.from_settings(settings).embedder.dim)


def embed_folder(dataset: FolderDataset, settings: Settings, *, cache_dir: Path | None, paths: list[str] | None = None,
                 workers: int = 2, progress: Progress | None = None) -> tuple[EmbeddingSet, dict]:
    """Embeddings of `paths` (default: every image) with the cache; returns (set, cache info).

    Only images missing from the cache (or changed on disk) are embedded, by `workers` spawned
    processes each holding its own FacePipeline (workers=1: in this process).
    """
    paths = list(dataset.images if paths is None else paths)
    model_id = model_id_for(settings)
    det = settings.detector_score_threshold
    stats = _stats(dataset.root, paths)
    cache = dataset.cache_file(cache_dir, model_id, det) if cache_dir else None
    n = len(paths)
    dim = embedding_dim(settings)
    emb = np.full((n, dim), np.nan, dtype=np.float32)
    cols = {"status": np.zeros(n, np.int8), "n_faces": np.zeros(n, np.int32), "usable": np.zeros(n, bool),
            "det_score": np.full(n, np.nan), "detect_ms": np.zeros(n), "embed_ms": np.zeros(n)}
    have = np.zeros(n, dtype=bool)
    stored: dict[str, np.ndarray] | None = None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        where = {p: i for i, p in enumerate(stored["paths"].tolist())}
        for i, rel in enumerate(paths):
            j = where.get(rel)
            if j is not None and (stored["stat"][j] == stats[i]).all():
                have[i] = True
                emb[i] = stored["embeddings"][j]
                for k in FIELDS:
                    cols[k][i] = stored[k][j]
    todo = [i for i in range(n) if not have[i]]
    started = time.perf_counter()
    if todo:
        results = _run(dataset.root, settings, [paths[i] for i in todo], workers, progress)
        for i, (status, faces, usable, score, dms, ems, vector) in zip(todo, results):
            cols["status"][i], cols["n_faces"][i], cols["usable"][i] = status, faces, usable
            cols["det_score"][i], cols["detect_ms"][i], cols["embed_ms"][i] = score, dms, ems
            if vector is not None:
                emb[i] = vector
        if cache is not None:
            _save(cache, stored, paths, stats, emb, cols)
    info = {"file": str(cache) if cache else None, "from_cache": int(have.sum()), "embedded": len(todo),
            "embed_seconds": round(time.perf_counter() - started, 2), "workers": workers}
    result = EmbeddingSet(dataset=dataset.describe(), model_id=model_id, det_threshold=det, paths=paths,
                          embeddings=emb, **cols)
    return result, info


def _run(root: Path, settings: Settings, todo: list[str], workers: int, progress: Progress | None) -> list:
    workers = max(1, min(int(workers), len(todo)))
    out = []
    if progress:
        progress(0, len(todo))
    from .. import caches

    cache_dir = None if caches.current_dir() is None else str(caches.current_dir())
    if workers == 1:
        _init_worker(settings.model_dump_json(), str(root), cache_dir)
        for k, rel in enumerate(todo, 1):
            out.append(_embed_one(rel))
            if progress:
                progress(k, len(todo))
        return out
    context = mp.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker,
                      initargs=(settings.model_dump_json(), str(root), cache_dir)) as pool:
        for k, result in enumerate(pool.imap(_embed_one, todo, chunksize=8), 1):
            out.append(result)
            if progress and (k % 50 == 0 or k == len(todo)):
                progress(k, len(todo))
    return out


def _save(cache: Path, stored: dict | None, paths: list[str], stats: np.ndarray, emb: np.ndarray,
          cols: dict[str, np.ndarray]) -> None:
    """Merge these rows into the cache file (rows for other images are kept), atomically."""
    merged_paths = list(paths)
    blocks = {"stat": [stats], "embeddings": [emb], **{k: [v] for k, v in cols.items()}}
    if stored is not None:
        mine = set(paths)
        keep = np.array([p not in mine for p in stored["paths"].tolist()], dtype=bool)
        if keep.any():
            merged_paths += stored["paths"][keep].tolist()
            for k in blocks:
                blocks[k].append(stored[k][keep])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, paths=np.array(merged_paths), **{k: np.concatenate(v) for k, v in blocks.items()})
    os.replace(tmp, cache)


# --- LFW pairs files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    a: str  # relative image path
    b: str
    genuine: bool


def lfw_image_path(name: str, number: int | str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def parse_pairs(path: Path | str) -> list[list[Pair]]:
    """Parse pairs.txt / pairsDevTrain.txt / pairsDevTest.txt into folds of pairs.

    pairs.txt header: "<folds>\\t<n>", then per fold n genuine lines "Name i j" and n impostor lines
    "NameA i NameB j". The View 1 files have a single number n (one fold of n + n).
    """
    path = Path(path)
    if not path.is_file():
        raise FaceledgerError(f"{path}: no such pairs file")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise FaceledgerError(f"{path}: empty pairs file")
    header = lines[0].split()
    try:
        n_folds, per = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    except (ValueError, IndexError):
        raise FaceledgerError(f"{path}: unexpected header {lines[0]!r} (want '<folds> <pairs per fold>')") from None
    body = lines[1:]
    if len(body) != n_folds * 2 * per:
        raise FaceledgerError(f"{path}: {len(body)} pair lines, the header promises {n_folds * 2 * per}")
    folds: list[list[Pair]] = []
    for f in range(n_folds):
        fold = []
        for k, line in enumerate(body[f * 2 * per: (f + 1) * 2 * per]):
            parts = line.split()
            try:
                if len(parts) == 3:
                    pair = Pair(lfw_image_path(parts[0], parts[1]), lfw_image_path(parts[0], parts[2]), True)
                elif len(parts) == 4:
                    pair = Pair(lfw_image_path(parts[0], parts[1]), lfw_image_path(parts[2], parts[3]), False)
                else:
                    raise ValueError
            except ValueError:
                raise FaceledgerError(f"{path}: bad pair line {line!r}") from None
            if pair.genuine != (k < per):
                raise FaceledgerError(f"{path}: fold {f + 1} line {k + 1}: genuine/impostor lines out of order")
            fold.append(pair)
        folds.append(fold)
    return folds


def check_pairs_exist(folds: list[list[Pair]], dataset: FolderDataset, pairs_file: Path | str) -> None:
    known = set(dataset.images)
    missing = sorted({p for fold in folds for pair in fold for p in (pair.a, pair.b)} - known)
    if missing:
        pairs_using = sum(1 for fold in folds for pair in fold if pair.a not in known or pair.b not in known)
        raise FaceledgerError(
            f"{pairs_file}: {len(missing)} image(s) named in {pairs_using} pair(s) are not in {dataset.root} "
            f"(e.g. {', '.join(missing[:3])}); is --dataset the folder holding the identity folders?")


# --- the synthetic dataset ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticDataset:
    """Seeded random unit vectors with identity structure; no images, so no detection or model.

    Each identity has a random unit centre; an image is centre + noise x N(0, I/dim), normalised
    (genuine cosine about 1 / (1 + noise^2), impostor cosine about 0 +- 1/sqrt(dim)). Identity i has
    1 image with probability `single_fraction`, else 2..max_images. `fte_rate` of the images are
    marked as failures to enrol (no vector), to exercise that path.
    """

    identities: int = 300
    max_images: int = 4
    dim: int = 128
    noise: float = 1.1
    single_fraction: float = 0.5
    fte_rate: float = 0.01
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: str, *, seed: int = 0) -> SyntheticDataset:
        """'synthetic' or 'synthetic:IDENTITIES' or 'synthetic:IDENTITIESxMAX_IMAGES'."""
        match = re.fullmatch(r"synthetic(?::(\d+)(?:x(\d+))?)?", spec.strip())
        if not match:
            raise FaceledgerError(f"{spec!r}: a synthetic dataset is 'synthetic', 'synthetic:N' or 'synthetic:NxK'")
        ids = int(match.group(1) or 300)
        most = int(match.group(2) or 4)
        if ids < 4 or most < 1:
            raise FaceledgerError("a synthetic dataset needs at least 4 identities and 1 image each")
        return cls(identities=ids, max_images=most, seed=seed)

    def describe(self) -> str:
        return (f"synthetic (seed {self.seed}: {self.identities} identities, up to {self.max_images} images, "
                f"dim {self.dim}, noise {self.noise}, FTE rate {self.fte_rate})")

    def embeddings(self, model_id: str) -> EmbeddingSet:
        rng = np.random.default_rng(self.seed)
        centres = rng.standard_normal((self.identities, self.dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        paths, rows = [], []
        for i in range(self.identities):
            count = 1 if rng.random() < self.single_fraction or self.max_images == 1 else int(
                rng.integers(2, self.max_images + 1))
            for k in range(count):
                vector = centres[i] + self.noise * rng.standard_normal(self.dim) / np.sqrt(self.dim)
                rows.append(vector / np.linalg.norm(vector))
                paths.append(f"id{i:05d}/#{k + 1}")
        emb = np.asarray(rows, dtype=np.float32)
        n = len(paths)
        status = np.where(rng.random(n) < self.fte_rate, STATUS_NO_FACE, STATUS_OK).astype(np.int8)
        emb[status != STATUS_OK] = np.nan
        ok = status == STATUS_OK
        return EmbeddingSet(dataset=self.describe(), model_id=model_id, det_threshold=None, paths=paths,
                            embeddings=emb, status=status, n_faces=ok.astype(np.int32), usable=ok,
                            det_score=np.where(ok, 1.0, np.nan), detect_ms=np.zeros(n), embed_ms=np.zeros(n))
