"""detect -> align -> quality -> embed on the committed real photos (tests/data, see CREDITS.md)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceledger.detect import create_detector
from faceledger.detect.yunet import YuNetDetector
from faceledger.embed import create_embedder
from faceledger.embed.alignment import ARCFACE_112_V1, align
from faceledger.embed.sface import SFaceEmbedder
from faceledger.errors import FaceledgerError, ModelNotAvailable, MultipleFaces, NoFaceFound
from faceledger.imaging import load_image
from faceledger.models import SFACE_2021DEC, YUNET_2023MAR, locate
from faceledger.pipeline import FacePipeline

OPEN_FACES = {
    "macron_2014": "Emmanuel Macron",
    "macron_2025": "Emmanuel Macron",
    "ardern_2018": "Jacinda Ardern",
    "ardern_2022": "Jacinda Ardern",
    "obama_senate_portrait": "Barack Obama",
    "sunak_portrait": "Rishi Sunak",
    "eileen_collins_nasa": "Eileen Collins",
}

# Measured with yunet-2023mar + sface-2021dec: same person 0.612 (Macron 2014/2025), 0.763 (Ardern
# 2018/2022); the highest different-person score is 0.254 (macron_2025 vs sunak_portrait).
SAME_PERSON_MIN = 0.5
DIFFERENT_PERSON_MAX = 0.3


def _open_face_path(data_dir: Path, stem: str) -> Path:
    return next((data_dir / "open-faces").glob(f"{stem}.*"))


@pytest.fixture(scope="module")
def images(data_dir) -> dict[str, np.ndarray]:
    return {stem: load_image(_open_face_path(data_dir, stem)).rgb for stem in OPEN_FACES}


@pytest.fixture(scope="module")
def faces(images, pipeline):
    return {stem: pipeline.single_face(rgb, name=stem) for stem, rgb in images.items()}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# --- detection and embedding on real photos -------------------------------------------------------


def test_open_faces_each_give_one_usable_face(images, pipeline):
    for stem, rgb in images.items():
        found = pipeline.faces(rgb)
        assert len(found) == 1, stem
        face = found[0]
        assert face.quality.usable, (stem, face.quality.reasons)
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0]
        assert face.detection.landmarks.shape == (5, 2)
        assert face.detection.score >= 0.7


def test_same_person_scores_above_different_people(faces):
    same, different = [], []
    for a, b in itertools.combinations(OPEN_FACES, 2):
        score = _cos(faces[a].embedding, faces[b].embedding)
        (same if OPEN_FACES[a] == OPEN_FACES[b] else different).append((score, a, b))
    assert len(same) == 2 and len(different) == 19
    for score, a, b in same:
        assert score > SAME_PERSON_MIN, (a, b, score)
    for score, a, b in different:
        assert score < DIFFERENT_PERSON_MAX, (a, b, score)
    assert min(s for s, *_ in same) > max(s for s, *_ in different) + 0.2


def test_embeddings_are_unit_float32(faces):
    for face in faces.values():
        vector = face.embedding
        assert vector.dtype == np.float32
        assert vector.shape == (128,)
        assert np.isfinite(vector).all()
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_embedding_is_deterministic(images, pipeline):
    rgb = images["sunak_portrait"]
    first = pipeline.single_face(rgb, name="a")
    second = pipeline.single_face(rgb.copy(), name="b")
    np.testing.assert_array_equal(first.detection.landmarks, second.detection.landmarks)
    np.testing.assert_array_equal(first.embedding, second.embedding)


def test_faces_without_embedding(images, pipeline):
    found = pipeline.faces(images["obama_senate_portrait"], embed=False)
    assert len(found) == 1 and found[0].embedding is None and found[0].quality.usable


def test_pipeline_model_id(pipeline):
    assert pipeline.model_id == "sface-2021dec"
    assert pipeline.embedder.template_id == ARCFACE_112_V1.template_id


def test_lfw_sample_each_gives_one_usable_face(data_dir, pipeline):
    paths = sorted((data_dir / "lfw").rglob("*.jpg"))
    assert len(paths) == 9 * 4 + 3
    for path in paths:
        found = pipeline.faces(load_image(path).rgb)
        assert len(found) == 1 and found[0].quality.usable, (
            path.name,
            [f.quality.reasons for f in found],
        )


def test_lfw_sample_fourth_image_finds_its_person(data_dir, pipeline):
    """The demo's LFW set-up: enroll images 1-3, probe with the 4th; rank 1 must be the right person."""
    people = sorted(d for d in (data_dir / "lfw").iterdir() if len(list(d.glob("*.jpg"))) == 4)
    assert len(people) == 9
    gallery, names, probes = [], [], {}
    for person in people:
        paths = sorted(person.glob("*.jpg"))
        for path in paths[:3]:
            gallery.append(pipeline.single_face(load_image(path).rgb, name=path.name).embedding)
            names.append(person.name)
        probes[person.name] = pipeline.single_face(
            load_image(paths[3]).rgb, name=paths[3].name
        ).embedding
    matrix = np.stack(gallery)
    for name, probe in probes.items():
        scores = matrix @ probe
        assert names[int(scores.argmax())] == name
        own = max(s for s, n in zip(scores, names) if n == name)
        other = max(s for s, n in zip(scores, names) if n != name)
        # measured: the smallest gap is 0.25 (Arroyo, Blair)
        assert own > other + 0.1, (name, own, other)


