"""Evidence packages: one self-contained HTML file per search, its chain proof, and its check.

One engine (SQLite) with the demo gallery, a user of each role, a search reviewed by a second person,
and a signed anchor over both; packages are exported through the engine, the CLI and the API, then
checked (and tampered with) by `faceledger evidence verify`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceledger.anchors import anchor_ledger, append_anchor, generate_keys, load_private_key
from faceledger.api import create_app
from faceledger.errors import NotFound, PermissionDenied
from faceledger.evidence.check import verify_file
from faceledger.evidence.proof import BLOCK_ID, EvidenceInvalid
from faceledger.policy import Principal

from .conftest import gallery_files, held_out_probes, open_test_engine
from .servers import running_serve
from .test_cli import run
from .web_clients import signed_in
from .browsers import launch, needs_chromium, sign_in

ROLES = ("admin", "analyst", "reviewer", "auditor")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    engine = open_test_engine(root / "home")
    engine.create_gallery("g", purposes=["fraud"], allow_investigative=True, keep_probe_images=True)
    engine.enroll(gallery_files(), gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    users = {role: Principal(f"{role}-user", role) for role in ROLES}
    tokens = {role: engine.add_user(f"{role}-user", role=role)[1] for role in ROLES}
    probe = held_out_probes()[0]
    searched = engine.search(probe, gallery="g", purpose="fraud", case="CASE-7", top_k=1, investigative=True,
                             authorisation="AUTH-42", by=users["analyst"])
    engine.review(searched.ledger_entry, candidate=1, decision="confirm", note="same scar above the eye",
                  by=users["reviewer"])
    private, public = generate_keys(root / "keys", data_dir=root / "home")
    anchors = root / "anchors.jsonl"
    append_anchor(anchors, anchor_ledger(engine.ledger, load_private_key(private, data_dir=root / "home"),
                                         actor="admin-user"), data_dir=root / "home")
    yield {"engine": engine, "users": users, "tokens": tokens, "search": searched, "probe": probe, "root": root,
           "anchors": anchors, "public": public}
    engine.close()


def export(world, role: str, entry: str | None = None) -> tuple[dict, str]:
    package = world["engine"].export_evidence(entry or world["search"].ledger_entry, by=world["users"][role])
    return package, package["html"].decode()


def write(tmp_path: Path, html: str, name: str = "package.html") -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


def proof_of(html: str) -> dict:
    block = re.search(rf'<script type="application/json" id="{BLOCK_ID}">(.*?)</script>', html, re.DOTALL).group(1)
    return json.loads(block)


def with_proof(html: str, proof: dict) -> str:
    text = json.dumps(proof, sort_keys=True).replace("</", "<\\/")
    return re.sub(rf'(<script type="application/json" id="{BLOCK_ID}">)(.*?)(</script>)',
                  lambda m: m.group(1) + text + m.group(3), html, flags=re.DOTALL)


def test_package_holds_the_record_and_is_ledgered_with_its_sha256(world):
    package, html = export(world, "analyst")
    search = world["search"]
    for fact in ("CASE-7", "AUTH-42", "fraud", "analyst-user", "reviewer-user", "same scar above the eye",
                 "confirm", search.model_id, search.calibration_id, search.ledger_entry, search.probe_sha256,
                 "How it was set".lower()):
        assert fact in html or fact in html.lower(), fact
    assert f"{search.threshold:.6g}" in html
    # self-contained: images are data: URIs, nothing refers to another resource, no code runs
    assert re.findall(r'src="([^"]*)"', html) and all(s.startswith("data:image/") for s in re.findall(r'src="([^"]*)"', html))
    assert not re.search(r'(href|src)="(https?:|//|/)', html) and "@import" not in html and "url(" not in html
    assert re.findall(r"<script[^>]*>", html) == [f'<script type="application/json" id="{BLOCK_ID}">']
    assert 'class="probe"' in html  # the gallery keeps probe photos, so the photo searched with is in it
    assert "@media print" in html
    entry = world["engine"].audit_entries(action="evidence.export")[-1]
    assert entry["actor"] == "analyst-user" and entry["payload"]["search"] == search.ledger_entry
    assert entry["payload"]["sha256"] == hashlib.sha256(package["html"]).hexdigest() == package["sha256"]


def test_auditor_package_withholds_faces_and_reviewer_may_not_export(world):
    _, html = export(world, "auditor")
    assert "the auditor role may not view faces" in html and 'class="probe"' not in html
    assert "data:image/jpeg" not in html and "CASE-7" in html
    with pytest.raises(PermissionDenied):
        export(world, "reviewer")
    denied = world["engine"].audit_entries(action="denied")[-1]
    assert denied["actor"] == "reviewer-user" and denied["payload"]["attempted"] == "evidence"
    with pytest.raises(NotFound):
        export(world, "analyst", "no-such-entry")


def test_verify_passes_and_reaches_the_anchor(world, tmp_path):
    _, html = export(world, "admin")
    path = write(tmp_path, html)
    check = verify_file(path, anchors_path=world["anchors"], public_key_path=world["public"])
    assert check.ok, check.problems
    assert check.search_entry == world["search"].ledger_entry
    assert any("reaches anchored entry" in n for n in check.notes)
    assert proof_of(html)["ends_at"]["reason"] == "anchor"


def test_verify_catches_an_edited_byte_a_dropped_entry_an_edited_page_and_a_swapped_probe(world, tmp_path):
    _, html = export(world, "admin")
    proof = proof_of(html)
    assert len(proof["entries"]) >= 3  # search, review, anchor
    edited = json.loads(json.dumps(proof))
    review = next(e for e in edited["entries"] if e["action"] == "review")
    review["payload"] = review["payload"].replace("confirm", "reject")
    check = verify_file(write(tmp_path, with_proof(html, edited), "edited.html"))
    assert not check.ok and any("content does not match its hash" in p for p in check.problems)

    dropped = json.loads(json.dumps(proof))
    del dropped["entries"][1]
    check = verify_file(write(tmp_path, with_proof(html, dropped), "dropped.html"))
    assert not check.ok and any("expected entry" in p or "does not link" in p for p in check.problems)

    cut = json.loads(json.dumps(proof))
    del cut["entries"][-1]
    check = verify_file(write(tmp_path, with_proof(html, cut), "cut.html"))
    assert not check.ok and any("cut off" in p for p in check.problems)

    relabelled = html.replace('<tr data-field="purpose"><th>purpose</th><td>fraud</td>',
                              '<tr data-field="purpose"><th>purpose</th><td>public safety</td>')
    rescored = re.sub(r'(<tr data-field="candidate\.1\.score"><th>score</th><td>)[0-9.]+', r"\g<1>0.99", html)
    assert relabelled != html and rescored != html
    for name, page in (("relabelled.html", relabelled), ("rescored.html", rescored)):
        check = verify_file(write(tmp_path, page, name))  # the proof is intact; the page says something else
        assert not check.ok and any("the page was edited" in p for p in check.problems), name

    swapped = re.sub(r'(<img class="probe"[^>]*src="data:image/jpeg;base64,)([A-Za-z0-9+/]{8})',
                     lambda m: m.group(1) + "AAAAAAAA", html, count=1)
    assert swapped != html
    check = verify_file(write(tmp_path, swapped, "swapped.html"))
    assert not check.ok and any("probe image" in p for p in check.problems)


def test_anchor_check_refuses_a_rewritten_chain_and_a_forged_anchor(world, tmp_path):
    _, html = export(world, "admin")
    proof = proof_of(html)
    rechained = json.loads(json.dumps(proof))  # edit the search entry and recompute every hash after it
    from faceledger.ledger import entry_hash

    prev = None
    for entry in rechained["entries"]:
        if prev is None:
            entry["payload"] = entry["payload"].replace("CASE-7", "CASE-8")
        else:
            entry["prev_hash"] = prev
        entry["hash"] = entry_hash(entry["seq"], entry["entry_id"], entry["created_at"], entry["actor"],
                                   entry["action"], entry["payload"], entry["prev_hash"])
        prev = entry["hash"]
    page = with_proof(html.replace("CASE-7", "CASE-8"), rechained)  # the page and its proof edited alike
    path = write(tmp_path, page, "rechained.html")
    assert verify_file(path).ok  # a consistent package on its own ...
    check = verify_file(path, anchors_path=world["anchors"], public_key_path=world["public"])
    assert not check.ok and any("another hash" in p for p in check.problems)  # ... but not the anchored one

    forged = tmp_path / "forged.jsonl"
    anchor = json.loads(world["anchors"].read_text())
    forged.write_text(json.dumps({**anchor, "hash": rechained["entries"][-1]["hash"]}) + "\n")
    check = verify_file(path, anchors_path=forged, public_key_path=world["public"])
    assert not check.ok and any("signature" in p for p in check.problems)


def test_analyst_package_withholds_records_the_analyst_may_not_read(world, tmp_path):
    """An entry the analyst may not read (here a user.add) between the search and the anchor is carried
    without its content: the analyst's package then cannot tie the search to the anchor, and says so; the
    auditor's package of the same search carries it in full and is tied."""
    engine, users, root = world["engine"], world["users"], world["root"]
    searched = engine.search(world["probe"], gallery="g", purpose="fraud", case="CASE-W", top_k=1,
                             investigative=True, by=users["analyst"])
    engine.add_user("someone-new", role="enroller", by=users["admin"])
    anchors = tmp_path / "anchors.jsonl"
    append_anchor(anchors, anchor_ledger(engine.ledger, load_private_key(root / "keys" / "anchor-private.pem",
                                                                         data_dir=root / "home"),
                                         actor="admin-user"), data_dir=root / "home")
    _, mine = export(world, "analyst", searched.ledger_entry)
    entries = proof_of(mine)["entries"]
    hidden = [e for e in entries if e.get("withheld")]
    assert [e["seq"] for e in hidden] == [entries[1]["seq"]] and "someone-new" not in mine
    assert "the analyst role may not read the audit log" in hidden[0]["withheld"]
    check = verify_file(write(tmp_path, mine, "analyst.html"), anchors_path=anchors, public_key_path=world["public"])
    assert not check.ok and any("is not tied to anchored entry" in p for p in check.problems)
    _, full = export(world, "auditor", searched.ledger_entry)
    assert "someone-new" in full and not any(e.get("withheld") for e in proof_of(full)["entries"])
    check = verify_file(write(tmp_path, full, "auditor.html"), anchors_path=anchors, public_key_path=world["public"])
    assert check.ok, check.problems


