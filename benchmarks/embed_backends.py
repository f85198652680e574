"""The SFace embedder through OpenCV DNN and through ONNX Runtime: where enrolment time goes, and
whether the two backends give the same vectors.

    .venv/bin/python benchmarks/embed_backends.py                 # 2,000 LFW images, about 2 minutes
    .venv/bin/python benchmarks/embed_backends.py --limit 200 --no-write

One pass over the enrolment benchmark's sample (seeded, --limit images, default 2,000). In one
process, with OpenCV on 1 thread and ONNX Runtime on 1 intra-op thread (what each enrolment worker
gets), every image is decoded (imaging.load_image: read, sha256, Pillow, EXIF, RGB), YuNet finds the
faces, the largest is aligned and passed through the quality checks, and its crop is embedded by
both backends, in alternating order so that a busy machine slows both alike. Each stage is timed
in wall and CPU time; the first --warmup images are left out of the medians.

Variants: CPU ms per face of the forward pass through OpenCV and through ONNX Runtime with the
graph prepared in other ways (PRelu kept, with and without the blocked layout; PRelu as
Relu(x) - s*Relu(-x); the shipped Relu(x)*(1-s) + x*s), on the first --variant-faces crops,
interleaved over --variant-rounds rounds.

Numerics: max abs difference and min cosine between the two backends' unit vectors of the same
crops; the cosine score of every pair of those faces under each backend, the largest score
difference, and how many pairs land on different sides of a few thresholds.

Prints markdown tables and writes benchmarks/results/embed_backends.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from enroll_throughput import Contention, lfw_images, machine_info, resolve_lfw, seeded_sample

RESULTS = BENCH_DIR / "results" / "embed_backends.json"
THRESHOLDS = (0.363, 0.5, 0.6805)
"""SFace's published cosine threshold, a mid value, and the 10k-face search threshold (benchmarks.md)."""
BATCH_SIZES = (1, 2, 4, 8)


