"""Hostile images: every one is refused with a clear ImageError or analysed within a bounded memory budget.

Memory is checked structurally, not by timing: the image work runs in a child process whose address
space is capped (resource.RLIMIT_AS) at what the loaded models use plus a fixed budget; a blow-up makes
the child fail there instead of taking the machine. Images are made in code (tests/hostile.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceledger.config import Settings
from faceledger.enrollment import WorkItem, analyse, analyse_all, analyse_upload, file_sha256
from faceledger.errors import ImageError, ImageTooLarge
from faceledger.imaging import decode, load_image, read_bytes

from . import hostile

SRC = Path(os.environ.get("FACELEDGER_TEST_SRC", Path(__file__).resolve().parents[1] / "src"))
BUDGET_MB = 600
"""Address space a child may add to the loaded models for one image (the 30000x1000 PNG took 4 GB)."""

CHILD = r"""
import json, resource, sys
import cv2
cv2.setNumThreads(1)
from faceledger.config import Settings
from faceledger.errors import FaceledgerError
from faceledger.pipeline import FacePipeline
settings = Settings()
pipeline = FacePipeline.from_settings(settings)
pipeline.load()
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
cap = vm + int(sys.argv[2]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    try:
        from faceledger.enrollment import load_with
    except ImportError:  # the code before the limits existed (to check that this test catches it)
        from faceledger.imaging import load_image
        image = load_image(sys.argv[1], max_bytes=settings.max_image_bytes,
                           max_pixels=settings.max_image_pixels).rgb
    else:
        image = load_with(settings, sys.argv[1])
    face = pipeline.single_face(image, name="probe", on_multiple="largest")
    print(json.dumps({"outcome": "face"}))
except FaceledgerError as exc:
    print(json.dumps({"outcome": type(exc).__name__, "message": str(exc)}))
"""


def _in_capped_child(path: Path, budget_mb: int = BUDGET_MB) -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(budget_mb)], capture_output=True, check=False,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- limits from the header ----------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "why"), [
    (60000, 1000, "side"), (30000, 1000, "side"), (59_999_999, 1, "side"), (12000, 1000, "aspect"),
    (1, 5000, "aspect")])
def test_long_thin_images_refused_from_the_header(width, height, why):
    data = hostile.png_header_only(width, height)  # garbage pixels: refusal must come before decoding
    with pytest.raises(ImageTooLarge, match=f"{width}x{height}") as info:
        load_image(data, name="thin.png")
    assert ("side" in str(info.value)) if why == "side" else ("aspect" in str(info.value))


def test_side_and_aspect_limits_are_settings():
    data = hostile.png(3000, 1000)
    assert load_image(data).width == 3000
    with pytest.raises(ImageTooLarge, match="side of 3,000"):
        load_image(data, max_side=2000)
    with pytest.raises(ImageTooLarge, match="aspect"):
        load_image(data, max_aspect=2.5)
    with pytest.raises(ImageTooLarge, match="aspect"):
        decode(data, max_aspect=2.5)
    assert Settings().max_image_side == 20_000 and Settings().max_image_aspect == 10.0


# --- bounded memory (child process with a capped address space) ---------------------------------------


@pytest.mark.parametrize(("case", "make", "expected"), [
    ("30000x1000 grey PNG", lambda: hostile.png(30000, 1000), "ImageTooLarge"),
    ("59999999x1 PNG", lambda: hostile.png(59_999_999, 1), "ImageTooLarge"),
    ("20000x2000 PNG at the side and aspect limits", lambda: hostile.png(20000, 2000), "NoFaceFound"),
    ("JPEG header claiming 7000x8500", lambda: hostile.jpeg_claiming(7000, 8500), "NoFaceFound"),
])
def test_hostile_image_work_fits_a_fixed_memory_budget(tmp_path, case, make, expected):
    path = tmp_path / ("case.jpg" if "JPEG" in case else "case.png")
    path.write_bytes(make())
    result = _in_capped_child(path)
    assert result["outcome"] == expected, (case, result)


def test_phone_photo_is_analysed_within_the_budget(tmp_path, data_dir):
    face = Image.open(data_dir / "open-faces" / "obama_senate_portrait.jpg").convert("RGB")
    path = tmp_path / "phone.jpg"
    hostile.phone_frame(face, height=1400).save(path, format="JPEG", quality=92)
    assert _in_capped_child(path)["outcome"] == "face"


# --- files that are not regular files --------------------------------------------------------------------


def _refused_within(seconds: float, function) -> BaseException | None:
    outcome: list[BaseException | None] = []

    def target():
        try:
            function()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still reading after {seconds} s (a FIFO must be refused, not read)"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "probe.jpg"
    os.mkfifo(fifo)
    error = _refused_within(10, lambda: load_image(fifo))
    assert isinstance(error, ImageError) and "not a regular file" in str(error)
    error = _refused_within(10, lambda: file_sha256(fifo, max_bytes=1000))
    assert isinstance(error, ImageError)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_device_is_refused_before_reading():
    # /dev/zero reports a size of 0 and never ends: reading it would exhaust memory
    error = _refused_within(10, lambda: read_bytes("/dev/zero", max_bytes=10_000_000))
    assert isinstance(error, ImageError) and "not a regular file" in str(error)


# --- a bad file fails alone --------------------------------------------------------------------------------


def _folder_with_one_bad_file(tmp_path: Path, data_dir: Path) -> list[WorkItem]:
    folder = tmp_path / "people"
    folder.mkdir()
    good = [data_dir / "open-faces" / "macron_2014.jpg", data_dir / "open-faces" / "sunak_portrait.jpg"]
    paths = [folder / "a.jpg", folder / "b_thin.png", folder / "c.jpg"]
    paths[0].write_bytes(good[0].read_bytes())
    paths[1].write_bytes(hostile.png(59_999_999, 1))
    paths[2].write_bytes(good[1].read_bytes())
    return [WorkItem(path=str(p), subject=p.stem, sha256=file_sha256(p, max_bytes=10**8)) for p in paths]


def test_folder_with_one_hostile_file_enrols_the_good_ones(tmp_path, data_dir, pipeline):
    items = _folder_with_one_bad_file(tmp_path, data_dir)
    analyses = list(analyse_all(items, pipeline=pipeline, settings=Settings(), on_multiple="largest", workers=1))
    assert [a.error is None for a in analyses] == [True, False, True]
    assert "59999999x1" in analyses[1].error


def test_unexpected_exception_becomes_that_files_error(tmp_path, data_dir, pipeline, monkeypatch):
    import cv2

    items = _folder_with_one_bad_file(tmp_path, data_dir)
    real = type(pipeline).faces
    calls = []

    def broken(self, image, *, embed=True):  # the first image works, every later one breaks inside OpenCV
        calls.append(1)
        if len(calls) > 1:
            raise cv2.error("OpenCV(4.x) resize.cpp: error: (-215:Assertion failed) inv_scale_x > 0")
        return real(self, image, embed=embed)

    monkeypatch.setattr(type(pipeline), "faces", broken)
    first, _, third = (analyse(pipeline, item, settings=Settings(), on_multiple="largest") for item in items)
    assert first.error is None and first.faces
    assert "could not be analysed" in third.error and "c.jpg" in third.error
    upload = analyse_upload(pipeline, items[2], Path(items[2].path).read_bytes(), settings=Settings(),
                            on_multiple="largest")
    assert "could not be analysed" in upload.error


def test_worker_processes_keep_the_good_files(tmp_path, data_dir, pipeline):
    items = _folder_with_one_bad_file(tmp_path, data_dir)
    analyses = list(analyse_all(items, pipeline=pipeline, settings=Settings(), on_multiple="largest", workers=2))
    assert [a.error is None for a in analyses] == [True, False, True]


# --- fuzzing the decoder ------------------------------------------------------------------------------


def _valid(fmt: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [_valid("PNG"), _valid("JPEG"), _valid("GIF"), _valid("BMP"), _valid("TIFF"), _valid("WEBP")]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):  # overwrite bytes, mostly in the header
        at = draw(st.integers(0, min(len(data) - 1, draw(st.sampled_from([40, 200, len(data) - 1])))))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), mutated()))
def test_decoder_raises_only_image_errors(data):
    try:
        image = load_image(data, name="fuzz", max_pixels=4_000_000)
    except ImageError:
        return
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == (image.height, image.width, 3)
