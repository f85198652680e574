"""The open-set protocol of benchmarks/openset_engine.py and its synthetic population shifts.

Split (seed 0), the same as benchmarks/openset_calibration.py so that the pure-function benchmark and
the engine benchmark can be put side by side:
- LFW people (sorted names, seeded shuffle) with >= 2 usable images: the first 1,000 are mated; after a
  seeded shuffle of that person's images the first is enrolled, the second searched, the rest are
  "extras" (enrolled only by the multi-image and all-image templates);
- people with exactly one usable image: the first 1,000 are never enrolled and each searched once
  (non-mated searches);
- distractors: every usable image of the remaining people, in shuffled-name order.

Shifts (applied to the RGB image before the pipeline; deterministic, seeded by nothing but the path):
- gray_eq:   grayscale, histogram-equalised contrast, back to three channels;
- low32:     downscaled so that the face (~110 px in a 250 px LFW crop) is ~32 px, then upscaled back
             (bilinear down, bicubic up), i.e. a 32-px face as the pipeline would receive it upsampled;
- jpeg10:    JPEG re-encode at quality 10;
- side_gamma: gamma 2.2 (darker mid-tones) times a horizontal ramp 0.2 -> 1.0 (light from one side,
             the side chosen from the path's CRC so that it is fixed per image).

`embed_shifted` runs the same pipeline as the LFW cache (faceledger.evaluate.datasets: detect every face,
keep the one nearest the image centre, align, SFace), so a shifted embedding differs from the cached
unshifted one only by the shift. Failures (no face found) are NaN rows with status != 0.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

SHIFTS = ("gray_eq", "low32", "jpeg10", "side_gamma")
SEED = 0


def split(e, seed: int = SEED, mated_count: int = 1000, nonmated_count: int = 1000) -> dict:
    """Rows of the protocol (see the module docstring); openset_calibration.split gives them as a tuple."""
    ok = ~e.failed
    people: dict[str, list[int]] = {}
    for i, p in enumerate(e.paths):
        if ok[i]:
            people.setdefault(p.split("/", 1)[0], []).append(i)
    rng = np.random.default_rng(seed)
    names = sorted(people)
    rng.shuffle(names)
    multi = [n for n in names if len(people[n]) >= 2]
    single = [n for n in names if len(people[n]) == 1]
    mated = multi[:mated_count]
    nonmated = single[:nonmated_count]
    enrol, probe, extras = [], [], []
    for n in mated:
        rows = list(people[n])
        rng.shuffle(rows)
        enrol.append(rows[0])
        probe.append(rows[1])
        extras.append(rows[2:])
    used = set(mated) | set(nonmated)
    distractors = [i for n in names if n not in used for i in people[n]]
    return {"people": people, "names": names, "mated": mated, "enrol": enrol, "probe": probe, "extras": extras,
            "nonmated": nonmated, "nonmated_rows": [people[n][0] for n in nonmated], "distractors": distractors}


# -- shifts ----------------------------------------------------------------------------------------

def apply_shift(rgb: np.ndarray, shift: str, key: str) -> np.ndarray:
    import cv2

    if shift == "gray_eq":
        g = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if shift == "low32":
        h, w = rgb.shape[:2]
        f = 32.0 / 110.0
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if shift == "jpeg10":
        _, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 10])
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if shift == "side_gamma":
        h, w = rgb.shape[:2]
        x = rgb.astype(np.float32) / 255.0
        x = x ** 2.2
        ramp = np.linspace(0.2, 1.0, w, dtype=np.float32)
        if zlib.crc32(key.encode()) % 2:
            ramp = ramp[::-1]
        x = x * ramp[None, :, None]
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown shift {shift!r}")


_W: dict = {}


def _init(root: str, det: float) -> None:
    import cv2

    cv2.setNumThreads(1)
    from faceledger.config import Settings
    from faceledger.pipeline import FacePipeline

    settings = Settings(detector_score_threshold=det)
    p = FacePipeline.from_settings(settings)
    p.load()
    _W.update(pipeline=p, root=Path(root), settings=settings)


def _one(task: tuple[str, str]) -> tuple[int, np.ndarray | None]:
    from faceledger.errors import FaceledgerError
    from faceledger.imaging import load_image
    from faceledger.pipeline import central_face

    shift, rel = task
    p, settings = _W["pipeline"], _W["settings"]
    try:
        rgb = load_image(_W["root"] / rel, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels).rgb
    except FaceledgerError:
        return 2, None
    rgb = apply_shift(rgb, shift, rel)
    faces = p.faces(rgb, embed=False)
    face = central_face(faces, rgb.shape)
    if face is None:
        return 1, None
    return 0, np.asarray(p.embedder.embed(rgb, face.detection.landmarks), dtype=np.float32)


def cache_file(cache_dir: Path, shift: str, model_id: str = "sface-2021dec", det: float = 0.7) -> Path:
    return Path(cache_dir) / f"lfw-shift-{shift}-{model_id}-det{det:g}.npz"


def load_shifted(cache_dir: Path, shift: str) -> dict[str, tuple[int, np.ndarray]]:
    f = cache_file(cache_dir, shift)
    if not f.is_file():
        return {}
    with np.load(f) as z:
        return {p: (int(s), v) for p, s, v in zip(z["paths"].tolist(), z["status"], z["embeddings"])}


def _save(cache_dir: Path, shift: str, have: dict[str, tuple[int, np.ndarray]], dim: int = 128) -> None:
    f = cache_file(cache_dir, shift)
    paths = sorted(have)
    emb = np.stack([have[p][1] if have[p][1] is not None else np.full(dim, np.nan, np.float32) for p in paths]) \
        if paths else np.zeros((0, dim), np.float32)
    tmp = f.with_name(f.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, paths=np.array(paths), status=np.array([have[p][0] for p in paths], np.int8),
                        embeddings=emb.astype(np.float32))
    os.replace(tmp, f)


def embed_shifted(image_root: Path, cache_dir: Path, shift: str, rels: list[str], *, workers: int = 2,
                  det: float = 0.7, save_every: int = 1000) -> dict[str, tuple[int, np.ndarray | None]]:
    """Embeddings of the shifted images (cached per shift; only missing ones are computed)."""
    have = load_shifted(cache_dir, shift)
    todo = [r for r in dict.fromkeys(rels) if r not in have]
    if todo:
        t = time.time()
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init, initargs=(str(image_root), det)) as pool:
            for k, (rel, res) in enumerate(zip(todo, pool.imap(_one, [(shift, r) for r in todo], chunksize=16)), 1):
                have[rel] = (res[0], res[1] if res[1] is not None else np.full(128, np.nan, np.float32))
                if k % save_every == 0 or k == len(todo):
                    _save(cache_dir, shift, have)
                    print(f"  [{shift}] {k}/{len(todo)} images, {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    return have


def main() -> None:
    """Embed the shifted images the engine benchmark needs (its 5k gallery, mated and non-mated probes)."""
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import lfw_common as common

    parser = argparse.ArgumentParser(description=main.__doc__)
    common.add_lfw_argument(parser)
    parser.add_argument("--shifts", nargs="+", default=list(SHIFTS))
    parser.add_argument("--gallery", type=int, default=5000)
    args = parser.parse_args()
    e = common.load_embeddings(args.lfw, det_threshold=0.7, workers=args.workers)
    s = split(e)
    rows = s["probe"] + s["nonmated_rows"] + s["enrol"] + s["distractors"][: args.gallery - len(s["enrol"])]
    rels = [e.paths[i] for i in rows]
    for shift in args.shifts:
        embed_shifted(args.lfw / common.IMAGE_DIR_NAME, common.CACHE_DIR, shift, rels, workers=args.workers)


if __name__ == "__main__":
    main()