# --- alignment ---------------------------------------------------------------------------------------


def test_alignment_matches_opencv_aligncrop(images, faces, pipeline):
    recognizer = cv2.FaceRecognizerSF.create(str(locate(SFACE_2021DEC)), "")
    for stem, face in faces.items():
        det = face.detection
        row = np.zeros(15, dtype=np.float32)
        row[:4] = (det.box[0], det.box[1], det.width, det.height)
        row[4:14] = det.landmarks.reshape(-1)
        row[14] = det.score
        bgr = cv2.cvtColor(images[stem], cv2.COLOR_RGB2BGR)
        reference = cv2.cvtColor(recognizer.alignCrop(bgr, row), cv2.COLOR_BGR2RGB)
        ours = align(images[stem], det.landmarks)
        assert ours.shape == reference.shape == (112, 112, 3)
        assert np.abs(ours.astype(np.float64) - reference).mean() < 1.0, stem


def test_alignment_puts_landmarks_on_template():
    # landmarks = the template turned 25 degrees, scaled 3x and moved: an exact similarity, so after
    # alignment bright dots drawn at the landmarks must sit on the template points
    angle = np.radians(25.0)
    rotation = 3.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_112_V1.as_array() @ rotation.T + np.array([250.0, 120.0])
    canvas = np.zeros((600, 600, 3), dtype=np.uint8)
    for x, y in landmarks:
        cv2.circle(canvas, (round(x), round(y)), 5, (255, 255, 255), -1)
    crop = align(canvas, landmarks)
    assert crop.shape == (112, 112, 3)
    for tx, ty in ARCFACE_112_V1.points:
        assert crop[round(ty), round(tx)].min() > 200
    assert crop.mean() < 20  # and nothing else is bright


def test_alignment_rejects_bad_landmarks(images):
    with pytest.raises(ValueError, match="5, 2"):
        align(images["macron_2014"], np.zeros((4, 2)))


# --- hard inputs -------------------------------------------------------------------------------------


def test_tight_crop_still_matches(images, faces, pipeline):
    for stem in ("obama_senate_portrait", "ardern_2018", "eileen_collins_nasa"):
        x0, y0, x1, y1 = (round(v) for v in faces[stem].box)
        crop = np.ascontiguousarray(images[stem][y0:y1, x0:x1])  # the face box: no background
        face = pipeline.single_face(crop, name=f"{stem}-crop")
        # measured 0.86 (Obama), 0.93 (Ardern), 0.93 (Collins)
        assert _cos(face.embedding, faces[stem].embedding) > 0.75, stem


def test_padding_retry_maps_back_to_original_coordinates(images, faces, monkeypatch):
    """When the first pass finds nothing, the padded retry's boxes and landmarks are in crop pixels."""
    x0, y0, x1, y1 = (round(v) for v in faces["sunak_portrait"].box)
    crop = np.ascontiguousarray(images["sunak_portrait"][y0:y1, x0:x1])
    detector = YuNetDetector()
    direct = detector.detect(crop)
    assert len(direct) == 1

    real = YuNetDetector._detect_scaled
    calls = []

    def miss_unpadded(self, rgb):
        calls.append(rgb.shape)
        return [] if rgb.shape == crop.shape else real(self, rgb)

    monkeypatch.setattr(YuNetDetector, "_detect_scaled", miss_unpadded)
    retried = detector.detect(crop)
    assert len(calls) == 2 and calls[1][0] > crop.shape[0]  # second call saw the padded image
    assert len(retried) == 1
    # the detector sees more context on the padded copy, so landmarks move a little (measured <= 6 px)
    np.testing.assert_allclose(retried[0].landmarks, direct[0].landmarks, atol=0.05 * crop.shape[1])
    bx0, by0, bx1, by1 = retried[0].box
    assert 0 <= bx0 < bx1 <= crop.shape[1] and 0 <= by0 < by1 <= crop.shape[0]


