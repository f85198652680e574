"""YuNet (OpenCV Zoo, 2023mar) through ONNX Runtime: the network and decoding of OpenCV's FaceDetectorYN.

The same model file and the same function as `cv2.FaceDetectorYN` (the `opencv` backend): the image is
padded at the bottom and right to a multiple of 32 with black, fed as BGR float32 0..255, and each of the
three heads (strides 8, 16, 32) is decoded as OpenCV decodes it (score = sqrt(cls * obj), each clamped
to 0..1; box centre (col + dx, row + dy) * stride, size exp(dw, dh) * stride; landmarks (col + kx,
row + ky) * stride), then non-maximum suppression on the integer boxes (`cv2.dnn.NMSBoxes`, as OpenCV
does). Boxes, landmarks and scores agree with OpenCV's to float rounding (tests/test_detectors.py).
ONNX Runtime runs this network about twice as fast as OpenCV DNN on CPU (docs/benchmarks.md).

The shipped file declares a fixed 640x640 input; an in-memory copy with a symbolic height and width is
prepared from the verified bytes (the onnx package, about 0.25 s to import). When the engine keeps a
cache folder (caches.py), that copy is saved there once under a key covering the model's sha256 and
this module's source, and its own sha256 is part of its name, checked on every load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from .. import caches
from ..errors import FaceledgerError
from ..models import YUNET_2023MAR, verified_bytes

STRIDES = (8, 16, 32)
DIVISOR = 32
"""FaceDetectorYN pads the input to a multiple of this (the coarsest stride)."""
ORT_HINT = "install ONNX Runtime with: .venv/bin/pip install onnxruntime onnx (or run `make install`)"


class YuNetOrt:
    """One ONNX Runtime session of YuNet; `detect` returns FaceDetectorYN's rows (n, 15) or None."""

    def __init__(self, session, *, score_threshold: float, nms_threshold: float, top_k: int) -> None:
        self.session = session
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self._names = [output.name for output in session.get_outputs()]

    def detect(self, bgr: np.ndarray) -> np.ndarray | None:
        """Rows (x, y, w, h, 5 landmark (x, y), score) of the faces in a BGR uint8 image, or None."""
        height, width = bgr.shape[:2]
        pad_h, pad_w = -(-height // DIVISOR) * DIVISOR, -(-width // DIVISOR) * DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        outputs = dict(zip(self._names, self.session.run(None, {"input": blob})))
        rows = [self._decoded(outputs, stride, pad_w // stride) for stride in STRIDES]
        faces = np.concatenate([r for r in rows if len(r)] or [np.zeros((0, 15), np.float32)])
        if len(faces) > 1:
            boxes = [[int(x), int(y), int(w), int(h)] for x, y, w, h in faces[:, :4].tolist()]
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold,
                                    eta=1.0, top_k=self.top_k)
            faces = faces[np.asarray(keep, dtype=np.int64).reshape(-1)]
        return faces if len(faces) else None

    def _decoded(self, outputs: dict, stride: int, cols: int) -> np.ndarray:
        cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
        score = np.sqrt(cls * obj)
        index = np.flatnonzero(score >= self.score_threshold)
        if not len(index):
            return np.zeros((0, 15), np.float32)
        grid = np.stack([index % cols, index // cols], axis=1).astype(np.float32)
        bbox = outputs[f"bbox_{stride}"][0, index]
        kps = outputs[f"kps_{stride}"][0, index].reshape(-1, 5, 2)
        step = np.float32(stride)
        centre = (grid + bbox[:, :2]) * step
        size = np.exp(bbox[:, 2:4]) * step
        landmarks = (kps + grid[:, None, :]) * step
        return np.concatenate([centre - size / np.float32(2.0), size, landmarks.reshape(-1, 10),
                               score[index, None]], axis=1).astype(np.float32)


def create_session(model_dir: Path | None = None, *, threads: int = 1):
    """An ONNX Runtime session on YuNet with a symbolic input size (from the cache folder when kept)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FaceledgerError(f"the onnxruntime detector backend needs ONNX Runtime: {ORT_HINT}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(prepared_graph(model_dir), options, providers=["CPUExecutionProvider"])


def prepared_graph(model_dir: Path | None = None) -> bytes:
    """The YuNet graph with a symbolic input height and width: from the cache, or made (and kept)."""
    folder = caches.folder("models")
    key = "yunet-" + caches.digest(YUNET_2023MAR.sha256, Path(__file__).read_bytes())[:32]
    if folder is not None:
        for path in sorted(folder.glob(f"{key}-*.onnx")):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest()[:32] == path.stem.rsplit("-", 1)[-1]:
                return data
            path.unlink(missing_ok=True)  # damaged: made again below
    data = prepare_graph(verified_bytes(YUNET_2023MAR, model_dir))
    if folder is not None:
        tmp = caches.temporary_name(folder / f"{key}.onnx")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(folder / f"{key}-{hashlib.sha256(data).hexdigest()[:32]}.onnx")
            caches.prune(folder, "yunet-*.onnx", 2)
        except OSError:
            tmp.unlink(missing_ok=True)  # a cache: the next process makes it again
    return data


def prepare_graph(data: bytes) -> bytes:
    """The graph with the input's height and width (and the outputs' anchor counts) made symbolic."""
    try:
        import onnx
    except ImportError:
        raise FaceledgerError(f"the onnxruntime detector backend needs the onnx package: {ORT_HINT}") from None
    model = onnx.load_from_string(data)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for value in model.graph.output:
        value.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]  # shapes recorded for 640x640; ONNX Runtime infers them again
    return model.SerializeToString()