def test_not_a_package_is_a_clear_error(tmp_path):
    with pytest.raises(EvidenceInvalid, match="no faceledger proof block"):
        verify_file(write(tmp_path, "<html><body>hello</body></html>"))
    with pytest.raises(EvidenceInvalid, match="not valid JSON"):
        verify_file(write(tmp_path, f'<script type="application/json" id="{BLOCK_ID}">{{oops</script>'))
    (tmp_path / "binary.html").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EvidenceInvalid, match="not UTF-8"):
        verify_file(tmp_path / "binary.html")


def test_cli_exports_and_verifies(world, tmp_path, capsys, monkeypatch):
    home = world["root"] / "home"
    monkeypatch.setenv("FACELEDGER_TOKEN", world["tokens"]["auditor"])
    out = tmp_path / "e.html"
    code, stdout, err = run(capsys, monkeypatch, home, "evidence", world["search"].ledger_entry, "--out", out,
                            "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.stat().st_mode & 0o077 == 0
    code, _, err = run(capsys, monkeypatch, home, "evidence", world["search"].ledger_entry, "--out", out)
    assert code == 2 and "already exists" in err
    monkeypatch.delenv("FACELEDGER_TOKEN")
    code, stdout, err = run(capsys, monkeypatch, home, "evidence", "verify", out, "--anchor", world["anchors"],
                            "--public-key", world["public"])
    assert code == 0 and "evidence package intact" in stdout, err
    out.write_text(out.read_text().replace("CASE-7", "CASE-9"))  # the visible text and the proof's payload
    code, _, err = run(capsys, monkeypatch, home, "evidence", "verify", out)
    assert code == 2 and "BROKEN" in err


def exports_ledgered(world) -> int:
    return len(world["engine"].audit_entries(action="evidence.export"))


def test_api_route_returns_an_html_attachment(world):
    client = TestClient(create_app(engine=world["engine"]))
    entry = world["search"].ledger_entry
    response = client.post(f"/api/v1/searches/{entry}/evidence",
                           headers={"Authorization": f"Bearer {world['tokens']['auditor']}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == f'attachment; filename="evidence-{entry}.html"'
    assert response.headers["x-evidence-sha256"] == hashlib.sha256(response.content).hexdigest()
    denied = client.post(f"/api/v1/searches/{entry}/evidence",
                         headers={"Authorization": f"Bearer {world['tokens']['reviewer']}"})
    assert denied.status_code == 403
    missing = client.post("/api/v1/searches/nope/evidence",
                          headers={"Authorization": f"Bearer {world['tokens']['auditor']}"})
    assert missing.status_code == 404


def test_api_get_of_an_export_is_405_saying_post_and_ledgers_nothing(world):
    client = TestClient(create_app(engine=world["engine"]))
    entry = world["search"].ledger_entry
    before = exports_ledgered(world)
    response = client.get(f"/api/v1/searches/{entry}/evidence",
                          headers={"Authorization": f"Bearer {world['tokens']['auditor']}"})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert f"POST /api/v1/searches/{entry}/evidence" in response.json()["detail"]
    assert exports_ledgered(world) == before
    paths = create_app(engine=world["engine"]).openapi()["paths"][
        "/api/v1/searches/{entry}/evidence"]
    assert set(paths) == {"post"}


def test_web_export_is_a_post_form_that_needs_the_session_csrf_token(world):
    """The result page's button is a form posting the session's CSRF token; without it nothing is exported
    or ledgered, and the session cookie cannot export through the API without the X-CSRF-Token header."""
    client, csrf = signed_in(world["engine"], world["tokens"]["analyst"])
    entry = world["search"].ledger_entry
    page = client.get(f"/searches/{entry}").text
    form = re.search(r'<form class="evidence" method="post" action="([^"]+)">'
                     r'<input type="hidden" name="csrf" value="([^"]+)">', page)
    assert form and form.group(1) == f"/searches/{entry}/evidence" and form.group(2) == csrf
    before = exports_ledgered(world)
    assert client.post(form.group(1)).status_code == 403
    assert client.post(form.group(1), data={"csrf": "0" * 32}).status_code == 403
    assert client.post(f"/api/v1/searches/{entry}/evidence").status_code == 403  # cookie, no CSRF header
    assert exports_ledgered(world) == before
    response = client.post(form.group(1), data={"csrf": csrf})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="evidence-{entry}.html"'
    ledgered = world["engine"].audit_entries(action="evidence.export")
    assert len(ledgered) == before + 1 and ledgered[-1]["actor"] == "analyst-user"
    assert ledgered[-1]["payload"]["sha256"] == hashlib.sha256(response.content).hexdigest()


def test_erased_subject_is_withheld_and_the_search_facts_stay(world, tmp_path):
    engine, users = world["engine"], world["users"]
    probe = held_out_probes()[1]
    searched = engine.search(probe, gallery="g", purpose="fraud", case="CASE-ERASE", top_k=1, investigative=True,
                             by=users["analyst"])
    name = searched.candidates[0].subject
    receipt = engine.erase(reason="data subject request", subject=name, gallery="g", by=users["admin"])["receipt"]
    _, html = export(world, "analyst", searched.ledger_entry)
    assert f"receipt {receipt}" in html and "erased on" in html
    assert name not in html and name.replace("_", " ") not in html  # withheld from the page and the proof
    assert "CASE-ERASE" in html and searched.probe_sha256 in html  # the search's ledger facts stay
    assert "its record was deleted" in html  # the probe went with the person
    proof = proof_of(html)
    assert proof["entries"][0]["withheld"] and proof["entries"][0]["payload"] is None
    check = verify_file(write(tmp_path, html))
    assert check.ok, check.problems
    assert any("withheld" in n for n in check.notes)


@needs_chromium
def test_phone_result_page_downloads_a_package_that_verifies(world, tmp_path):
    """At 390 px in Chromium, against a `faceledger serve` process: the result page fits, its button
    downloads the package with the session cookie, the file verifies, the audit page lists the export, and
    the transparency page fits and downloads the whole report."""
    sync_api = pytest.importorskip("playwright.sync_api")
    entry = world["search"].ledger_entry
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with running_serve(world["root"] / "home", tmp_path / "serve.log") as (base, _process), \
            sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
            page = context.new_page()
            sign_in(page, base, world["tokens"]["analyst"])
            page.goto(f"{base}/searches/{entry}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert page.locator("header .who .me").is_visible()
            page.screenshot(path=str(shots / "result-390.png"), full_page=True)
            with page.expect_download() as download:
                page.click("#evidence")
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            assert saved.name == f"evidence-{entry}.html"
            check = verify_file(saved, anchors_path=world["anchors"], public_key_path=world["public"])
            assert check.ok, check.problems
            page.goto(f"{saved.as_uri()}")  # the file on its own, opened from disk
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(shots / "package-390.png"), full_page=True)
            context.close()
            context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
            page = context.new_page()
            sign_in(page, base, world["tokens"]["auditor"])
            page.goto(f"{base}/audit?action=evidence.export")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert page.get_by_text("evidence.export").first.is_visible()
            page.screenshot(path=str(shots / "audit-390.png"), full_page=True)
            page.goto(f"{base}/transparency")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(shots / "transparency-390.png"), full_page=True)
            with page.expect_download() as report:
                page.click("#transparency-download")
            report_file = tmp_path / "transparency.html"
            report.value.save_as(report_file)
            assert "Calibration of gallery g" in report_file.read_text()
        finally:
            browser.close()
    exports = world["engine"].audit_entries(action="evidence.export")
    assert exports[-1]["payload"]["sha256"] == check.sha256 and exports[-1]["actor"] == "analyst-user"


def test_a_gallery_keeping_no_photos_shows_the_review_crop_until_the_search_is_reviewed(world, tmp_path):
    engine, users = world["engine"], world["users"]
    engine.create_gallery("crop-only", purposes=["fraud"], allow_investigative=True)  # keep_probe_for_review on
    engine.enroll(gallery_files()[:9], gallery="crop-only", subject_from_folder=True, source="LFW",
                  legal_basis="research")
    searched = engine.search(world["probe"], gallery="crop-only", purpose="fraud", case="CASE-8", top_k=1,
                             investigative=True, by=users["analyst"])
    html = engine.export_evidence(searched.ledger_entry, by=users["analyst"])["html"].decode()
    assert 'class="probe-crop"' in html and 'class="probe"' not in html and "kept until the search is reviewed" in html
    assert verify_file(write(tmp_path, html)).ok  # the crop is not passed off as the ledgered photo
    engine.review(searched.ledger_entry, candidate=1, decision="reject", by=users["reviewer"])
    html = engine.export_evidence(searched.ledger_entry, by=users["analyst"])["html"].decode()
    assert "probe-crop" not in html and "keeps no probe photos" in html