def _side_by_side(left: np.ndarray, right: np.ndarray, left_h: int, right_h: int) -> np.ndarray:
    def resize(rgb, height):
        width = round(rgb.shape[1] * height / rgb.shape[0])
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)

    a, b = resize(left, left_h), resize(right, right_h)
    height = max(left_h, right_h)
    b = cv2.copyMakeBorder(b, 0, height - right_h, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    a = cv2.copyMakeBorder(a, 0, height - left_h, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    return np.ascontiguousarray(np.hstack([a, b]))


def test_group_photo(images, faces, pipeline):
    group = _side_by_side(images["sunak_portrait"], images["obama_senate_portrait"], 500, 600)
    found = pipeline.faces(group)
    usable = [f for f in found if f.quality.usable]
    assert len(usable) >= 2
    assert found[0].detection.area >= found[1].detection.area  # largest first

    with pytest.raises(MultipleFaces, match="2 .*faces"):
        pipeline.single_face(group, name="group.jpg", on_multiple="refuse")

    largest = pipeline.single_face(group, name="group.jpg", on_multiple="largest")
    # single_face detects on a coarse copy and refines the chosen face on its region at its alignment
    # scale, so its box is the full pass's largest face detected at another scale: the same face (boxes
    # overlap, IoU measured 0.84), not the same pixels
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = largest.box, usable[0].box
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    assert inter / (largest.detection.area + usable[0].detection.area - inter) > 0.75
    assert largest.box[0] > group.shape[1] / 2  # Obama, on the right, is shown larger
    assert _cos(largest.embedding, faces["obama_senate_portrait"].embedding) > 0.6
    assert _cos(largest.embedding, faces["sunak_portrait"].embedding) < 0.3

    with pytest.raises(ValueError, match="on_multiple"):
        pipeline.single_face(group, name="group.jpg", on_multiple="first")


@pytest.mark.parametrize("kind", ["noise", "blank"])
def test_no_face(pipeline, kind):
    rng = np.random.default_rng(7)
    if kind == "noise":
        rgb = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    else:
        rgb = np.full((480, 640, 3), 200, dtype=np.uint8)
    assert pipeline.faces(rgb) == []
    with pytest.raises(NoFaceFound, match="no face found"):
        pipeline.single_face(rgb, name=f"{kind}.png")


def test_blurred_face_is_unusable(images, pipeline):
    blurred = cv2.GaussianBlur(images["obama_senate_portrait"], (0, 0), sigmaX=10)
    found = pipeline.faces(blurred)
    assert len(found) == 1  # still detected (measured sharpness 10, limit 25) ...
    assert not found[0].quality.usable  # ... but refused
    assert any("blurry" in reason for reason in found[0].quality.reasons)
    with pytest.raises(NoFaceFound, match="blurry"):
        pipeline.single_face(blurred, name="blurred.jpg")


def test_tiny_face_is_unusable(images, faces, pipeline):
    scale = 25.0 / faces["obama_senate_portrait"].quality.face_size
    small = cv2.resize(
        images["obama_senate_portrait"], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
    )
    found = pipeline.faces(small)
    assert len(found) == 1
    report = found[0].quality
    assert 15 < report.face_size < 35
    assert not report.usable
    assert any("too small" in reason for reason in report.reasons)


def test_quality_report_as_dict(faces):
    report = faces["ardern_2018"].quality.as_dict()
    assert report["usable"] is True and report["reasons"] == []
    assert abs(report["yaw"]) < 20 and abs(report["roll"]) < 20 and abs(report["pitch"]) < 25


# --- models and registries ---------------------------------------------------------------------------


def test_model_with_wrong_checksum(tmp_path):
    (tmp_path / YUNET_2023MAR.filename).write_bytes(b"not an onnx model")
    with pytest.raises(ModelNotAvailable) as info:
        locate(YUNET_2023MAR, tmp_path)
    message = str(info.value)
    assert "sha256" in message and "pip install" in message


def test_model_missing(tmp_path):
    with pytest.raises(ModelNotAvailable, match="missing"):
        locate(SFACE_2021DEC, tmp_path)


def test_pipeline_with_empty_model_dir_fails_on_load(tmp_path, settings_factory):
    # constructing loads nothing; load() finds the files missing
    pipe = FacePipeline.from_settings(settings_factory(model_dir=tmp_path))
    with pytest.raises(ModelNotAvailable, match="missing"):
        pipe.load()


def test_installed_models_verify():
    assert locate(YUNET_2023MAR).is_file()
    assert locate(SFACE_2021DEC).is_file()


def test_unknown_backends_are_refused():
    with pytest.raises(FaceledgerError, match="yunet"):
        create_detector("nope")
    with pytest.raises(FaceledgerError, match="sface"):
        create_embedder("nope")


def test_flip_average(images, faces):
    embedder = SFaceEmbedder(flip_average=True)
    assert embedder.model_id == "sface-2021dec+flip"
    assert SFaceEmbedder().model_id == "sface-2021dec"
    plain = faces["macron_2014"].embedding
    flipped = embedder.embed(images["macron_2014"], faces["macron_2014"].detection.landmarks)
    assert flipped.dtype == np.float32 and flipped.shape == (128,)
    assert abs(float(np.linalg.norm(flipped)) - 1.0) < 1e-5
    assert not np.allclose(flipped, plain)
    assert 0.9 < _cos(flipped, plain) < 0.9999  # measured 0.994
