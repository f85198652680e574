"""LFW helpers shared by the accuracy benchmarks: embeddings (computed once, cached) and pair files.

Embeddings: every image of lfw-deepfunneled goes through the faceledger pipeline (YuNet -> ArcFace
alignment -> SFace); when an image holds several faces the one whose box centre is nearest the image
centre is kept (the LFW convention). An image with no face gets a NaN row and failed=True.
Results are cached under benchmarks/results/cache/ (git-ignored), one file per pipeline config:
lfw-<model_id>-det<threshold>.npz, keyed by the sorted list of relative image paths.

One pass computes several configs that share a detector threshold (plain and flip-averaged
embeddings of the same detected face), so flip averaging costs one extra forward pass, not a rerun.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = (REPO_ROOT / ".." / "shared" / "data" / "lfw").resolve()
CACHE_DIR = REPO_ROOT / "benchmarks" / "results" / "cache"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
IMAGE_DIR_NAME = "lfw-deepfunneled"
DIM = 128


def model_id_for(flip_average: bool) -> str:
    return "sface-2021dec+flip" if flip_average else "sface-2021dec"


def cache_path(model_id: str, det_threshold: float) -> Path:
    return CACHE_DIR / f"lfw-{model_id}-det{det_threshold:g}.npz"


def list_images(lfw_root: Path) -> list[str]:
    """Relative paths (Name/Name_0001.jpg), sorted, of every image in lfw-deepfunneled."""
    image_dir = Path(lfw_root) / IMAGE_DIR_NAME
    if not image_dir.is_dir():
        raise SystemExit(f"{image_dir}: not found (pass --lfw pointing at the folder holding {IMAGE_DIR_NAME}/)")
    return sorted(p.relative_to(image_dir).as_posix() for p in image_dir.glob("*/*.jpg"))


@dataclass
class LfwEmbeddings:
    """Embeddings of every LFW image for one pipeline config; NaN rows where no face was found."""

    model_id: str
    det_threshold: float
    paths: list[str]
    embeddings: np.ndarray  # (n, 128) float32, L2-normalised; NaN where failed
    failed: np.ndarray  # (n,) bool: no face found
    n_faces: np.ndarray  # (n,) int: faces the detector reported
    det_score: np.ndarray  # (n,) float: detector score of the chosen face (NaN if failed)
    usable: np.ndarray  # (n,) bool: the chosen face passes faceledger's quality rules
    detect_ms: np.ndarray  # (n,) per-image detection time (incl. quality of every face)
    embed_ms: np.ndarray  # (n,) embedding time of the chosen face (0 if failed)

    def __post_init__(self) -> None:
        self.index = {p: i for i, p in enumerate(self.paths)}

    def row(self, name: str, number: int) -> int:
        return self.index[image_path(name, number)]

    @property
    def identities(self) -> np.ndarray:
        return np.array([p.split("/", 1)[0] for p in self.paths])


def image_path(name: str, number: int) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


# --- worker side -------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(image_dir: str, det_threshold: float, flips: tuple[bool, ...]) -> None:
    import cv2

    cv2.setNumThreads(1)
    from faceledger.config import Settings
    from faceledger.pipeline import FacePipeline

    pipelines = []
    for flip in flips:
        pipeline = FacePipeline.from_settings(
            Settings(detector_score_threshold=det_threshold, flip_average=flip)
        )
        pipeline.load()
        pipelines.append(pipeline)
    _WORKER.update(image_dir=Path(image_dir), pipelines=pipelines)


def _process(rel: str):
    from faceledger.imaging import load_image
    from faceledger.pipeline import central_face

    rgb = load_image(_WORKER["image_dir"] / rel).rgb
    first = _WORKER["pipelines"][0]
    start = time.perf_counter()
    faces = first.faces(rgb, embed=False)  # detect + quality of every face
    face = central_face(faces, rgb.shape)
    detect_ms = (time.perf_counter() - start) * 1000
    results = []
    for pipeline in _WORKER["pipelines"]:
        if face is None:
            results.append((None, 0.0))
            continue
        start = time.perf_counter()
        vector = pipeline.embedder.embed(rgb, face.detection.landmarks)
        results.append((np.asarray(vector, dtype=np.float32), (time.perf_counter() - start) * 1000))
    meta = (
        len(faces),
        float(face.detection.score) if face is not None else float("nan"),
        bool(face.quality.usable) if face is not None else False,
        detect_ms,
    )
    return meta, results


# --- driver ------------------------------------------------------------------------------------


def compute(lfw_root: Path, det_threshold: float, flips: tuple[bool, ...], workers: int = 2,
            limit: int | None = None) -> dict[bool, LfwEmbeddings]:
    paths = list_images(lfw_root)
    if limit:
        paths = paths[:limit]
    image_dir = str(Path(lfw_root) / IMAGE_DIR_NAME)
    n = len(paths)
    emb = {f: np.full((n, DIM), np.nan, dtype=np.float32) for f in flips}
    embed_ms = {f: np.zeros(n) for f in flips}
    n_faces = np.zeros(n, dtype=np.int32)
    det_score = np.full(n, np.nan)
    usable = np.zeros(n, dtype=bool)
    detect_ms = np.zeros(n)
    started = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(image_dir, det_threshold, flips)) as pool:
        for i, (meta, results) in enumerate(pool.imap(_process, paths, chunksize=16)):
            n_faces[i], det_score[i], usable[i], detect_ms[i] = meta
            for flip, (vector, ms) in zip(flips, results):
                if vector is not None:
                    emb[flip][i] = vector
                    embed_ms[flip][i] = ms
            if (i + 1) % 1000 == 0 or i + 1 == n:
                elapsed = time.perf_counter() - started
                print(f"  det{det_threshold:g} flips={flips}: {i + 1}/{n} images, {elapsed:.0f} s",
                      file=sys.stderr, flush=True)
    out = {}
    for flip in flips:
        failed = np.isnan(emb[flip][:, 0])
        out[flip] = LfwEmbeddings(
            model_id=model_id_for(flip), det_threshold=det_threshold, paths=paths,
            embeddings=emb[flip], failed=failed, n_faces=n_faces, det_score=det_score,
            usable=usable, detect_ms=detect_ms, embed_ms=embed_ms[flip],
        )
    return out


def save(e: LfwEmbeddings) -> Path:
    path = cache_path(e.model_id, e.det_threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, paths=np.array(e.paths), embeddings=e.embeddings, failed=e.failed, n_faces=e.n_faces,
        det_score=e.det_score, usable=e.usable, detect_ms=e.detect_ms, embed_ms=e.embed_ms,
        model_id=np.array(e.model_id), det_threshold=np.array(e.det_threshold),
    )
    os.replace(tmp, path)
    return path


def _load_cached(model_id: str, det_threshold: float, paths: list[str]) -> LfwEmbeddings | None:
    path = cache_path(model_id, det_threshold)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        cached_paths = z["paths"].tolist()
        if cached_paths != paths:
            print(f"  {path.name}: image list differs from {len(paths)} images on disk; recomputing",
                  file=sys.stderr)
            return None
        return LfwEmbeddings(
            model_id=model_id, det_threshold=det_threshold, paths=cached_paths,
            embeddings=z["embeddings"], failed=z["failed"], n_faces=z["n_faces"],
            det_score=z["det_score"], usable=z["usable"], detect_ms=z["detect_ms"], embed_ms=z["embed_ms"],
        )


def load_embeddings(lfw_root: Path, *, det_threshold: float = 0.7, flip_average: bool = False,
                    also_flip: bool = True, workers: int = 2) -> LfwEmbeddings:
    """Cached embeddings for one config; computes (and caches) them when missing or stale.

    also_flip: when computing, also compute the other flip setting in the same pass (cheap).
    """
    paths = list_images(lfw_root)
    wanted = _load_cached(model_id_for(flip_average), det_threshold, paths)
    if wanted is not None:
        return wanted
    flips = (flip_average,)
    if also_flip and _load_cached(model_id_for(not flip_average), det_threshold, paths) is None:
        flips = (False, True)
    print(f"computing LFW embeddings det={det_threshold:g} flips={flips} with {workers} workers",
          file=sys.stderr, flush=True)
    computed = compute(lfw_root, det_threshold, flips, workers=workers)
    for e in computed.values():
        print(f"  cached {save(e)}", file=sys.stderr)
    return computed[flip_average]


# --- pair files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    a: str  # relative image path
    b: str
    genuine: bool


def parse_pairs(path: Path) -> tuple[list[list[Pair]], int, int]:
    """Parse pairs.txt / pairsDevTrain.txt / pairsDevTest.txt into folds of pairs.

    pairs.txt header: "<folds>\\t<n>", then per fold n genuine lines "Name i j" and n impostor lines
    "NameA i NameB j". The View 1 files have a single number n (one fold of n + n).
    Returns (folds, number of folds, genuine pairs per fold).
    """
    lines = [line.rstrip("\n") for line in Path(path).read_text().splitlines() if line.strip()]
    header = lines[0].split()
    if len(header) == 2:
        n_folds, per = int(header[0]), int(header[1])
    elif len(header) == 1:
        n_folds, per = 1, int(header[0])
    else:
        raise ValueError(f"{path}: unexpected header {lines[0]!r}")
    body = lines[1:]
    if len(body) != n_folds * 2 * per:
        raise ValueError(f"{path}: {len(body)} pair lines, header promises {n_folds * 2 * per}")
    folds: list[list[Pair]] = []
    for f in range(n_folds):
        chunk = body[f * 2 * per: (f + 1) * 2 * per]
        fold = []
        for k, line in enumerate(chunk):
            parts = line.split()
            if len(parts) == 3:
                pair = Pair(image_path(parts[0], parts[1]), image_path(parts[0], parts[2]), True)
            elif len(parts) == 4:
                pair = Pair(image_path(parts[0], parts[1]), image_path(parts[2], parts[3]), False)
            else:
                raise ValueError(f"{path}: bad line {line!r}")
            if pair.genuine != (k < per):
                raise ValueError(f"{path}: fold {f + 1} line {k + 1}: genuine/impostor out of order")
            fold.append(pair)
        folds.append(fold)
    return folds, n_folds, per


def pair_scores(e: LfwEmbeddings, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cosine scores with NaN for failed pairs, labels, failed mask) for a list of pairs."""
    ia = np.array([e.index[p.a] for p in pairs])
    ib = np.array([e.index[p.b] for p in pairs])
    scores = np.einsum("ij,ij->i", e.embeddings[ia].astype(np.float64), e.embeddings[ib].astype(np.float64))
    failed = e.failed[ia] | e.failed[ib]
    labels = np.array([p.genuine for p in pairs])
    return scores, labels, failed


def add_lfw_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW,
                        help=f"folder holding {IMAGE_DIR_NAME}/ and pairs.txt (default: ../shared/data/lfw)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for embedding")


def main() -> None:
    parser = argparse.ArgumentParser(description="Compute and cache LFW embeddings for one config.")
    add_lfw_argument(parser)
    parser.add_argument("--det", type=float, default=0.7, help="YuNet score threshold")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (smoke test, not cached)")
    args = parser.parse_args()
    if args.limit:
        out = compute(args.lfw, args.det, (False, True), workers=args.workers, limit=args.limit)
        for flip, e in out.items():
            print(f"{e.model_id}: failed {int(e.failed.sum())}/{len(e.paths)}, "
                  f"detect median {np.median(e.detect_ms):.1f} ms, embed median "
                  f"{np.median(e.embed_ms[~e.failed]):.1f} ms")
        return
    for flip in (False, True):
        e = load_embeddings(args.lfw, det_threshold=args.det, flip_average=flip, workers=args.workers)
        print(f"{e.model_id} det{args.det:g}: {len(e.paths)} images, failed {int(e.failed.sum())}")


if __name__ == "__main__":
    main()
