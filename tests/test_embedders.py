"""One contract for every embedder backend (OpenCV DNN and ONNX Runtime), on the committed photos."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from faceledger.detect import create_detector
from faceledger.embed import EMBEDDERS, create_embedder
from faceledger.embed.alignment import ARCFACE_112_V1
from faceledger.errors import FaceledgerError, ModelNotAvailable
from faceledger.imaging import load_image
from faceledger.models import SFACE_2021DEC, file_sha256, locate
from faceledger.pipeline import FacePipeline

BACKENDS = sorted(EMBEDDERS["sface"])
PEOPLE = {
    "macron_2014": "Emmanuel Macron", "macron_2025": "Emmanuel Macron",
    "ardern_2018": "Jacinda Ardern", "ardern_2022": "Jacinda Ardern",
    "obama_senate_portrait": "Barack Obama", "sunak_portrait": "Rishi Sunak",
    "eileen_collins_nasa": "Eileen Collins",
}


@pytest.fixture(scope="module")
def crops(data_dir) -> dict[str, np.ndarray]:
    """The aligned crop of the one face in each open-faces photo."""
    detector = create_detector("yunet")
    found = {}
    for stem in PEOPLE:
        rgb = load_image(next((data_dir / "open-faces").glob(f"{stem}.*"))).rgb
        (detection,) = detector.detect(rgb)
        found[stem] = create_embedder("sface", backend="opencv").aligned_crop(rgb, detection.landmarks)
    return found


@pytest.fixture(scope="module", params=BACKENDS)
def embedder(request):
    e = create_embedder("sface", backend=request.param)
    e.load()
    return e


@pytest.fixture(scope="module")
def vectors(embedder, crops) -> dict[str, np.ndarray]:
    return {stem: embedder.embed_aligned(crop) for stem, crop in crops.items()}


# --- the contract -----------------------------------------------------------------------------------


def test_identity(embedder):
    assert embedder.name == "sface" and embedder.backend in BACKENDS
    assert embedder.model_id == "sface-2021dec"
    assert embedder.template_id == ARCFACE_112_V1.template_id
    assert embedder.dim == 128


def test_vectors_are_unit_float32(vectors):
    for vector in vectors.values():
        assert vector.dtype == np.float32 and vector.shape == (128,)
        assert np.isfinite(vector).all()
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_same_person_above_different_people(vectors):
    same, different = [], []
    for a, b in itertools.combinations(PEOPLE, 2):
        (same if PEOPLE[a] == PEOPLE[b] else different).append(float(vectors[a] @ vectors[b]))
    assert len(same) == 2 and min(same) > 0.5
    assert max(different) < 0.3


def test_deterministic_and_load_is_idempotent(embedder, crops):
    crop = crops["sunak_portrait"]
    first = embedder.embed_aligned(crop)
    embedder.load()
    np.testing.assert_array_equal(first, embedder.embed_aligned(crop.copy()))


def test_batch_matches_one_by_one(embedder, crops, vectors):
    stems = list(PEOPLE)
    batch = embedder.embed_aligned_batch([crops[s] for s in stems])
    assert batch.shape == (len(stems), 128) and batch.dtype == np.float32
    for row, stem in zip(batch, stems):
        assert float(row @ vectors[stem]) > 0.99999, stem
    assert embedder.embed_aligned_batch([]).shape == (0, 128)


def test_embed_aligns_then_embeds(embedder, data_dir, vectors):
    rgb = load_image(next((data_dir / "open-faces").glob("ardern_2018.*"))).rgb
    (detection,) = create_detector("yunet").detect(rgb)
    assert float(embedder.embed(rgb, detection.landmarks) @ vectors["ardern_2018"]) > 0.99999


def test_flip_average(embedder, crops, vectors):
    flipped = create_embedder("sface", backend=embedder.backend, flip_average=True)
    assert flipped.model_id == "sface-2021dec+flip"
    vector = flipped.embed_aligned(crops["macron_2014"])
    assert vector.shape == (128,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert 0.9 < float(vector @ vectors["macron_2014"]) < 0.9999  # measured 0.994


def test_constructing_loads_nothing(tmp_path):
    create_embedder("sface", backend=BACKENDS[0], model_dir=tmp_path)  # no file there, no error yet


@pytest.mark.parametrize("backend", BACKENDS)
def test_tampered_model_file_is_refused(backend, tmp_path):
    tampered = tmp_path / SFACE_2021DEC.filename
    shutil.copyfile(locate(SFACE_2021DEC), tampered)
    with open(tampered, "r+b") as fh:  # one bit flipped near the end of the file
        fh.seek(-16, 2)
        byte = fh.read(1)
        fh.seek(-16, 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelNotAvailable, match="sha256"):
        create_embedder("sface", backend=backend, model_dir=tmp_path).load()


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_model_file(backend, tmp_path):
    with pytest.raises(ModelNotAvailable, match="missing"):
        create_embedder("sface", backend=backend, model_dir=tmp_path).load()


# --- the two backends against each other ------------------------------------------------------------


def test_backends_give_the_same_vectors(crops):
    """Same model, same function: ONNX Runtime agrees with OpenCV to float rounding (2,000 LFW faces in
    benchmarks/embed_backends.py), which is why both carry the model id sface-2021dec."""
    opencv, ort = (create_embedder("sface", backend=b) for b in ("opencv", "onnxruntime"))
    for stem, crop in crops.items():
        a, b = opencv.embed_aligned(crop), ort.embed_aligned(crop)
        assert float(a @ b) > 0.99999, stem
        assert float(np.abs(a - b).max()) < 1e-4, stem


def test_shipped_model_file_is_not_modified():
    before = file_sha256(locate(SFACE_2021DEC))
    create_embedder("sface", backend="onnxruntime").load()
    assert before == SFACE_2021DEC.sha256 == file_sha256(locate(SFACE_2021DEC))


def test_onnxruntime_refuses_a_crop_of_the_wrong_shape():
    with pytest.raises(ValueError, match="112"):
        create_embedder("sface", backend="onnxruntime").embed_aligned(np.zeros((100, 100, 3), np.uint8))


# --- the registry and the setting -------------------------------------------------------------------


def test_unknown_backend_is_refused():
    with pytest.raises(FaceledgerError, match="unknown backend 'tensorrt'.*onnxruntime, opencv"):
        create_embedder("sface", backend="tensorrt")


def test_setting_picks_the_backend(settings_factory):
    assert FacePipeline.from_settings(settings_factory()).embedder.backend == "onnxruntime"
    assert FacePipeline.from_settings(settings_factory(embed_backend="opencv")).embedder.backend == "opencv"
    with pytest.raises(FaceledgerError, match="unknown backend"):
        FacePipeline.from_settings(settings_factory(embed_backend="nope"))
