"""The engine's open-set calibration belongs to the gallery: its own cross-subject sample, combined with
the packaged one; several galleries in one search; duplicates as a finding; the CLI and the ledger."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceledger.enrollment import PrecomputedFace
from faceledger.errors import PolicyViolation

from .conftest import OPEN_FACES, gallery_files, open_test_engine


def synthetic_faces(n_subjects: int, per_subject: int, dim: int = 128, seed: int = 0, spread: float = 0.35):
    """Unit vectors: each subject a random direction, its faces that direction plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_subjects, dim))
    faces = []
    for s, centre in enumerate(centres):
        for k in range(per_subject):
            v = centre / np.linalg.norm(centre) + spread * rng.normal(size=dim) / np.sqrt(dim)
            faces.append((f"person-{seed}-{s}", (v / np.linalg.norm(v)).astype(np.float32), f"{seed}-{s}-{k}"))
    return faces


def precomputed(engine, faces):
    return [PrecomputedFace(name=f"synthetic:{key}", subject=subject, embedding=vector, model_id=engine.model_id,
                            sha256=key.rjust(64, "0")) for subject, vector, key in faces]


@pytest.fixture
def eng(tmp_path):
    engine = open_test_engine(tmp_path / "home")
    yield engine
    engine.close()


def test_a_small_gallery_falls_back_to_the_packaged_calibration_and_says_so(eng):
    eng.create_gallery("two")
    eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="two", subject="A", source="s", legal_basis="b")
    eng.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="two", subject="B", source="s", legal_basis="b")
    info = eng.calibration_info("two")
    assert info["source"] == "packaged" and "too few" in info["gallery_note"]
    result = eng.search(OPEN_FACES / "ardern_2022.jpg", gallery="two", purpose="p", case="c")
    assert result.calibration_source == "packaged" and "Packaged calibration only" in result.threshold_explanation


def test_a_look_alike_population_raises_the_threshold(eng):
    """A gallery whose people score higher among themselves than LFW's must not inherit LFW's promise."""
    eng.create_gallery("lfw-like")
    eng.create_gallery("look-alike")
    # one shared direction makes every pair of subjects similar (one camera, one lab, one family)
    alike = [(s, (0.75 * np.ones(128) / np.sqrt(128) + 0.66 * v).astype(np.float32), k)
             for s, v, k in synthetic_faces(120, 2, seed=2)]
    alike = [(s, (v / np.linalg.norm(v)).astype(np.float32), k) for s, v, k in alike]
    eng.enroll_embeddings(precomputed(eng, synthetic_faces(120, 2, seed=1)), gallery="lfw-like", source="s",
                          legal_basis="b")
    eng.enroll_embeddings(precomputed(eng, alike), gallery="look-alike", source="s", legal_basis="b")
    plain, shifted = eng.calibration_info("lfw-like"), eng.calibration_info("look-alike")
    assert shifted["source"] == "combined"
    at = {r["target_fpir"]: r for r in shifted["thresholds"]}
    base = {r["target_fpir"]: r for r in plain["thresholds"]}
    assert at[0.01]["threshold"] > base[0.01]["threshold"] + 0.05
    assert at[0.01]["binding"] == "gallery"
    # the payload says how the gallery moved the threshold (keys a calibration plot reads)
    assert shifted["combine"] == "shift" and shifted["gallery_shift"]["shift"] > 0.05
    assert shifted["gallery_shift"]["gallery_score"] > shifted["gallery_shift"]["packaged_score"]
    assert all({"expected_pairs", "pairs_seen", "p_value", "consistent"} <= set(c) for c in shifted["gallery_shape_check"])


def test_erased_subjects_leave_the_gallery_sample(eng):
    eng.create_gallery("g")
    eng.enroll_embeddings(precomputed(eng, synthetic_faces(60, 2, seed=3)), gallery="g", source="s",
                          legal_basis="b")
    before = eng.calibration_info("g")["gallery_sample"]
    eng.erase(subject="person-3-0", gallery="g", reason="request 1")
    after = eng.calibration_info("g")["gallery_sample"]
    assert (before["subjects"], after["subjects"]) == (60, 59) and after["faces"] == before["faces"] - 2


def test_several_galleries_in_one_search(eng):
    eng.create_gallery("watch", purposes=["fraud"])
    eng.create_gallery("visa", purposes=["border"])
    eng.create_gallery("staff")
    eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="watch", subject="Ardern", source="s", legal_basis="b")
    eng.enroll(gallery_files()[:6], gallery="staff", subject_from_folder=True, source="s", legal_basis="b")
    result = eng.search(OPEN_FACES / "ardern_2022.jpg", gallery=["watch", "visa", "staff"], purpose="fraud",
                        case="c-1")
    assert result.galleries == ("watch", "staff") and [r["gallery"] for r in result.refused] == ["visa"]
    assert result.gallery_size == 1 + 6  # every face compared counts in the FPIR arithmetic
    assert result.candidates[0].subject == "Ardern" and result.candidates[0].gallery == "watch"
    single = eng.search(OPEN_FACES / "ardern_2022.jpg", gallery="watch", purpose="fraud", case="c-2")
    assert result.threshold >= single.threshold  # more faces compared: a stricter threshold
    entry = eng.ledger.entries(action="search")[-2]["payload"]
    assert entry["galleries"] == ["watch", "staff"] and entry["refused"][0]["gallery"] == "visa"
    with pytest.raises(PolicyViolation, match="every gallery"):
        eng.search(OPEN_FACES / "ardern_2022.jpg", gallery=["watch", "visa"], purpose="tourism", case="c-3")