def profile(paths: list[Path], warmup: int, variant_faces: int = 32, variant_rounds: int = 12) -> dict:
    import cv2

    from faceledger import Settings
    from faceledger.embed import create_embedder
    from faceledger.errors import FaceledgerError
    from faceledger.imaging import load_image
    from faceledger.pipeline import FacePipeline
    from faceledger.quality import assess

    cv2.setNumThreads(1)
    pipeline = FacePipeline.from_settings(Settings(embed_backend="opencv"))
    pipeline.load()
    backends = {"opencv": pipeline.embedder, "onnxruntime": create_embedder("sface", backend="onnxruntime")}
    for embedder in backends.values():
        embedder.load()
    stages = ("decode", "detect", "align", "quality", "embed_opencv", "embed_onnxruntime")
    wall = {s: [] for s in stages}
    cpu = {s: [] for s in stages}
    vectors = {name: [] for name in backends}
    crops, names, skipped = [], [], 0

    def timed(stage: str, n: int, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        if n >= warmup:
            wall[stage].append(time.perf_counter() - t0)
            cpu[stage].append(time.process_time() - c0)
        return out

    for n, path in enumerate(paths):
        try:
            image = timed("decode", n, load_image, path)
        except FaceledgerError:
            skipped += 1
            continue
        detections = timed("detect", n, pipeline.detector.detect, image.rgb)
        if not detections:
            skipped += 1
            continue
        largest = max(detections, key=lambda d: d.area)
        crop = timed("align", n, pipeline.embedder.aligned_crop, image.rgb, largest.landmarks)
        timed("quality", n, assess, largest, crop, pipeline.thresholds)
        order = list(backends) if n % 2 == 0 else list(reversed(backends))
        for name in order:
            vectors[name].append(timed(f"embed_{name}", n, backends[name].embed_aligned, crop))
        crops.append(crop)
        names.append(str(path.relative_to(path.parent.parent)))

    batch = batch_timings(backends["onnxruntime"], crops[:256])
    variant_ms = variants(crops[:variant_faces], variant_rounds) if variant_faces else None
    medians = {s: {"wall_ms": 1000 * float(np.median(wall[s])), "cpu_ms": 1000 * float(np.median(cpu[s]))}
               for s in stages}
    return {"images": len(paths), "warmup": warmup, "faces": len(crops), "skipped": skipped,
            "cv2_threads": 1, "onnxruntime_intra_op_threads": 1, "medians": medians,
            "batch_onnxruntime_ms_per_face": batch, "variants_cpu_ms_per_face": variant_ms,
            "variant_faces": variant_faces, "variant_rounds": variant_rounds, "names": names,
            "vectors": {k: np.stack(v) for k, v in vectors.items()}}


def batch_timings(embedder, crops: list[np.ndarray], rounds: int = 5) -> dict:
    """ONNX Runtime CPU ms per face with 1, 2, 4, 8 crops per forward pass (median over rounds)."""
    found = {b: [] for b in BATCH_SIZES}
    for _ in range(rounds):
        for b in BATCH_SIZES:  # interleaved, so load drifts hit every size
            c0 = time.process_time()
            for i in range(0, len(crops) - b + 1, b):
                embedder.embed_aligned_batch(crops[i:i + b])
            found[b].append(1000 * (time.process_time() - c0) / (len(crops) - len(crops) % b))
    return {str(b): float(np.median(v)) for b, v in found.items()}


def variant_sessions() -> dict:
    """ONNX Runtime sessions on the SFace graph prepared in each of the ways compared in the docs."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from faceledger.embed.sface_ort import prepare_graph, verified_bytes
    from faceledger.models import SFACE_2021DEC

    data = verified_bytes(SFACE_2021DEC)

    def weights_as_constants(prelu: str) -> bytes:
        model = onnx.load_from_string(data)
        graph = model.graph
        weights = {w.name: w for w in graph.initializer}
        inputs = [v for v in graph.input if v.name not in weights]
        del graph.input[:]
        graph.input.extend(inputs)
        if prelu == "negative-relu":  # Relu(x) - s * Relu(-x)
            nodes = []
            for node in graph.node:
                if node.op_type != "PRelu":
                    nodes.append(node)
                    continue
                (x, slope), y = node.input, node.output[0]
                graph.initializer.append(numpy_helper.from_array(-numpy_helper.to_array(weights[slope]), f"{slope}__neg"))
                nodes += [helper.make_node("Relu", [x], [f"{y}__r"]), helper.make_node("Neg", [x], [f"{y}__n"]),
                          helper.make_node("Relu", [f"{y}__n"], [f"{y}__rn"]),
                          helper.make_node("Mul", [f"{y}__rn", f"{slope}__neg"], [f"{y}__m"]),
                          helper.make_node("Add", [f"{y}__r", f"{y}__m"], [y])]
            del graph.node[:]
            graph.node.extend(nodes)
        return model.SerializeToString()

    def session(graph: bytes, level) -> object:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.graph_optimization_level = level
        options.log_severity_level = 3
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    full, extended = ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return {
        "onnxruntime, weights as initialisers, PRelu kept": session(weights_as_constants("keep"), full),
        "onnxruntime, as above, ORT_ENABLE_EXTENDED (no blocked layout)": session(weights_as_constants("keep"), extended),
        "onnxruntime, PRelu as Relu(x) - s*Relu(-x)": session(weights_as_constants("negative-relu"), full),
        "onnxruntime, PRelu as Relu(x)*(1-s) + x*s (shipped)": session(prepare_graph(data), full),
    }


def variants(crops: list[np.ndarray], rounds: int) -> dict:
    """CPU ms per face of one forward pass, OpenCV against each ONNX Runtime variant, interleaved."""
    import cv2

    from faceledger.models import SFACE_2021DEC, locate

    net = cv2.FaceRecognizerSF.create(str(locate(SFACE_2021DEC)), "")
    bgr = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in crops]
    blobs = [np.ascontiguousarray(c.transpose(2, 0, 1)[None], dtype=np.float32) for c in crops]
    runs = {"opencv DNN (FaceRecognizerSF.feature)": lambda: [net.feature(b) for b in bgr]}
    for name, session in variant_sessions().items():
        runs[name] = lambda s=session: [s.run(None, {"data": b}) for b in blobs]
    found = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            c0 = time.process_time()
            run()
            found[name].append(1000 * (time.process_time() - c0) / len(crops))
    return {name: float(np.median(v)) for name, v in found.items()}


def numerics(a: np.ndarray, b: np.ndarray) -> dict:
    cos = np.sum(a * b, axis=1)
    sa, sb = a @ a.T, b @ b.T
    upper = np.triu_indices(len(a), k=1)
    sa, sb = sa[upper], sb[upper]
    flips = {str(t): int(np.sum((sa >= t) != (sb >= t))) for t in THRESHOLDS}
    return {"faces": len(a), "max_abs_diff": float(np.abs(a - b).max()), "min_cosine": float(cos.min()),
            "median_cosine": float(np.median(cos)), "pairs": len(sa),
            "max_pair_score_diff": float(np.abs(sa - sb).max()), "decision_flips": flips,
            "same_to_float_tolerance": bool(cos.min() >= 0.99999 and not any(flips.values()))}


def markdown(result: dict) -> str:
    p, m = result["profile"], result["numerics"]
    rows = [("decode / image (read, sha256, Pillow, EXIF, RGB)", "decode"),
            ("detect / image (YuNet, OpenCV)", "detect"),
            ("align / face", "align"), ("quality / face", "quality"),
            ("embed / face, OpenCV DNN (old default)", "embed_opencv"),
            ("embed / face, ONNX Runtime (new default)", "embed_onnxruntime")]
    title = (f"Per-stage medians over {p['images'] - p['warmup']} images after {p['warmup']} warm-up "
             f"({p['faces']} faces; other processes used {result['other_cores_busy']:.2f} cores meanwhile)")
    lines = [title, "",
             "| stage | wall ms | CPU ms |", "|---|---:|---:|"]
    for label, key in rows:
        lines.append(f"| {label} | {p['medians'][key]['wall_ms']:.2f} | {p['medians'][key]['cpu_ms']:.2f} |")
    numbers = (f"Numerics over {m['faces']} faces: max abs diff {m['max_abs_diff']:.2e}, min cosine "
               f"{m['min_cosine']:.7f}; over {m['pairs']:,} pairs the largest score difference is "
               f"{m['max_pair_score_diff']:.2e}, decision flips at thresholds {m['decision_flips']}; "
               f"same to float tolerance: {m['same_to_float_tolerance']}")
    ratio = p["medians"]["embed_opencv"]["cpu_ms"] / p["medians"]["embed_onnxruntime"]["cpu_ms"]
    lines += ["", f"Embed, OpenCV / ONNX Runtime (CPU): {ratio:.2f}×", "",
              "| faces per forward pass (ONNX Runtime) | " + " | ".join(p["batch_onnxruntime_ms_per_face"]) + " |",
              "|---|" + "---:|" * len(p["batch_onnxruntime_ms_per_face"]),
              "| CPU ms / face | " + " | ".join(f"{v:.2f}" for v in p["batch_onnxruntime_ms_per_face"].values()) + " |",
              "", numbers]
    if p.get("variants_cpu_ms_per_face"):
        heading = (f"Forward pass only, CPU ms per face ({p['variant_faces']} faces, {p['variant_rounds']} "
                   "interleaved rounds, medians)")
        lines += ["", heading, "", "| SFace through | CPU ms / face |", "|---|---:|"]
        lines += [f"| {name} | {ms:.2f} |" for name, ms in p["variants_cpu_ms_per_face"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", help="lfw-deepfunneled folder or its parent")
    parser.add_argument("--limit", type=int, default=2000, help="images (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default 0, the enrolment sample)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--variant-faces", type=int, default=32, help="crops for the variants table (0: skip)")
    parser.add_argument("--variant-rounds", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    machine = machine_info()
    folder = resolve_lfw(args.lfw)
    paths = seeded_sample(lfw_images(folder), args.limit, args.seed)
    print(f"{len(paths)} images from {folder}", file=sys.stderr)
    contention = Contention()
    found = profile(paths, args.warmup, args.variant_faces, args.variant_rounds)
    other = contention.other_cores()
    vectors = found.pop("vectors")
    names = found.pop("names")
    result = {"benchmark": "embed_backends", "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": "python benchmarks/embed_backends.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine, "lfw": str(folder), "seed": args.seed, "other_cores_busy": other,
              "profile": found, "numerics": numerics(vectors["opencv"], vectors["onnxruntime"]),
              "first_faces": names[:5]}
    print(markdown(result))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
