"""The dlib / face_recognition peer on LFW View 2, scored with the same code as faceledger.

Embeds the 7,701 images of pairs.txt with benchmarks/peers/dlib_pipeline.py (HOG upsample 1, 5-point
landmarks, ResNet v1, face_recognition defaults; the face nearest the image centre when several are
found, the LFW convention), then applies faceledger.evaluate's verification protocol (10 folds,
failed pairs wrong, AUC/EER/TAR@FAR with failed pairs as "no match") to score = -Euclidean distance.

Usage: .venv/bin/python benchmarks/lfw_dlib_verification.py [--lfw ../shared/data/lfw] [--workers 2]
(needs `make bench-deps`). Embeddings are cached in benchmarks/results/cache/lfw-dlib-resnet-v1.npz;
results go to benchmarks/results/lfw_dlib_verification.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lfw_common as common
from peers import dlib_pipeline as peer

from faceledger.evaluate import metrics

_W: dict = {}


def _init() -> None:
    peer.init_worker()


def _encode(path: str) -> tuple[int, np.ndarray | None]:
    pipeline = peer._worker["pipeline"]
    rgb = peer.load_image_file(path)
    faces = pipeline.faces(rgb)
    if not faces:
        return 0, None
    cy, cx = rgb.shape[0] / 2, rgb.shape[1] / 2
    face = min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)
    return len(faces), np.asarray(face.embedding, dtype=np.float64)


def embeddings(lfw: Path, paths: list[str], workers: int) -> tuple[np.ndarray, float]:
    cache = common.CACHE_DIR / "lfw-dlib-resnet-v1.npz"
    if cache.is_file():
        with np.load(cache) as z:
            if z["paths"].tolist() == paths:
                return z["embeddings"], float(z["seconds"])
    started = time.perf_counter()
    out = np.full((len(paths), 128), np.nan)
    image_dir = lfw / common.IMAGE_DIR_NAME
    with mp.get_context("spawn").Pool(workers, initializer=_init) as pool:
        for i, (_, vector) in enumerate(pool.imap(_encode, [str(image_dir / p) for p in paths], chunksize=8)):
            if vector is not None:
                out[i] = vector
            if (i + 1) % 500 == 0:
                print(f"  dlib: {i + 1}/{len(paths)} images, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - started
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, paths=np.array(paths), embeddings=out, seconds=seconds)
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_lfw_argument(parser)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "lfw_dlib_verification.json")
    args = parser.parse_args()
    folds, _, _ = common.parse_pairs(args.lfw / "pairs.txt")
    pairs = [p for fold in folds for p in fold]
    paths = sorted({x for p in pairs for x in (p.a, p.b)})
    emb, seconds = embeddings(args.lfw, paths, args.workers)
    row = {p: i for i, p in enumerate(paths)}
    a = emb[[row[p.a] for p in pairs]]
    b = emb[[row[p.b] for p in pairs]]
    failed = np.isnan(a[:, 0]) | np.isnan(b[:, 0])
    scores = -np.linalg.norm(a - b, axis=1)
    labels = np.array([p.genuine for p in pairs])
    fold_of = np.repeat(np.arange(len(folds)), [len(f) for f in folds])
    result = metrics.ten_fold(scores, labels, failed, fold_of)
    scored = np.where(failed, -np.inf, scores)
    result.update({
        "model_id": peer.DlibPipeline.model_id, "dlib": peer.dlib_version(), "images": len(paths),
        "failed_to_enrol": int(np.isnan(emb[:, 0]).sum()), "pairs_with_failure": int(failed.sum()),
        "auc": metrics.auc(scored, labels), "eer": metrics.eer(scored, labels),
        "tar_at_far": {f"{far:g}": metrics.tar_at_far(scored, labels, far)[0] for far in (1e-2, 1e-3)},
        "embed_seconds": seconds, "workers": args.workers,
        "fold_thresholds_distance": [-t for t in result["fold_thresholds"]],
    })
    print(f"dlib {result['dlib']}: accuracy {100 * result['accuracy_mean']:.2f} ± {100 * result['accuracy_std']:.2f} %, "
          f"both found {100 * result['accuracy_both_found_mean']:.2f} %, AUC {result['auc']:.4f}, "
          f"EER {100 * result['eer']:.2f} %, FTE {result['failed_to_enrol']} images / "
          f"{result['pairs_with_failure']} pairs, embedding {seconds:.0f} s")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
