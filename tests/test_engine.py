"""The engine end to end on the committed gallery: enrol, search (open-set), verify, resume, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from faceledger.errors import (
    AlreadyExists, ImageError, ImageTooLarge, IndexMismatch, MultipleFaces, NoFaceFound, NotFound,
    PolicyViolation,
)
from faceledger.store import FaceRecord, ImageRecord

from .conftest import LFW_DIR, OPEN_FACES, gallery_files, held_out_probes, never_enrolled, open_test_engine

REPO = Path(__file__).resolve().parents[1]


def test_known_people_are_found_at_rank_one(enrolled):
    for probe in held_out_probes():
        result = enrolled.search(probe, gallery="g", purpose="test", case="T-1")
        assert result.decision == "match", probe.name
        top = result.candidates[0]
        assert top.subject == probe.parent.name
        assert top.score >= result.threshold
        assert 0 < top.false_match_rate < 1e-3
        assert [c.rank for c in result.candidates] == list(range(1, len(result.candidates) + 1))
        assert len({c.subject for c in result.candidates}) == len(result.candidates)  # one row per subject


def test_people_not_enrolled_get_no_match(enrolled):
    for probe in never_enrolled() + [OPEN_FACES / "sunak_portrait.jpg", OPEN_FACES / "obama_senate_portrait.jpg"]:
        result = enrolled.search(probe, gallery="g", purpose="test", case="T-2")
        assert result.decision == "no_match", (probe.name, result.candidates)
        assert result.candidates == ()


def test_search_json_shape_and_threshold(enrolled):
    result = enrolled.search(held_out_probes()[0], gallery="g", purpose="test", case="T-3", top_k=3)
    body = result.as_json()
    assert set(body) >= {"decision", "threshold", "gallery_size", "candidates", "ledger_entry"}
    assert body["gallery_size"] == 27
    assert set(body["candidates"][0]) >= {"subject", "score", "false_match_rate", "image"}
    # the threshold holds the target FPIR at this size: N * FMR(threshold) <= target (up to binning)
    fmr = enrolled.calibration.fmr(result.threshold).fmr
    assert 1 - (1 - fmr) ** 27 <= result.target_fpir * 1.05


def test_threshold_rises_with_gallery_size(enrolled):
    small = enrolled.calibration.threshold_for_fpir(0.01, 27).score
    large = enrolled.calibration.threshold_for_fpir(0.01, 1_000_000).score
    assert large > small


def test_every_search_is_ledgered_with_its_purpose(enrolled):
    before = enrolled.audit_verify().entries
    result = enrolled.search(never_enrolled()[0], gallery="g", purpose="missing person", case="MP-7")
    entries = enrolled.ledger.entries(action="search")
    last = entries[-1]
    assert last["entry_id"] == result.ledger_entry
    assert last["payload"]["purpose"] == "missing person" and last["payload"]["case"] == "MP-7"
    assert last["payload"]["probe_sha256"] == result.probe_sha256
    assert last["payload"]["gallery_size"] == 27 and last["payload"]["model_id"] == "sface-2021dec"
    assert last["actor"] == "test-analyst"
    check = enrolled.audit_verify()
    assert check.ok and check.entries == before + 1


def test_verify_same_and_different(enrolled):
    same = enrolled.verify(OPEN_FACES / "ardern_2018.jpg", OPEN_FACES / "ardern_2022.jpg", purpose="p", case="c")
    assert same.decision == "same" and same.score > same.threshold
    diff = enrolled.verify(OPEN_FACES / "ardern_2018.jpg", OPEN_FACES / "sunak_portrait.jpg", purpose="p", case="c")
    assert diff.decision == "different" and diff.false_match_rate > same.false_match_rate
    assert enrolled.ledger.entries(action="verify")[-1]["entry_id"] == diff.ledger_entry


def test_purpose_and_case_are_required(enrolled):
    probe = held_out_probes()[0]
    with pytest.raises(PolicyViolation, match="purpose"):
        enrolled.search(probe, gallery="g", purpose="  ", case="c")
    with pytest.raises(PolicyViolation, match="case"):
        enrolled.search(probe, gallery="g", purpose="p", case=None)
    with pytest.raises(PolicyViolation, match="purpose"):
        enrolled.verify(probe, probe, purpose=None, case="c")


def test_unknown_gallery_is_a_clear_error(enrolled):
    with pytest.raises(NotFound, match="unknown gallery 'nope'.*known galleries: g"):
        enrolled.search(held_out_probes()[0], gallery="nope", purpose="p", case="c")


def test_probe_without_face_fails_clearly_and_is_ledgered(enrolled, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 300), (200, 190, 180)).save(blank)
    with pytest.raises(NoFaceFound):
        enrolled.search(blank, gallery="g", purpose="p", case="c")
    last = enrolled.ledger.entries(action="search")[-1]
    assert last["payload"]["decision"] == "failed" and "no face" in last["payload"]["error"]


def test_reenrolling_is_a_no_op(enrolled):
    report = enrolled.enroll(gallery_files()[:5], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    assert report.count("duplicate") == 5 and report.count("enrolled") == 0
    assert enrolled.gallery_info("g")["images"] == 27


def test_provenance_is_required_and_stored(engine):
    image = gallery_files()[0]
    with pytest.raises(PolicyViolation, match="legal basis"):
        engine.enroll([image], gallery="g", subject="x", source="s", legal_basis="")
    with pytest.raises(PolicyViolation, match="source"):
        engine.enroll([image], gallery="g", subject="x", source=None, legal_basis="consent")
    engine.enroll([image], gallery="g", subject="x", source="HR photo", legal_basis="consent")
    with engine.sessions() as s:
        record = s.execute(select(ImageRecord)).scalar_one()
        face = s.execute(select(FaceRecord)).scalar_one()
    assert (record.source, record.legal_basis, record.enrolled_by) == ("HR photo", "consent", "test-analyst")
    assert face.model_id == "sface-2021dec" and face.template_id == "arcface-5pt-112-v1"
    assert np.frombuffer(face.embedding, np.float32).shape == (128,)


def test_retention_date_comes_from_the_gallery(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    eng.create_gallery("short", retain_days=30)
    eng.enroll([gallery_files()[0]], gallery="short", subject="x", source="s", legal_basis="b")
    with eng.sessions() as s:
        record = s.execute(select(ImageRecord)).scalar_one()
    days = (record.retain_until.replace(tzinfo=None) - record.enrolled_at.replace(tzinfo=None)).days
    assert days == 30
    eng.close()


def test_duplicate_gallery_is_refused(engine):
    with pytest.raises(AlreadyExists):
        engine.create_gallery("g")


def test_bad_files_fail_one_by_one_and_lose_nothing(engine, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(gallery_files()[1].read_bytes()[:2000])
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)
    good = gallery_files()[:2]
    report = engine.enroll([text, truncated, huge, *good], gallery="g", subject="x", source="s", legal_basis="b")
    errors = {Path(f.path).name: f.error for f in report.failures}
    assert "not an image" in errors["notes.jpg"]
    assert "corrupt or truncated" in errors["cut.jpg"]
    assert "pixel" in errors["huge.png"]
    assert report.count("enrolled") == 2
    assert engine.gallery_info("g")["images"] == 2


def test_bad_probe_images_raise_image_errors(engine, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        engine.search(text, gallery="g", purpose="p", case="c")
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)
    with pytest.raises(ImageTooLarge):
        engine.verify(huge, gallery_files()[0], purpose="p", case="c")


def _group_photo(tmp_path: Path) -> Path:
    a = Image.open(OPEN_FACES / "macron_2025.jpg").convert("RGB").resize((360, 450))
    b = Image.open(OPEN_FACES / "ardern_2022.jpg").convert("RGB").resize((340, 450))
    group = Image.new("RGB", (700, 450))
    group.paste(a, (0, 0))
    group.paste(b, (360, 0))
    path = tmp_path / "group.jpg"
    group.save(path)
    return path


def test_group_photo_is_refused_unless_asked(engine, tmp_path):
    group = _group_photo(tmp_path)
    report = engine.enroll([group], gallery="g", subject="someone", source="s", legal_basis="b")
    assert report.count("failed") == 1 and "faces of similar size" in report.failures[0].error
    report = engine.enroll([group], gallery="g", subject="someone", source="s", legal_basis="b",
                           on_multiple="largest")
    assert report.count("enrolled") == 1 and report.outcomes[-1].faces == 1


def test_allow_multiple_enrols_each_face_as_its_own_subject(engine, tmp_path):
    report = engine.enroll([_group_photo(tmp_path)], gallery="g", subject="party", source="s", legal_basis="b",
                           on_multiple="all")
    assert report.outcomes[0].faces == 2
    info = engine.gallery_info("g")
    assert (info["subjects"], info["images"], info["faces"]) == (2, 1, 2)
    found = engine.search(OPEN_FACES / "ardern_2018.jpg", gallery="g", purpose="p", case="c")
    assert found.decision == "match"


def test_group_photo_probe_is_refused(enrolled, tmp_path):
    with pytest.raises(MultipleFaces):
        enrolled.search(_group_photo(tmp_path), gallery="g", purpose="p", case="c")


def test_missing_index_is_rebuilt_from_the_store(tmp_path):
    home = tmp_path / "h"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    eng.close()
    for path in (home / "index").iterdir():
        path.unlink()
    eng = open_test_engine(home)
    result = eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c")
    assert result.gallery_size == 6 and result.decision == "match"
    assert (home / "index" / "gallery-1.faiss").is_file()
    eng.close()


def test_stale_index_is_rebuilt(tmp_path):
    home = tmp_path / "h"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:3], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    saved = (home / "index" / "gallery-1.faiss").read_bytes(), (home / "index" / "gallery-1.json").read_text()
    eng.enroll(gallery_files()[3:9], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    eng.close()
    (home / "index" / "gallery-1.faiss").write_bytes(saved[0])  # an index from before the second enrolment
    (home / "index" / "gallery-1.json").write_text(saved[1])
    eng = open_test_engine(home)
    assert eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c").gallery_size == 9
    eng.close()


def test_index_from_another_model_is_refused(tmp_path):
    home = tmp_path / "h"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:3], gallery="g", subject_from_folder=True, source="s", legal_basis="b")
    eng.close()
    meta = home / "index" / "gallery-1.json"
    meta.write_text(meta.read_text().replace("sface-2021dec", "other-model"))
    eng = open_test_engine(home)
    eng.indexes.clear()
    with pytest.raises(IndexMismatch, match="reindex"):
        eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c")
    eng.reindex()
    assert eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c").gallery_size == 3
    eng.close()


def test_gallery_of_another_model_is_refused(tmp_path):
    home = tmp_path / "h"
    open_test_engine(home).create_gallery("g")
    flipped = open_test_engine(home, flip_average=True)
    with pytest.raises(IndexMismatch, match="sface-2021dec"):
        flipped.search(held_out_probes()[0], gallery="g", purpose="p", case="c")


def test_two_workers_give_the_same_embeddings_as_one(tmp_path):
    files = gallery_files()[:6]
    one = open_test_engine(tmp_path / "one")
    two = open_test_engine(tmp_path / "two")
    for eng, workers in ((one, 1), (two, 2)):
        eng.create_gallery("g")
        eng.enroll(files, gallery="g", subject_from_folder=True, source="s", legal_basis="b", workers=workers)
    with one.sessions() as s1, two.sessions() as s2:
        a = [r.embedding for r in s1.execute(select(FaceRecord).order_by(FaceRecord.id)).scalars()]
        b = [r.embedding for r in s2.execute(select(FaceRecord).order_by(FaceRecord.id)).scalars()]
    assert len(a) == 6 and a == b


def test_killed_enrolment_resumes_without_duplicates(tmp_path):
    """Kill -9 an enrolment mid-way (batches of 2), rerun it, and find every image exactly once."""
    home = tmp_path / "h"
    env = {**os.environ, "FACELEDGER_HOME": str(home), "FACELEDGER_ENROLL_BATCH": "2"}
    cli = [sys.executable, "-m", "faceledger.cli"]
    subprocess.run([*cli, "gallery", "create", "g"], env=env, check=True, capture_output=True)
    args = [*cli, "enroll", str(LFW_DIR), "--gallery", "g", "--subject-from-folder", "--source", "LFW",
            "--legal-basis", "research"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = home / "faceledger.db"
    deadline = time.time() + 60
    stored = 0
    while time.time() < deadline and stored < 4:
        time.sleep(0.05)
        if db.exists():
            with sqlite3.connect(db) as con:
                try:
                    stored = con.execute("select count(*) from images").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0
    process.send_signal(signal.SIGKILL)
    process.wait()
    total = len(list(LFW_DIR.rglob("*.jpg")))
    assert 4 <= stored < total, "the kill must land mid-way for this test to mean anything"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as con:
        images, distinct = con.execute("select count(*), count(distinct sha256) from images").fetchone()
        faces = con.execute("select count(*) from faces").fetchone()[0]
    assert images == distinct == faces == total
    eng = open_test_engine(home)
    assert eng.audit_verify().ok
    assert eng.search(held_out_probes()[0], gallery="g", purpose="p", case="c").gallery_size == total
    eng.close()


def test_rank_and_precomputed_embeddings_use_the_same_store_and_index(engine, enrolled):
    from faceledger.enrollment import PrecomputedFace

    with enrolled.sessions() as s:
        rows = s.execute(select(FaceRecord.embedding, ImageRecord.sha256, ImageRecord.name)
                         .join(ImageRecord, FaceRecord.image_id == ImageRecord.id)).all()
    entries = [PrecomputedFace(subject=Path(name).parent.name, sha256=sha, name=name,
                               embedding=np.frombuffer(vec, np.float32), model_id="sface-2021dec")
               for vec, sha, name in rows]
    report = engine.enroll_embeddings(entries, gallery="g", source="copy of g", legal_basis="test")
    assert report.count("enrolled") == 27
    assert engine.enroll_embeddings(entries[:3], gallery="g", source="s", legal_basis="b").count("duplicate") == 3
    probe = held_out_probes()[2]
    from_images = enrolled.search(probe, gallery="g", purpose="p", case="c")
    from_vectors = engine.search(probe, gallery="g", purpose="p", case="c")
    assert [(c.subject, round(c.score, 5)) for c in from_images.candidates] == \
           [(c.subject, round(c.score, 5)) for c in from_vectors.candidates]
    vector = np.frombuffer(rows[0][0], np.float32)
    top = engine.rank("g", np.stack([vector, vector]), top_k=3)
    assert len(top) == 2 and top[0][0].score == pytest.approx(1.0, abs=1e-5) and len(top[0]) == 3
    wrong = [PrecomputedFace(subject="x", sha256="0" * 64, name="x", embedding=vector, model_id="other")]
    with pytest.raises(IndexMismatch):
        engine.enroll_embeddings(wrong, gallery="g", source="s", legal_basis="b")


def test_a_subject_with_many_faces_cannot_crowd_out_the_others(engine):
    from faceledger.enrollment import PrecomputedFace

    rng = np.random.default_rng(3)
    base = rng.normal(size=128).astype(np.float32)
    entries = []
    for i in range(120):  # one subject, 120 faces all closer to the probe than anyone else
        vector = base + 0.05 * rng.normal(size=128).astype(np.float32)
        entries.append(PrecomputedFace(subject="crowd", sha256=f"{i:064x}", name=f"crowd-{i}",
                                       embedding=vector, model_id="sface-2021dec"))
    for j in range(5):
        vector = base + 2.0 * rng.normal(size=128).astype(np.float32)
        entries.append(PrecomputedFace(subject=f"other-{j}", sha256=f"{1000 + j:064x}", name=f"other-{j}",
                                       embedding=vector, model_id="sface-2021dec"))
    engine.enroll_embeddings(entries, gallery="g", source="synthetic", legal_basis="test")
    top = engine.rank("g", base / np.linalg.norm(base), top_k=4)[0]
    assert [h.subject for h in top][0] == "crowd"
    assert len(top) == 4 and len({h.subject for h in top}) == 4
