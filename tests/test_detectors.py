"""YuNet's two backends (ONNX Runtime, the default, and OpenCV's FaceDetectorYN) on real photos: the same
faces, boxes, landmarks and scores to float rounding; the prepared graph kept in the cache folder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceledger import caches
from faceledger.detect import create_detector
from faceledger.detect import yunet_ort
from faceledger.detect.yunet import YuNetDetector
from faceledger.errors import FaceledgerError
from faceledger.imaging import load_image


@pytest.fixture(scope="module")
def backends():
    return {name: YuNetDetector(backend=name) for name in ("onnxruntime", "opencv")}


@pytest.fixture(scope="module")
def photos(data_dir):
    paths = sorted((data_dir / "open-faces").iterdir()) + sorted((data_dir / "lfw").glob("*/*.jpg"))[:8]
    return {p.name: load_image(p).rgb for p in paths if p.suffix in (".jpg", ".png")}


def _variants(rgb: np.ndarray):
    """The photo, a size that is no multiple of 32, a tight crop (found only on the padded retry), a group
    of two (non-maximum suppression between faces) and a blank (no face)."""
    height, width = rgb.shape[:2]
    yield "as is", rgb
    yield "odd size", cv2.resize(rgb, (301, 227), interpolation=cv2.INTER_AREA)
    yield "tight crop", np.ascontiguousarray(rgb[height // 4: 3 * height // 4, width // 4: 3 * width // 4])
    yield "two", np.ascontiguousarray(np.concatenate([rgb, rgb[:, ::-1]], axis=1))
    yield "blank", np.full((200, 180, 3), 128, dtype=np.uint8)


def test_onnxruntime_and_opencv_give_the_same_detections(backends, photos):
    compared = found = 0
    for name, rgb in photos.items():
        for variant, image in _variants(rgb):
            ort_faces, cv_faces = (backends[b].detect(image) for b in ("onnxruntime", "opencv"))
            assert len(ort_faces) == len(cv_faces), (name, variant)
            for a, b in zip(ort_faces, cv_faces):
                np.testing.assert_allclose(a.box, b.box, atol=1e-3, err_msg=f"{name} {variant}")
                np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3, err_msg=f"{name} {variant}")
                assert a.score == pytest.approx(b.score, abs=1e-5), (name, variant)
            compared += 1
            found += len(ort_faces)
    assert compared == 5 * len(photos) and found > 2 * len(photos)  # faces were found, not only blanks


def test_the_default_backend_is_onnxruntime_and_unknown_backends_are_refused():
    assert create_detector("yunet").backend == "onnxruntime"
    with pytest.raises(FaceledgerError, match="onnxruntime, opencv"):
        YuNetDetector(backend="tensorrt")


def test_the_prepared_graph_is_kept_and_a_damaged_copy_is_made_again(tmp_path, backends, photos):
    caches.use_dir(tmp_path)
    try:
        made = yunet_ort.prepared_graph()
        (kept,) = (tmp_path / "models").glob("yunet-*.onnx")
        assert kept.read_bytes() == made
        assert yunet_ort.prepared_graph() == made  # read back
        kept.write_bytes(made[:-10] + b"x" * 10)  # damaged: its name no longer matches its sha256
        assert yunet_ort.prepared_graph() == made
        (again,) = (tmp_path / "models").glob("yunet-*.onnx")
        assert again.read_bytes() == made
        detector = YuNetDetector()  # a session on the cached graph finds what the fresh one finds
        rgb = next(iter(photos.values()))
        assert [d.box for d in detector.detect(rgb)] == [d.box for d in backends["onnxruntime"].detect(rgb)]
    finally:
        caches.use_dir(None)
