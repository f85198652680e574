"""Turning files into faces for enrolment, in one process or several. Knows nothing of the store."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import caches
from .config import Settings
from .errors import FaceledgerError, ImageError
from .faces import Face
from .imaging import LoadedImage, load_image, read_bytes
from .pipeline import FacePipeline, choose_face

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}
ON_MULTIPLE = ("refuse", "largest", "all")


@dataclass(frozen=True)
class WorkItem:
    path: str
    subject: str
    sha256: str


@dataclass(frozen=True)
class FaceRow:
    """What the store keeps of one face (also what crosses from a worker process: no image data)."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    detector_score: float
    quality: dict
    embedding: np.ndarray
    crop: bytes | None = None
    """A small JPEG of the face, made only for uploads (which leave no file behind to crop from)."""

    @classmethod
    def from_face(cls, face: Face, *, crop: bytes | None = None) -> FaceRow:
        return cls(box=tuple(float(v) for v in face.box),
                   landmarks=tuple(tuple(float(c) for c in p) for p in face.detection.landmarks),
                   detector_score=float(face.detection.score), quality=face.quality.as_dict(),
                   embedding=np.asarray(face.embedding, dtype=np.float32), crop=crop)


@dataclass(frozen=True)
class Analysis:
    """The faces chosen for enrolment from one file, or why there are none."""

    item: WorkItem
    width: int = 0
    height: int = 0
    faces: tuple[FaceRow, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class PrecomputedFace:
    """An embedding made elsewhere by the same model (evaluation caches, migrations between stores)."""

    subject: str
    sha256: str
    name: str
    embedding: np.ndarray
    model_id: str

    def analysis(self) -> Analysis:
        vector = np.asarray(self.embedding, dtype=np.float32).reshape(-1)
        row = FaceRow(box=(0.0, 0.0, 0.0, 0.0), landmarks=(), detector_score=0.0,
                      quality={"precomputed": True}, embedding=vector / np.linalg.norm(vector))
        return Analysis(item=WorkItem(path=self.name, subject=self.subject, sha256=self.sha256), faces=(row,))


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given, and image files inside folders (recursively, sorted); missing paths are errors."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            raise FaceledgerError(f"{path}: no such file or folder")
    return files


def identity_sample(dataset: Path, *, max_identities: int | None, max_bytes: int) -> list[WorkItem]:
    """The first image (by name) of each identity folder of a folder-per-identity dataset."""
    if not dataset.is_dir():
        raise FaceledgerError(f"{dataset}: not a folder (expected one sub-folder of images per identity)")
    items = []
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            items.append(WorkItem(path=str(images[0]), subject=folder.name,
                                  sha256=file_sha256(images[0], max_bytes=max_bytes)))
        if max_identities and len(items) >= max_identities:
            break
    if not items:
        raise FaceledgerError(f"{dataset}: no identity folder holds an image")
    return items


def subject_for(path: Path, *, subject: str | None, from_folder: bool) -> str:
    if from_folder:
        return path.parent.name
    if not subject:
        raise FaceledgerError("name the subject with --subject NAME, or use --subject-from-folder")
    return subject


def file_sha256(path: Path, *, max_bytes: int) -> str:
    return hashlib.sha256(read_bytes(path, max_bytes=max_bytes)).hexdigest()


def select_faces(faces: list[Face], *, name: str, on_multiple: str) -> tuple[Face, ...]:
    """refuse: exactly one usable face; largest: the largest usable; all: every usable face."""
    if on_multiple == "all":
        first = choose_face(faces, name=name, on_multiple="largest")  # raises when none is usable
        return (first,) + tuple(f for f in faces if f.quality.usable and f is not first)
    return (choose_face(faces, name=name, on_multiple=on_multiple),)


def load_with(settings: Settings, source, *, name: str | None = None, decode_side: int | None = None) -> LoadedImage:
    """load_image with every image limit of these settings (bytes, pixels, side, aspect) and the pipeline's
    sizes: a JPEG is first decoded just large enough for single_face's coarse pass, or for decode_side
    (enrolment's full detection pass gives detect_max_side, so a big JPEG is not decoded twice)."""
    return load_image(source, name=name, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                      max_side=settings.max_image_side, max_aspect=settings.max_image_aspect,
                      work_side=settings.detect_max_side,
                      decode_side=decode_side or settings.detect_coarse_side or settings.detect_max_side)


def failure(item: WorkItem, exc: BaseException) -> Analysis:
    """One file's failure as its Analysis: a bad file fails alone, whatever went wrong inside."""
    if isinstance(exc, FaceledgerError):
        return Analysis(item=item, error=str(exc))
    if isinstance(exc, MemoryError):
        return Analysis(item=item, error=f"{item.path}: the image needs more memory than is available")
    return Analysis(item=item, error=f"{item.path}: the image could not be analysed ({type(exc).__name__}: "
                                     f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else 'no detail'})")


def analyse_upload(pipeline: FacePipeline, item: WorkItem, data: bytes, *, settings: Settings,
                   on_multiple: str) -> Analysis:
    """Like `analyse`, from bytes already in memory; each chosen face also gets a small JPEG crop."""
    try:
        image = load_with(settings, data, name=item.path, decode_side=settings.detect_max_side)
        faces = pipeline.with_embeddings(image, select_faces(
            pipeline.faces(image, embed=False), name=item.path, on_multiple=on_multiple))
        return Analysis(item=item, width=image.width, height=image.height,
                        faces=tuple(FaceRow.from_face(f, crop=face_crop_jpeg(image, f.box)) for f in faces))
    except Exception as exc:  # noqa: BLE001 - every per-file failure becomes that file's error
        return failure(item, exc)


