"""YuNet through ONNX Runtime (the default) vs OpenCV's FaceDetectorYN: CPU ms per detection pass.

On the sizes the search path uses (the 12 MP photo's 504x378 coarse copy, the 320x320 re-detection window,
a 250-px LFW original), for N LFW images resized to each size: both backends on the same pixels, in
alternating order, one thread each (cv2.setNumThreads(1), intra_op_num_threads=1); CPU time of the calling
thread (the machine is shared: wall time would measure the other processes), median per size, with the
largest box/landmark/score difference between the two.

    PYTHONPATH=src python benchmarks/yunet_backends.py

Writes benchmarks/results/yunet_backends.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled"
SIZES = ((504, 378), (320, 320), (250, 250))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/yunet_backends.json")
    args = parser.parse_args()

    from faceledger.detect.yunet import YuNetDetector

    cv2.setNumThreads(1)
    detectors = {name: YuNetDetector(backend=name) for name in ("onnxruntime", "opencv")}
    for detector in detectors.values():
        detector.load()
    paths = sorted(args.lfw.glob("*/*_0001.jpg"))[: args.images]
    load = [os.getloadavg()[0]]
    rows = []
    for width, height in SIZES:
        times = {name: [] for name in detectors}
        worst = [0.0, 0.0, 0.0]
        for path in paths:
            rgb = cv2.resize(np.asarray(Image.open(path).convert("RGB")), (width, height), interpolation=cv2.INTER_AREA)
            found = {}
            for _ in range(args.repeat):
                for name, detector in detectors.items():
                    start = time.thread_time()
                    found[name] = detector.detect(rgb)
                    times[name].append(1000 * (time.thread_time() - start))
            a, b = found["onnxruntime"], found["opencv"]
            if len(a) != len(b):
                worst = [float("inf")] * 3
                continue
            for x, y in zip(a, b):
                worst = [max(worst[0], float(np.abs(np.subtract(x.box, y.box)).max())),
                         max(worst[1], float(np.abs(x.landmarks - y.landmarks).max())),
                         max(worst[2], abs(x.score - y.score))]
        ort_ms, cv_ms = statistics.median(times["onnxruntime"]), statistics.median(times["opencv"])
        rows.append({"size": f"{width}x{height}", "images": len(paths), "repeat": args.repeat,
                     "onnxruntime_cpu_ms": ort_ms, "opencv_cpu_ms": cv_ms, "opencv_over_onnxruntime": cv_ms / ort_ms,
                     "box_diff_max_px": worst[0], "landmark_diff_max_px": worst[1], "score_diff_max": worst[2]})
    load.append(os.getloadavg()[0])
    result = {"loadavg_1min": load, "cpus": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} cores; {len(paths)} LFW images x "
          f"{args.repeat} runs per size, CPU ms of the calling thread, medians")
    print("| input | ONNX Runtime | OpenCV DNN | OpenCV / ORT | max box / landmark / score difference |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['size']} | {r['onnxruntime_cpu_ms']:.2f} ms | {r['opencv_cpu_ms']:.2f} ms | "
              f"{r['opencv_over_onnxruntime']:.2f}x | {r['box_diff_max_px']:.1e} px / {r['landmark_diff_max_px']:.1e} px / "
              f"{r['score_diff_max']:.1e} |")


if __name__ == "__main__":
    sys.exit(main())
