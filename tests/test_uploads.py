"""Enrolment from uploaded bytes (the HTTP API's path), face crops, and a gallery's contents."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from faceledger.errors import NotFound, PermissionDenied, PolicyViolation
from faceledger.policy import Principal
from faceledger.store import FaceCrop

from .conftest import OPEN_FACES, gallery_files

ADMIN = Principal("root", "admin")


def test_uploads_go_through_the_same_store_dedup_and_ledger(engine):
    data = (OPEN_FACES / "ardern_2018.jpg").read_bytes()
    report = engine.enroll_uploads([("a.jpg", data), ("again.jpg", data), ("text.jpg", b"not an image")],
                                   gallery="g", subject="Jacinda Ardern", source="press office",
                                   legal_basis="consent", by=ADMIN)
    assert [(o.path, o.status) for o in report.outcomes] == [
        ("upload:again.jpg", "duplicate"), ("upload:a.jpg", "enrolled"), ("upload:text.jpg", "failed")]
    assert "not an image" in report.failures[0].error
    entry = engine.ledger.entries(action="enroll")[-1]["payload"]
    assert entry["method"] == "upload" and entry["source"] == "press office"
    # the same bytes again, later: a duplicate, like a file enrolled twice
    assert engine.enroll_uploads([("b.jpg", data)], gallery="g", subject="x", source="s", legal_basis="b",
                                 by=ADMIN).count("duplicate") == 1
    result = engine.search(OPEN_FACES / "ardern_2022.jpg", gallery="g", purpose="p", case="c")
    assert result.candidates[0].subject == "Jacinda Ardern" and result.candidates[0].image == "upload:a.jpg"


def test_upload_needs_provenance_and_the_enroller_role(engine):
    data = (OPEN_FACES / "ardern_2018.jpg").read_bytes()
    with pytest.raises(PolicyViolation, match="legal basis"):
        engine.enroll_uploads([("a.jpg", data)], gallery="g", subject="x", source="s", legal_basis="", by=ADMIN)
    with pytest.raises(PermissionDenied):
        engine.enroll_uploads([("a.jpg", data)], gallery="g", subject="x", source="s", legal_basis="b",
                              by=Principal("ana", "analyst"))


def test_face_crops_from_uploads_and_from_paths_and_who_may_see_them(engine):
    engine.enroll_uploads([("a.jpg", (OPEN_FACES / "ardern_2018.jpg").read_bytes())], gallery="g",
                          subject="Jacinda Ardern", source="s", legal_basis="b", by=ADMIN)
    engine.enroll(gallery_files()[:1], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    page = engine.gallery_images("g", by=ADMIN)
    assert page["total"] == 2 and {i["subject"] for i in page["images"]} == {"Jacinda Ardern",
                                                                              gallery_files()[0].parent.name}
    for image in page["images"]:
        jpeg = engine.face_crop(image["face_ids"][0], by=Principal("rey", "reviewer"))
        crop = Image.open(io.BytesIO(jpeg))
        assert crop.format == "JPEG" and 40 <= max(crop.size) <= 400
    with pytest.raises(PermissionDenied):
        engine.face_crop(page["images"][0]["face_ids"][0], by=Principal("eno", "enroller"))
    with pytest.raises(NotFound):
        engine.face_crop(999999, by=ADMIN)


def test_stored_crops_go_with_their_face_on_erasure(engine):
    engine.enroll_uploads([("a.jpg", (OPEN_FACES / "ardern_2018.jpg").read_bytes())], gallery="g",
                          subject="Jacinda Ardern", source="s", legal_basis="b", by=ADMIN)
    with engine.sessions() as s:
        assert len(s.execute(select(FaceCrop)).all()) == 1
    engine.erase(subject="Jacinda Ardern", gallery="g", reason="request 4", by=ADMIN)
    with engine.sessions() as s:
        assert not s.execute(select(FaceCrop)).all()
