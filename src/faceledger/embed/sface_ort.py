"""SFace (OpenCV Zoo, 2021dec, 128-D) through ONNX Runtime, batched.

The same model file and the same function as `sface.SFaceEmbedder` (OpenCV DNN); only the engine
differs, so the vectors agree to float rounding (docs/benchmarks.md: max abs difference and min
cosine over 2,000 LFW faces) and keep the model id `sface-2021dec`.

The shipped file is never edited. At load time an in-memory copy is prepared for ONNX Runtime:

1. its sha256 is checked on the very bytes that are loaded (as `models.locate` does for OpenCV);
2. the 174 weights the file declares as graph *inputs* (each also an initialiser) are removed from
   the inputs, so ONNX Runtime treats them as constants: batch norms fold into the convolutions;
3. the batch dimension becomes symbolic, so several faces go through one forward pass;
4. each PRelu(x, s) becomes Relu(x) * (1 - s) + x * s, the same function for every slope, written
   with operators that ONNX Runtime's blocked-layout (NCHWc) convolutions keep in their layout:
   with PRelu in the graph every convolution is wrapped in two layout conversions, and the network
   runs slower than OpenCV's; without, it runs about 1.7x faster (docs/benchmarks.md).

Preparing and optimising that graph costs about 0.4 s of CPU per process (the onnx package, then ONNX
Runtime's graph optimisations). When the engine keeps a cache folder (caches.py), the optimised graph
and its prepacked weights are saved there once (optimised_cache.py) and later sessions load them with
optimisations off: the same graph, the same outputs bit for bit (tests/test_cli_caches.py). Its key
covers the model's sha256, this module's and optimised_cache.py's source, the ONNX Runtime version, the
CPU (optimised graphs use the CPU's blocked layouts, prepacked weights its matrix kernels' layout) and
the thread count; the entry's own sha256 is part of its name and checked on every load.
"""

from __future__ import annotations

import platform
import shutil
import threading
from pathlib import Path

import numpy as np

from .. import caches
from . import optimised_cache
from ..errors import FaceledgerError
from ..models import SFACE_2021DEC, ModelFile, model_path, verified_bytes
from .vectors import l2_normalise
from .alignment import ARCFACE_112_V1, align

INPUT_NAME = "data"
ORT_HINT = "install ONNX Runtime with: .venv/bin/pip install onnxruntime onnx (or run `make install`)"


class SFaceOrtEmbedder:
    name = "sface"
    backend = "onnxruntime"
    dim = 128
    template_id = ARCFACE_112_V1.template_id

    def __init__(self, *, flip_average: bool = False, model_dir: Path | None = None, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.flip_average = flip_average
        self.model_dir = model_dir
        self.threads = threads
        self._session = None
        self._load_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The OpenCV backend's ids: the vectors are the same to float rounding (see the module doc)."""
        return "sface-2021dec+flip" if self.flip_average else "sface-2021dec"

    def load(self) -> None:
        """Load the model once; safe from several threads (one loads, the others wait for it)."""
        if self._session is None:
            with self._load_lock:
                if self._session is None:
                    self._session = create_session(SFACE_2021DEC, self.model_dir, threads=self.threads)

    def aligned_crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return align(rgb, landmarks, ARCFACE_112_V1)

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return self.embed_aligned(self.aligned_crop(rgb, landmarks))

    def embed_aligned(self, crop_rgb: np.ndarray) -> np.ndarray:
        return self.embed_aligned_batch([crop_rgb])[0]

    def embed_aligned_batch(self, crops_rgb) -> np.ndarray:
        """(n, 128) L2-normalised float32 embeddings of n aligned crops, in one forward pass."""
        crops = [_check_crop(c) for c in crops_rgb]
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        batch = np.stack(crops)
        if self.flip_average:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        # OpenCV's FaceRecognizerSF feeds the crop as RGB float32 0..255 (blobFromImage, swapRB):
        # mean and scale are inside the graph.
        blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        raw = self._session.run(None, {INPUT_NAME: blob})[0]
        vectors = np.stack([l2_normalise(v) for v in raw])
        if self.flip_average:
            n = len(crops)
            vectors = np.stack([l2_normalise(a + b) for a, b in zip(vectors[:n], vectors[n:])])
        return vectors


def _check_crop(crop: np.ndarray) -> np.ndarray:
    crop = np.asarray(crop)
    size = ARCFACE_112_V1.size
    if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
        raise ValueError(f"an aligned crop is a ({size}, {size}, 3) uint8 RGB array, got {crop.shape} {crop.dtype}")
    return crop


def create_session(model: ModelFile, model_dir: Path | None = None, *, threads: int = 1):
    """An ONNX Runtime session for the prepared in-memory copy of a verified model file (from the cache
    folder's optimised copy when there is an intact one: optimised_cache.py)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FaceledgerError(f"the onnxruntime embedder backend needs ONNX Runtime: {ORT_HINT}") from None
    folder = caches.folder("models")
    key = _optimised_key(ort, model, model_dir, threads) if folder is not None else ""
    if folder is not None and folder.is_dir():
        session = optimised_cache.load(ort, folder, key, _options(ort, threads, optimise=False))
        if session is not None:
            return session
    options = _options(ort, threads, optimise=True)
    graph = prepare_graph(verified_bytes(model, model_dir))
    tmp = optimised_cache.start_saving(folder, key, options) if folder is not None else None
    try:
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tmp is not None:
        optimised_cache.finish_saving(tmp, folder, key)
    return session


def _options(ort, threads: int, *, optimise: bool):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3  # errors only: no notes about layout transforms on the user's terminal
    return options


def _optimised_key(ort, model: ModelFile, model_dir: Path | None, threads: int) -> str:
    """Everything the optimised graph depends on. The shipped file is known by its path, size and
    modification time (hashing it is what the cache saves); any change there means a new key, and the
    graph is then made again from the file, verified by its sha256 as always."""
    shipped = model_path(model, model_dir)
    stat = shipped.stat()
    cpu = platform.machine()  # (not platform.processor(): on Linux it starts a subprocess)
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu += next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return "sface-" + caches.digest(model.sha256, str(shipped.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}",
                                    Path(__file__).read_bytes(), Path(optimised_cache.__file__).read_bytes(),
                                    ort.__version__, cpu, str(threads))[:32]


def prepare_graph(data: bytes) -> bytes:
    """The SFace graph with weights as constants, a symbolic batch and PRelu spelt out (module doc)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise FaceledgerError(f"the onnxruntime embedder backend needs the onnx package: {ORT_HINT}") from None
    model = onnx.load_from_string(data)
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.value_info[:]  # shapes recorded for batch 1; ONNX Runtime infers them again

    nodes, added = [], []
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in weights:
            nodes.append(node)
            continue
        x, slope_name = node.input
        y = node.output[0]
        slope = numpy_helper.to_array(weights[slope_name]).astype(np.float32)
        keep_name = f"{slope_name}__one_minus"
        added.append(numpy_helper.from_array((np.float32(1.0) - slope).astype(np.float32), keep_name))
        nodes += [
            helper.make_node("Relu", [x], [f"{y}__relu"]),
            helper.make_node("Mul", [f"{y}__relu", keep_name], [f"{y}__positive"]),
            helper.make_node("Mul", [x, slope_name], [f"{y}__sloped"]),
            helper.make_node("Add", [f"{y}__positive", f"{y}__sloped"], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    # No onnx.checker pass here (0.4 s per load, per worker): ONNX Runtime validates the graph when it
    # builds the session, and tests/test_embedders.py compares the outputs with OpenCV's.
    return model.SerializeToString()
