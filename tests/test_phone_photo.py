"""A 12 MP phone photo is searched from a reduced-scale decode: same decisions and scores as from the
full-resolution image and the small original, and full resolution is never decoded."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace

import pytest
from PIL import Image

from faceledger.config import Settings
from faceledger.enrollment import load_with
from faceledger.imaging import load_image

from . import hostile
from .test_pipeline import (  # noqa: F401 - the small originals' fixtures
    DIFFERENT_PERSON_MAX,
    OPEN_FACES,
    SAME_PERSON_MIN,
    _open_face_path,
    faces,
    images,
)

FULL_RES_TOLERANCE = 0.03
"""Largest score difference between the reduced-scale and the full-resolution path on the same frame
(measured 0.026: the refined landmarks differ from the full pass's by under 1 px at detection scale)."""


@pytest.fixture(scope="module")
def phone_photos(data_dir) -> dict[str, bytes]:
    """Each committed portrait upscaled into a 4032x3024 JPEG (quality 92), its face about 400-700 px."""
    photos = {}
    for index, stem in enumerate(OPEN_FACES):
        portrait = Image.open(_open_face_path(data_dir, stem)).convert("RGB")
        frame = hostile.phone_frame(portrait, height=1100 + 120 * index, at=(0.35 + 0.05 * index, 0.5))
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=92)
        photos[stem] = buffer.getvalue()
    return photos


@pytest.fixture(scope="module")
def reduced(phone_photos, pipeline):
    settings = Settings()
    out = {}
    for stem, data in phone_photos.items():
        image = load_with(settings, data, name=stem)
        out[stem] = (image, pipeline.single_face(image, name=stem))
    return out


def test_reduced_scale_path_never_decodes_full_resolution(reduced):
    for stem, (image, _) in reduced.items():
        assert (image.width, image.height) == (4032, 3024)
        assert image.base_scale <= 0.5, stem
        finer = image.__dict__.get("_finer")
        assert finer is None or finer[1] <= 0.5, stem
        assert "rgb" not in image.__dict__, stem  # the full-resolution array was never made


def test_scores_match_the_full_resolution_path(reduced, phone_photos, pipeline):
    full_pipeline = replace(pipeline, coarse_side=0)  # detect at detect_max_side from the full decode
    full = {stem: full_pipeline.single_face(load_image(data).rgb, name=stem).embedding
            for stem, data in phone_photos.items()}
    for a, b in itertools.combinations(OPEN_FACES, 2):
        fast = float(reduced[a][1].embedding @ reduced[b][1].embedding)
        slow = float(full[a] @ full[b])
        assert abs(fast - slow) <= FULL_RES_TOLERANCE, (a, b, fast, slow)


def test_same_decisions_as_the_small_originals(reduced, faces):  # noqa: F811 - the fixture
    for a, b in itertools.combinations(OPEN_FACES, 2):
        big = float(reduced[a][1].embedding @ reduced[b][1].embedding)
        small = float(faces[a].embedding @ faces[b].embedding)
        if OPEN_FACES[a] == OPEN_FACES[b]:
            assert big > SAME_PERSON_MIN and small > SAME_PERSON_MIN, (a, b, big, small)
        else:
            assert big < DIFFERENT_PERSON_MAX and small < DIFFERENT_PERSON_MAX, (a, b, big, small)
    for stem in OPEN_FACES:  # the same face in the big frame and in the small original
        assert float(reduced[stem][1].embedding @ faces[stem].embedding) > 0.9, stem
