"""LFW glue for the accuracy benchmarks and scripts/build_calibration.py.

Everything reusable lives in the package (`faceledger.evaluate`): the folder dataset, the pipeline
embeddings with their cache (`embed_folder`: YuNet -> ArcFace alignment -> SFace, central face, NaN
row + reason for a failure to enrol), the pairs-file parser and the pure metrics. This module only
fixes where LFW and the benchmark cache live and keeps the names the benchmark scripts use.
Cache: benchmarks/results/cache/ (git-ignored; FACELEDGER_BENCH_CACHE overrides), one .npz per (model id,
detector threshold); the same files as `faceledger evaluate --cache DIR` writes, so the two can share one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from faceledger.config import Settings
from faceledger.evaluate.datasets import EmbeddingSet, FolderDataset, Pair, embed_folder
from faceledger.evaluate.datasets import lfw_image_path as image_path
from faceledger.evaluate.datasets import parse_pairs as _parse
from faceledger.evaluate.protocols import pair_scores

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = (REPO_ROOT / ".." / "shared" / "data" / "lfw").resolve()
CACHE_DIR = Path(os.environ.get("FACELEDGER_BENCH_CACHE", REPO_ROOT / "benchmarks" / "results" / "cache"))
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
IMAGE_DIR_NAME = "lfw-deepfunneled"

LfwEmbeddings = EmbeddingSet  # the name the scripts use
__all__ = ["LfwEmbeddings", "Pair", "image_path", "load_embeddings", "pair_scores", "parse_pairs"]


def model_id_for(flip_average: bool) -> str:
    return "sface-2021dec+flip" if flip_average else "sface-2021dec"


def load_embeddings(lfw_root: Path, *, det_threshold: float = 0.7, flip_average: bool = False,
                    workers: int = 2, **_ignored) -> EmbeddingSet:
    """Embeddings of every LFW image for one pipeline config, from the cache (computed when missing)."""
    image_dir = Path(lfw_root) / IMAGE_DIR_NAME
    if not image_dir.is_dir():
        raise SystemExit(f"{image_dir}: not found (pass --lfw pointing at the folder holding {IMAGE_DIR_NAME}/)")
    settings = Settings(detector_score_threshold=det_threshold, flip_average=flip_average)

    def progress(done: int, total: int) -> None:
        if done and (done % 1000 < 50 or done == total):
            print(f"  {model_id_for(flip_average)} det{det_threshold:g}: {done}/{total} images", file=sys.stderr,
                  flush=True)

    e, info = embed_folder(FolderDataset(image_dir), settings, cache_dir=CACHE_DIR, workers=workers,
                           progress=progress)
    if info["embedded"]:
        print(f"  embedded {info['embedded']} images in {info['embed_seconds']:.0f} s; cached in {info['file']}",
              file=sys.stderr)
    return e


def parse_pairs(path: Path) -> tuple[list[list[Pair]], int, int]:
    """(folds, number of folds, genuine pairs per fold) of an LFW pairs file."""
    folds = _parse(path)
    return folds, len(folds), sum(p.genuine for p in folds[0])


def add_lfw_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW,
                        help=f"folder holding {IMAGE_DIR_NAME}/ and pairs.txt (default: ../shared/data/lfw)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for embedding")


def main() -> None:
    parser = argparse.ArgumentParser(description="Compute and cache LFW embeddings for one detector threshold.")
    add_lfw_argument(parser)
    parser.add_argument("--det", type=float, default=0.7, help="YuNet score threshold")
    args = parser.parse_args()
    for flip in (False, True):
        e = load_embeddings(args.lfw, det_threshold=args.det, flip_average=flip, workers=args.workers)
        print(f"{e.model_id} det{args.det:g}: {len(e.paths)} images, failed {int(e.failed.sum())}, "
              f"detect median {np.median(e.detect_ms):.1f} ms, embed median {np.median(e.embed_ms[~e.failed]):.1f} ms")


if __name__ == "__main__":
    main()