CROP_MARGIN = 0.25
CROP_MAX_SIDE = 160


def face_crop_jpeg(rgb: np.ndarray | LoadedImage, box, *, margin: float = CROP_MARGIN,
                   max_side: int = CROP_MAX_SIDE) -> bytes:
    """The face box widened by `margin` on each side, at most `max_side` pixels, as JPEG bytes.

    Given a LoadedImage, only the region is decoded, at the coarsest scale that still gives max_side; a
    crop is for viewing, so the pixels already decoded serve when they give at least half of max_side (a
    12 MP photo's search makes its review crop from the 1/4 decode instead of decoding the photo again)."""
    from PIL import Image

    x0, y0, x1, y1 = (float(v) for v in box)
    pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    if isinstance(rgb, LoadedImage):
        region_box = (x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y)
        longest = max(1.0, region_box[2] - region_box[0], region_box[3] - region_box[1])
        needed = min(1.0, max_side / longest)
        region = rgb.region(region_box, min_scale=rgb.held_scale if needed > rgb.held_scale >= needed / 2 else needed)
        rgb, (x0, y0, x1, y1) = region.rgb, ((x0 - region.x0) * region.scale, (y0 - region.y0) * region.scale,
                                             (x1 - region.x0) * region.scale, (y1 - region.y0) * region.scale)
        pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    height, width = rgb.shape[:2]
    left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
    right, bottom = min(width, int(round(x1 + pad_x))), min(height, int(round(y1 + pad_y)))
    if right <= left or bottom <= top:
        left, top, right, bottom = 0, 0, width, height
    crop = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
    crop.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def analyse(pipeline: FacePipeline, item: WorkItem, *, settings: Settings, on_multiple: str) -> Analysis:
    try:
        image = load_with(settings, item.path, decode_side=settings.detect_max_side)
        if image.sha256 != item.sha256:
            raise ImageError(f"{item.path}: the file changed while it was being enrolled")
        faces = pipeline.with_embeddings(image, select_faces(
            pipeline.faces(image, embed=False), name=item.path, on_multiple=on_multiple))
        return Analysis(item=item, width=image.width, height=image.height,
                        faces=tuple(FaceRow.from_face(f) for f in faces))
    except Exception as exc:  # noqa: BLE001 - every per-file failure becomes that file's error
        return failure(item, exc)


# Worker processes: each loads its own models once.
_worker_state: dict = {}


PARENT_POLL_S = 0.25


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with the process that started it, however that one ends (even `kill -9`).

    A pool worker otherwise outlives a killed parent: it waits forever on the task queue, whose write end
    it holds itself, and keeps the multiprocessing resource tracker (which exits when its last client is
    gone) alive with it. A daemon thread polls the parent's pid (a dead parent's children are re-parented,
    so os.getppid() changes) and ends this process at once. Polling rather than Linux's PR_SET_PDEATHSIG:
    that signal fires when the *thread* that spawned the worker exits, which in a server need not mean the
    process has."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    if os.getppid() != parent_pid:  # the parent died before this worker got here
        os._exit(1)
    threading.Thread(target=watch, name="faceledger-parent-watch", daemon=True).start()


def _init_worker(settings_json: str, on_multiple: str, parent_pid: int | None = None,
                 cache_dir: str | None = None) -> None:
    """Load this worker's models once. `cache_dir`: the parent's caches folder, so the worker reads the
    SFace graph already optimised for this CPU (about 0.85 s of CPU per worker otherwise)."""
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    import cv2

    cv2.setNumThreads(1)
    caches.use_dir(cache_dir)
    settings = Settings.model_validate_json(settings_json)
    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    _worker_state.update(pipeline=pipeline, settings=settings, on_multiple=on_multiple)


def _analyse_in_worker(item: WorkItem) -> Analysis:
    try:
        return _analyse_safely(item)
    except BaseException as exc:  # never let one file break the pool
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return failure(item, exc)


def _analyse_safely(item: WorkItem) -> Analysis:
    return analyse(_worker_state["pipeline"], item, settings=_worker_state["settings"],
                   on_multiple=_worker_state["on_multiple"])


def process_pool():
    """concurrent.futures.ProcessPoolExecutor, imported when a pool is made."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor


def analyse_all(items: list[WorkItem], *, pipeline: FacePipeline, settings: Settings, on_multiple: str,
                workers: int) -> Iterator[Analysis]:
    """Analyse items in order, in this process (workers=1) or a pool of worker processes."""
    if on_multiple not in ON_MULTIPLE:
        raise FaceledgerError(f"on_multiple must be one of {ON_MULTIPLE}, not {on_multiple!r}")
    workers = max(1, min(int(workers), os.cpu_count() or 1, len(items) or 1))
    if workers == 1:
        for item in items:
            yield analyse(pipeline, item, settings=settings, on_multiple=on_multiple)
        return
    # imported here: a process that never starts a pool (a CLI search, which loads images through this
    # module) does not pay for multiprocessing and concurrent.futures' process pool (≈ 0.02 s)
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    pool = process_pool()(workers, mp_context=context, initializer=_init_worker,
                               initargs=(settings.model_dump_json(), on_multiple, os.getpid(),
                                         None if caches.current_dir() is None else str(caches.current_dir())))
    try:
        yield from pool.map(_analyse_in_worker, items, chunksize=4)
    except BrokenProcessPool as exc:
        raise FaceledgerError(
            f"a worker process died ({exc}); what was enrolled so far is kept: rerun to resume, "
            "or use --workers 1 to see the error"
        ) from None
    finally:
        # When the caller stops early (an error while storing a batch, an interrupt), drop the work not yet
        # started instead of analysing every remaining file first (what `with pool:` would do).
        pool.shutdown(wait=True, cancel_futures=True)
