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
is saved there once and later sessions load it with optimisations off: the same graph, the same
outputs bit for bit (tests/test_cli_imports.py). Its key covers the model's sha256, this module's
source, the ONNX Runtime version, the CPU (optimised graphs use the CPU's blocked layouts) and the
thread count; the file's own sha256 is part of its name and checked on every load.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from pathlib import Path

import numpy as np

from .. import caches
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
    """An ONNX Runtime session for the prepared in-memory copy of a verified model file."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FaceledgerError(f"the onnxruntime embedder backend needs ONNX Runtime: {ORT_HINT}") from None
    folder = caches.folder("models")
    key = _optimised_key(ort, model, model_dir, threads) if folder is not None else ""
    if folder is not None:
        session = _load_optimised(ort, folder, key, threads)
        if session is not None:
            return session
    options = _options(ort, threads, optimise=True)
    graph = prepare_graph(verified_bytes(model, model_dir))
    if folder is None:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    tmp = caches.temporary_name(folder / f"{key}.onnx")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(tmp)
    except OSError:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    try:
        digest = _file_sha256(tmp)
        tmp.replace(folder / f"{key}-{digest[:32]}.onnx")
        caches.prune(folder, "sface-*.onnx", 4)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache: the next process optimises again
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
                                    Path(__file__).read_bytes(), ort.__version__, cpu, str(threads))[:32]


def _load_optimised(ort, folder: Path, key: str, threads: int):
    """A session on the optimised graph saved before, or None (none saved, or not intact).

    The file's sha256 (its name carries the first 32 hex digits) is computed on a second thread while
    ONNX Runtime builds the session from the same open file; both release the GIL, so the check costs
    the wall time of the longer of the two, not their sum (benchmarks/model_load.py). The session is
    handed out only once the digest matched: a file that does not match is deleted, its session dropped,
    and the caller makes the graph again from the verified shipped model."""
    for path in sorted(folder.glob(f"{key}-*.onnx")):
        try:
            session, digest = _session_and_sha256(ort, path, threads)
        except OSError:
            continue
        if session is None or digest[:32] != path.stem.rsplit("-", 1)[-1]:
            path.unlink(missing_ok=True)  # damaged or altered (or not a graph): remade by the caller
            continue
        return session
    return None


def _session_and_sha256(ort, path: Path, threads: int):
    """(a session built from the file, or None if ONNX Runtime refuses it; the file's sha256), the two
    made at once from one open file: ONNX Runtime reads it by its /proc/self/fd name where there is one,
    so a file put in the path's place meanwhile is neither hashed nor loaded (and reading it itself
    copies less than handing it the bytes: about 35 ms less, measured)."""
    with open(path, "rb") as fh:
        found: dict[str, object] = {}

        def digest() -> None:
            try:
                found["sha256"] = hashlib.file_digest(fh, "sha256").hexdigest()
            except (OSError, ValueError) as error:
                found["error"] = error

        hasher = threading.Thread(target=digest, name="faceledger-cache-sha256")
        hasher.start()
        try:
            session = ort.InferenceSession(_same_file(fh, path), _options(ort, threads, optimise=False),
                                           providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types; the graph is remade
            session = None
        finally:
            hasher.join()
    if "error" in found:
        raise OSError(f"could not read {path}: {found['error']}")
    return session, found["sha256"]


def _same_file(fh, path: Path) -> str:
    """A name that opens the very file `fh` has open (Linux: /proc/self/fd/N), else its path."""
    name = f"/proc/self/fd/{fh.fileno()}"
    return name if os.path.exists(name) else str(path)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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