def test_duplicates_within_and_across_galleries(eng):
    eng.create_gallery("a")
    eng.create_gallery("b")
    eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="a", subject="Jacinda Ardern", source="s", legal_basis="b")
    eng.enroll([OPEN_FACES / "ardern_2022.jpg"], gallery="a", subject="J. Ardern", source="s", legal_basis="b")
    eng.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="a", subject="Macron", source="s", legal_basis="b")
    eng.enroll([OPEN_FACES / "ardern_2022.jpg"], gallery="b", subject="Ardern (visa)", source="s", legal_basis="b")
    within = eng.gallery_duplicates("a", min_score=0.4)
    assert {(p["subject_a"], p["subject_b"]) for p in within["pairs"]} in (
        {("Jacinda Ardern", "J. Ardern")}, {("J. Ardern", "Jacinda Ardern")})
    across = eng.gallery_duplicates("a", against="b", min_score=0.4)
    assert {p["subject_b"] for p in across["pairs"]} == {"Ardern (visa)"} and len(across["pairs"]) == 2
    assert eng.ledger.entries(action="gallery.duplicates")[-1]["payload"]["pairs"] == 2


def test_calibration_show_cli(tmp_path, monkeypatch, capsys):
    from faceledger import cli_common
    from faceledger.cli import app
    from typer.testing import CliRunner

    home = tmp_path / "cli-home"
    engine = open_test_engine(home)
    engine.create_gallery("g")
    engine.enroll_embeddings(precomputed(engine, synthetic_faces(60, 2, seed=4)), gallery="g", source="s",
                             legal_basis="b")
    engine.close()
    cli_common.state.clear()
    try:
        result = CliRunner().invoke(app, ["--home", str(home), "calibration", "show", "--gallery", "g", "--json"])
    finally:  # the runner bypasses the CLI's own run(), which closes this process's engine
        if "engine" in cli_common.state:
            cli_common.state["engine"].close()
        cli_common.state.clear()
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["gallery_faces"] == 120 and info["gallery_sample"]["pairs"] == 120 * 119 // 2 - 60
    assert {r["target_fpir"] for r in info["thresholds"]} >= {0.1, 0.01, 0.001}
    cli_common.state.clear()
    try:  # the text form of a gallery too small for its own sample (its payload's "gallery" is then the name)
        text = CliRunner().invoke(app, ["--home", str(home), "calibration", "show", "--gallery", "g"])
    finally:
        if "engine" in cli_common.state:
            cli_common.state["engine"].close()
        cli_common.state.clear()
    assert text.exit_code == 0, text.output
    assert "gallery sample not used" in text.output and "0.01" in text.output


def test_calibration_duplicates_and_several_galleries_through_the_api(eng):
    from fastapi.testclient import TestClient

    from faceledger.api import create_app

    eng.create_gallery("a")
    eng.create_gallery("b")
    eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="a", subject="Ardern", source="s", legal_basis="b")
    eng.enroll([OPEN_FACES / "ardern_2022.jpg"], gallery="b", subject="Ardern (b)", source="s", legal_basis="b")
    _, token = eng.add_user("ana", role="admin")
    client = TestClient(create_app(engine=eng))
    auth = {"Authorization": f"Bearer {token}"}
    shown = client.get("/api/v1/galleries/a/calibration", headers=auth)
    assert shown.status_code == 200 and shown.json()["source"] == "packaged" and shown.json()["gallery_name"] == "a"
    dups = client.get("/api/v1/galleries/a/duplicates", params={"against": "b", "min_score": 0.4}, headers=auth)
    assert dups.status_code == 200 and dups.json()["pairs"][0]["subject_b"] == "Ardern (b)"
    probe = OPEN_FACES / "ardern_2022.jpg"
    both = client.post("/api/v1/search", headers=auth, files={"image": (probe.name, probe.read_bytes(), "image/jpeg")},
                       data={"gallery": ["a", "b"], "purpose": "p", "case": "c"})
    assert both.status_code == 200, both.text
    assert both.json()["galleries"] == ["a", "b"] and both.json()["gallery_size"] == 2
    assert {c["gallery"] for c in both.json()["candidates"]} == {"a", "b"}
    assert client.get("/api/v1/galleries/nope/calibration", headers=auth).status_code == 404


def test_saving_a_gallery_sample_is_safe_against_other_writers(eng):
    """Found by the many-writers fault test: two servers on one data directory wrote the same temporary
    file, and one search failed with FileNotFoundError. The sample is a cache: writers must not collide,
    and a failed save must not fail the search."""
    import threading

    from sqlalchemy import select

    from faceledger.store import Gallery

    eng.create_gallery("g")
    eng.enroll_embeddings(precomputed(eng, synthetic_faces(60, 2, seed=6)), gallery="g", source="s",
                          legal_basis="b")
    with eng.sessions() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == "g")).scalar_one()
        sample = eng.calibrations._build_sample(session, gallery)
    errors = []

    def writer():
        try:
            for _ in range(40):
                eng.calibrations._save_sample(gallery, 120, sample)
                eng.calibrations.sample_path(gallery.id).unlink(missing_ok=True)  # another process's forget()
        except OSError as exc:  # pragma: no cover - the failure this test guards against
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
