"""Roles, gallery policy, investigative mode, review, retention, erasure, audit export, transparency."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from faceledger.services.context import utcnow
from faceledger.errors import (
    AuthenticationFailed, Conflict, FaceledgerError, NotFound, PermissionDenied, PolicyViolation,
)
from faceledger.policy import Principal
from faceledger.store import FaceRecord, ImageRecord, Maintenance, Probe, Subject, User

from .conftest import LFW_DIR, OPEN_FACES, gallery_files, held_out_probes, never_enrolled, open_test_engine

ANALYST = Principal("ana", "analyst")
REVIEWER = Principal("rey", "reviewer")
ENROLLER = Principal("eno", "enroller")
AUDITOR = Principal("aud", "auditor")


def denials(engine) -> list[dict]:
    return engine.ledger.entries(action="denied")


@pytest.fixture
def eng(tmp_path):
    engine = open_test_engine(tmp_path / "home")
    engine.create_gallery("g", allow_investigative=True, purposes=["missing person", "fraud"])
    engine.enroll(gallery_files(), gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    yield engine
    engine.close()


# -- users and roles ---------------------------------------------------------------------------------

def test_tokens_are_shown_once_and_stored_hashed(eng):
    user, token = eng.add_user("alice", role="analyst")
    assert user == {"user": "alice", "role": "analyst"} and token.startswith("flt_")
    with eng.sessions() as s:
        stored = s.execute(select(User).where(User.name == "alice")).scalar_one()
    assert token not in (stored.token_sha256 or "") and len(stored.token_sha256) == 64
    assert eng.authenticate(token) == Principal("alice", "analyst")
    assert "flt_" not in json.dumps(eng.ledger.entries(action="user.add"))


def test_bad_unknown_and_disabled_tokens_are_refused(eng):
    _, token = eng.add_user("bob", role="analyst")
    for bad in (None, "", "flt_wrong", token + "x"):
        with pytest.raises(AuthenticationFailed):
            eng.authenticate(bad)
    eng.set_user_disabled("bob")
    with pytest.raises(AuthenticationFailed, match="not valid"):
        eng.authenticate(token)


def test_unknown_role_is_refused(eng):
    with pytest.raises(FaceledgerError, match="unknown role 'spy'"):
        eng.add_user("carol", role="spy")


@pytest.mark.parametrize("who, call", [
    (ANALYST, lambda e, by: e.enroll(gallery_files()[:1], gallery="g", subject="x", source="s", legal_basis="b", by=by)),
    (ENROLLER, lambda e, by: e.search(held_out_probes()[0], gallery="g", purpose="fraud", case="c", by=by)),
    (REVIEWER, lambda e, by: e.verify(OPEN_FACES / "ardern_2018.jpg", OPEN_FACES / "ardern_2022.jpg",
                                      purpose="p", case="c", by=by)),
    (ANALYST, lambda e, by: e.create_gallery("h", by=by)),
    (ANALYST, lambda e, by: e.add_user("x", role="admin", by=by)),
    (ANALYST, lambda e, by: e.audit_verify(by=by)),
    (AUDITOR, lambda e, by: e.erase(reason="r", subject="Pele", gallery="g", by=by)),
    (ANALYST, lambda e, by: e.purge(by=by)),
])
def test_wrong_role_is_refused_and_ledgered(eng, who, call):
    before = eng.gallery_info("g")
    with pytest.raises(PermissionDenied, match=who.role):
        call(eng, who)
    denied = denials(eng)[-1]
    assert denied["actor"] == who.name and denied["payload"]["role"] == who.role
    assert eng.gallery_info("g") == before  # nothing changed


def test_auditor_may_audit(eng):
    assert eng.audit_verify(by=AUDITOR).ok
    assert eng.audit_entries(by=AUDITOR, action="enroll")


# -- gallery policy ----------------------------------------------------------------------------------

def test_purpose_outside_the_gallery_policy_is_refused_and_ledgered(eng):
    with pytest.raises(PolicyViolation, match="not allowed for gallery 'g'"):
        eng.search(held_out_probes()[0], gallery="g", purpose="curiosity", case="c", by=ANALYST)
    assert denials(eng)[-1]["payload"]["request"]["purpose"] == "curiosity"
    assert eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="c", by=ANALYST).decision == "match"


def test_missing_purpose_is_refused_and_ledgered(eng):
    with pytest.raises(PolicyViolation, match="purpose is required"):
        eng.search(held_out_probes()[0], gallery="g", purpose="", case="c", by=ANALYST)
    assert "purpose is required" in denials(eng)[-1]["payload"]["reason"]


def test_gallery_without_purposes_accepts_any_stated_purpose(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    eng.create_gallery("open")
    eng.enroll(gallery_files()[:3], gallery="open", subject_from_folder=True, source="s", legal_basis="b")
    result = eng.search(held_out_probes()[0], gallery="open", purpose="anything stated", case="c")
    assert eng.ledger.entries(action="search")[-1]["payload"]["purpose"] == "anything stated"
    assert result.decision == "match"


def test_policy_changes_are_ledgered_with_before_and_after(eng):
    info = eng.update_gallery("g", target_fpir=0.001, allow_investigative=False)
    assert info["target_fpir"] == 0.001 and not info["allow_investigative"]
    change = eng.ledger.entries(action="gallery.update")[-1]["payload"]
    assert change["before"]["target_fpir"] == 0.01 and change["after"]["target_fpir"] == 0.001
    assert change["before"]["allow_investigative"] and not change["after"]["allow_investigative"]
    with pytest.raises(FaceledgerError, match="between 0 and 1"):
        eng.update_gallery("g", target_fpir=2.0)


def test_lower_target_fpir_raises_the_threshold(eng):
    loose = eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="c").threshold
    eng.update_gallery("g", target_fpir=0.0001)
    strict = eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="c").threshold
    assert strict > loose


# -- investigative mode and review -------------------------------------------------------------------

def test_investigative_search_returns_leads_even_for_a_stranger(eng):
    stranger = never_enrolled()[0]
    open_set = eng.search(stranger, gallery="g", purpose="missing person", case="c", by=ANALYST)
    assert open_set.decision == "no_match" and not open_set.candidates
    leads = eng.search(stranger, gallery="g", purpose="missing person", case="c", top_k=5, investigative=True,
                       by=ANALYST)
    assert leads.mode == "investigative" and len(leads.candidates) == 5
    assert all("lead, not an identification" in c.label for c in leads.candidates)
    assert not any(c.above_threshold for c in leads.candidates) and leads.decision == "no_match"
    assert all(c.false_match_rate > 0 for c in leads.candidates)
    assert eng.ledger.entries(action="search")[-1]["payload"]["mode"] == "investigative"


def test_investigative_search_is_refused_where_not_allowed(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    eng.create_gallery("strict")
    with pytest.raises(PolicyViolation, match="does not allow investigative"):
        eng.search(held_out_probes()[0], gallery="strict", purpose="p", case="c", investigative=True)
    assert denials(eng)[-1]["payload"]["request"]["investigative"] is True


def test_review_by_a_second_person_confirms_a_lead(eng):
    probe = held_out_probes()[0]
    search = eng.search(probe, gallery="g", purpose="fraud", case="c", top_k=3, investigative=True, by=ANALYST)
    assert eng.review_status(search.ledger_entry)[0]["status"] == "unreviewed"
    with pytest.raises(Conflict, match="second person"):
        eng.review(search.ledger_entry, candidate=1, decision="confirm", by=Principal("ana", "reviewer"))
    with pytest.raises(PermissionDenied):
        eng.review(search.ledger_entry, candidate=1, decision="confirm", by=Principal("boss", "admin"))
    with pytest.raises(NotFound, match="no candidate 9"):
        eng.review(search.ledger_entry, candidate=9, decision="confirm", by=REVIEWER)
    with pytest.raises(NotFound, match="no search"):
        eng.review("not-an-entry", candidate=1, decision="confirm", by=REVIEWER)
    with pytest.raises(FaceledgerError, match="decision must be"):
        eng.review(search.ledger_entry, candidate=1, decision="maybe", by=REVIEWER)
    done = eng.review(search.ledger_entry, candidate=1, decision="confirm", note="same scar", by=REVIEWER)
    assert done["subject"] == probe.parent.name
    status = eng.review_status(search.ledger_entry)
    assert status[0]["status"] == "confirmed" and status[1]["status"] == "unreviewed"
    eng.review(search.ledger_entry, candidate=1, decision="reject", by=Principal("rita", "reviewer"))
    assert eng.review_status(search.ledger_entry)[0]["status"] == "disputed"
    reviews = eng.ledger.entries(action="review")
    assert [r["payload"]["decision"] for r in reviews] == ["confirm", "reject"]
    assert reviews[0]["payload"]["searched_by"] == "ana"
    with pytest.raises(FaceledgerError, match="already reviewed"):
        eng.review(search.ledger_entry, candidate=1, decision="confirm", by=REVIEWER)


# -- retention ---------------------------------------------------------------------------------------

def test_expired_records_are_gone_from_store_index_and_results(tmp_path):
    home = tmp_path / "h"
    eng = open_test_engine(home)
    eng.create_gallery("short", retain_days=30, probe_retain_days=7)
    eng.create_gallery("long")
    probe = held_out_probes()[0]
    person = [f for f in gallery_files() if f.parent == probe.parent]
    eng.enroll(person, gallery="short", subject_from_folder=True, source="s", legal_basis="b")
    eng.enroll(person, gallery="long", subject_from_folder=True, source="s", legal_basis="b")
    assert eng.search(probe, gallery="short", purpose="p", case="c").decision == "match"
    assert eng.purge()["images"] == 0  # nothing has expired yet
    summary = eng.purge(now=utcnow() + timedelta(days=31))
    assert summary["images"] == 3 and summary["faces"] == 3 and summary["subjects"] == 1 and summary["probes"] == 1
    with eng.sessions() as s:
        gallery_id = eng.gallery_info("short")["id"]
        assert not s.execute(select(FaceRecord).where(FaceRecord.gallery_id == gallery_id)).all()
        assert not s.execute(select(Subject).where(Subject.gallery_id == gallery_id)).all()
        assert not s.execute(select(Probe)).all()
    after = eng.search(probe, gallery="short", purpose="p", case="c")
    assert after.decision == "no_match" and after.gallery_size == 0
    assert eng.search(probe, gallery="long", purpose="p", case="c").decision == "match"  # other gallery intact
    eng.close()
    reopened = open_test_engine(home)  # the index file on disk no longer holds the vectors either
    assert reopened.search(probe, gallery="short", purpose="p", case="c").gallery_size == 0
    assert reopened.ledger.entries(action="purge")[-1]["payload"]["images"] == 3
    reopened.close()


def test_purge_runs_by_itself_when_overdue(tmp_path):
    home = tmp_path / "h"
    eng = open_test_engine(home)
    eng.create_gallery("g")
    eng.enroll(gallery_files()[:2], gallery="g", subject_from_folder=True, source="s", legal_basis="b",
               retain_until=utcnow() + timedelta(days=1))
    with eng.sessions() as s:  # a day later: the records have expired and the last purge is two days old
        for image in s.execute(select(ImageRecord)).scalars():
            image.retain_until = utcnow() - timedelta(hours=1)
        s.merge(Maintenance(key="last_purge_at", value=(utcnow() - timedelta(days=2)).isoformat()))
        s.commit()
    eng.close()
    reopened = open_test_engine(home)
    assert reopened.gallery_info("g")["images"] == 0
    assert reopened.ledger.entries(action="purge")[-1]["actor"].startswith("system")
    reopened.close()


def test_probe_images_are_kept_only_when_the_policy_says_so(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    eng.create_gallery("plain")
    eng.create_gallery("keeps", keep_probe_images=True)
    for name in ("plain", "keeps"):
        eng.enroll(gallery_files()[:3], gallery=name, subject_from_folder=True, source="s", legal_basis="b")
        eng.search(held_out_probes()[0], gallery=name, purpose="p", case="c")
    with eng.sessions() as s:
        probes = {p.gallery_id: p for p in s.execute(select(Probe)).scalars()}
    plain, keeps = eng.gallery_info("plain")["id"], eng.gallery_info("keeps")["id"]
    assert probes[plain].image is None and probes[keeps].image == held_out_probes()[0].read_bytes()
    assert len(np.frombuffer(probes[plain].embedding, np.float32)) == 128


# -- erasure -----------------------------------------------------------------------------------------

def test_erase_by_face_removes_the_person_everywhere_with_a_receipt(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    for name in ("a", "b"):
        eng.create_gallery(name)
        eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery=name, subject="Jacinda Ardern", source="s", legal_basis="b")
        eng.enroll(gallery_files()[:6], gallery=name, subject_from_folder=True, source="s", legal_basis="b")
    receipt = eng.erase(face=OPEN_FACES / "ardern_2022.jpg", reason="erasure request #12")
    assert {(s["gallery"], s["subject"]) for s in receipt["subjects"]} == {("a", "Jacinda Ardern"), ("b", "Jacinda Ardern")}
    assert receipt["images"] == 2 and receipt["faces"] == 2
    for name in ("a", "b"):
        assert eng.gallery_info(name)["images"] == 6
        assert eng.search(OPEN_FACES / "ardern_2022.jpg", gallery=name, purpose="p", case="c").decision == "no_match"
    entry = eng.ledger.entries(action="erase")[-1]
    assert entry["entry_id"] == receipt["receipt"] and entry["payload"]["reason"] == "erasure request #12"
    assert "Ardern" not in json.dumps(entry["payload"])


def test_erase_matching_nobody_changes_nothing(eng):
    before = eng.gallery_info("g")
    with pytest.raises(NotFound, match="nothing was removed"):
        eng.erase(face=OPEN_FACES / "sunak_portrait.jpg", reason="request #13")
    assert eng.gallery_info("g") == before
    assert eng.ledger.entries(action="erase")[-1]["payload"]["outcome"] == "no match"


def test_erase_by_subject_and_reason_required(eng):
    with pytest.raises(PolicyViolation, match="reason"):
        eng.erase(subject="Pele", gallery="g", reason=" ")
    with pytest.raises(NotFound, match="no subject 'Pele'"):
        eng.erase(subject="Pele", gallery="g", reason="r")
    receipt = eng.erase(subject="Tony_Blair", gallery="g", reason="court order 7")
    assert receipt["images"] == 3 and eng.gallery_info("g")["subjects"] == 8
    with eng.sessions() as s:
        assert not s.execute(select(ImageRecord).where(ImageRecord.name.like("%Tony_Blair%"))).all()


def test_erase_by_subject_takes_the_persons_probes_in_bounded_batches(eng, monkeypatch):
    from faceledger.services import governance

    monkeypatch.setattr(governance, "PROBE_BATCH", 2)  # several batches with a handful of probes
    probes = held_out_probes()
    blair = [p for p in probes if p.parent.name == "Tony_Blair"]
    others = [p for p in probes if p.parent.name != "Tony_Blair"][:3]
    for probe in blair + others:
        eng.search(probe, gallery="g", purpose="fraud", case="c", by=ANALYST)
    with eng.sessions() as s:
        before = {p.id: p.candidates for p in s.execute(select(Probe)).scalars()}
    naming_blair = {pid for pid, cands in before.items() if any(c.get("subject") == "Tony_Blair" for c in cands)}
    assert naming_blair and len(naming_blair) < len(before)
    receipt = eng.erase(subject="Tony_Blair", gallery="g", reason="court order 8")
    with eng.sessions() as s:
        after = set(s.execute(select(Probe.id)).scalars())
    assert not after & naming_blair and receipt["probes"] == len(before) - len(after) >= len(naming_blair)
    assert len(after) >= len(others) - 1  # the other people's searches stay


# -- audit export and transparency -------------------------------------------------------------------

def test_audit_export_jsonl_and_csv_round_trip_and_are_ledgered(eng):
    eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="F-1", by=ANALYST)
    lines = eng.audit_export("jsonl", by=AUDITOR).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["payload"]["case"] == "F-1"
    table = list(csv.DictReader(io.StringIO(eng.audit_export("csv", by=AUDITOR))))
    assert len(table) == len(rows) + 1  # the first export is itself an entry now
    assert json.loads(table[-2]["payload"])["case"] == "F-1"
    assert eng.ledger.entries(action="audit.export")[-1]["actor"] == "aud"
    assert eng.audit_export("jsonl", since=utcnow() + timedelta(days=1), by=AUDITOR) == ""
    with pytest.raises(FaceledgerError, match="jsonl or csv"):
        eng.audit_export("xml", by=AUDITOR)


def test_audit_filters(eng):
    eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="F-2", by=ANALYST)
    eng.search(held_out_probes()[1], gallery="g", purpose="missing person", case="M-1", by=ANALYST)
    assert [e["payload"]["case"] for e in eng.audit_entries(purpose="fraud")] == ["F-2"]
    assert [e["payload"]["case"] for e in eng.audit_entries(case="M-1")] == ["M-1"]
    assert len(eng.audit_entries(actor="ana", action="search")) == 2


def test_transparency_report_counts_what_happened(eng, tmp_path):
    eng.search(held_out_probes()[0], gallery="g", purpose="fraud", case="c", by=ANALYST)
    eng.search(never_enrolled()[0], gallery="g", purpose="fraud", case="c", by=ANALYST)
    search = eng.search(held_out_probes()[1], gallery="g", purpose="missing person", case="c", by=ANALYST)
    eng.review(search.ledger_entry, candidate=1, decision="confirm", by=REVIEWER)
    with pytest.raises(PermissionDenied):
        eng.purge(by=ANALYST)
    report = eng.transparency_report(tmp_path / "report", by=AUDITOR)
    summary = report["summary"]
    assert summary["searches"]["by_purpose"] == {"fraud": 2, "missing person": 1}
    assert summary["searches"]["by_outcome"]["no_match"] == 1
    assert summary["searches"]["share_no_match"] == pytest.approx(1 / 3)
    assert summary["reviews"]["by_decision"] == {"confirm": 1}
    assert summary["denied"]["by_attempted_action"] == {"purge": 1}
    assert summary["operating_points"][0]["gallery_size"] == 27
    html = (tmp_path / "report" / "transparency.html").read_text()
    assert "Transparency report" in html and "Calibration of gallery g" in html
    assert html.count('src="data:image/svg+xml;base64,') >= 5  # the charts are in the file, not beside it


# -- calibration -------------------------------------------------------------------------------------

def test_calibrate_on_own_data_replaces_the_packaged_calibration(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    packaged = eng.calibration.calibration_id
    with pytest.raises(FaceledgerError, match="need at least 50"):
        eng.calibrate(LFW_DIR, workers=1)
    summary = eng.calibrate(LFW_DIR, workers=1, min_identities=5)
    assert summary["identities"] == 12 and summary["impostor_pairs"] == 66
    assert eng.calibration.calibration_id == summary["calibration_id"] != packaged
    # 66 pairs cannot support a small FMR: the floor is 3/66 and a 1e-6 target is flagged unsupported
    assert eng.calibration.fmr(0.99).fmr == pytest.approx(3 / 66)
    assert not eng.calibration.threshold_for_fmr(1e-6).supported
    reopened = open_test_engine(tmp_path / "h")
    assert reopened.calibration.calibration_id == summary["calibration_id"]
    assert eng.ledger.entries(action="calibrate")[-1]["payload"]["impostor_pairs"] == 66


def test_erase_dry_run_lists_and_removes_nothing(tmp_path):
    eng = open_test_engine(tmp_path / "h")
    eng.create_gallery("a")
    eng.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="a", subject="Jacinda Ardern", source="s", legal_basis="b")
    preview = eng.erase(face=OPEN_FACES / "ardern_2022.jpg", reason="request #14", dry_run=True)
    assert preview["dry_run"] and len(preview["subjects"]) == 1
    assert "subject" not in preview["subjects"][0] and "Jacinda" not in str(preview)  # a preview is not a search
    assert preview["subjects"][0]["score"] >= preview["subjects"][0]["threshold"]
    assert eng.gallery_info("a")["images"] == 1
    assert eng.ledger.entries(action="erase")[-1]["payload"]["outcome"] == "preview"
