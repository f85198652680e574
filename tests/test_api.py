"""The HTTP API and web app against the real engine (httpx through fastapi.testclient / ASGITransport)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from faceledger.api import create_app
from faceledger.api.security import COOKIE, csrf_token

from .conftest import OPEN_FACES, gallery_files, held_out_probes, never_enrolled, open_test_engine

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One engine with gallery "g" (27 LFW images, purposes fraud / missing person, investigative allowed),
    a user of every role, and an app over it."""
    engine = open_test_engine(tmp_path_factory.mktemp("api") / "home")
    engine.create_gallery("g", purposes=["fraud", "missing person"], allow_investigative=True)
    engine.enroll(gallery_files(), gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    tokens = {role: engine.add_user(f"{role}-user", role=role)[1]
              for role in ("admin", "enroller", "analyst", "reviewer", "auditor")}
    client = TestClient(create_app(engine=engine))
    yield engine, client, tokens
    engine.close()


@pytest.fixture
def engine(world):
    return world[0]


@pytest.fixture
def client(world):
    return world[1]


@pytest.fixture
def auth(world):
    return lambda role: {"Authorization": f"Bearer {world[2][role]}"}


def jpeg(path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def search_form(**overrides) -> dict:
    return {"gallery": "g", "purpose": "fraud", "case": "F-1", **overrides}


def assert_problem(response, status: int, detail: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == status
    assert detail in body["detail"], body
    return body


# -- authentication, roles, limits -------------------------------------------------------------------

ROUTES = [("GET", "/api/v1/galleries"), ("POST", "/api/v1/galleries"), ("GET", "/api/v1/galleries/g"),
          ("PATCH", "/api/v1/galleries/g"), ("GET", "/api/v1/galleries/g/images"),
          ("POST", "/api/v1/galleries/g/enroll"), ("POST", "/api/v1/search"), ("POST", "/api/v1/verify"),
          ("POST", "/api/v1/reviews"), ("POST", "/api/v1/erase"), ("POST", "/api/v1/purge"),
          ("GET", "/api/v1/audit"), ("GET", "/api/v1/audit/verify"), ("GET", "/api/v1/audit/export"),
          ("GET", "/api/v1/reports/transparency"), ("GET", "/api/v1/searches"), ("GET", "/api/v1/searches/x"),
          ("GET", "/api/v1/faces/1/crop"), ("GET", "/api/v1/me")]


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_api_route_needs_a_valid_token(client, method, path):
    body = b"--x\r\nnot even multipart"
    assert_problem(client.request(method, path, content=body), 401, "no token")
    wrong = client.request(method, path, content=body, headers={"Authorization": "Bearer flt_wrong"})
    assert_problem(wrong, 401, "not valid")
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_health_and_openapi_need_no_token(client):
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    templated = {re.sub(r"\{[^}]+\}", "*", p) for p in spec["paths"]}
    concrete = {p.replace("/g/", "/*/").replace("/1/", "/*/") for _, p in ROUTES}
    concrete = {re.sub(r"/(g|x)$", "/*", p) for p in concrete}
    assert concrete <= templated
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_wrong_role_is_403_and_ledgered(client, auth, engine):
    response = client.post("/api/v1/purge", headers=auth("analyst"))
    assert_problem(response, 403, "'purge' needs one of: admin")
    assert engine.ledger.entries(action="denied")[-1]["actor"] == "analyst-user"
    assert_problem(client.post("/api/v1/search", headers=auth("enroller"), data=search_form(),
                               files={"image": jpeg(held_out_probes()[0])}), 403, "'search' needs")


def test_a_50_mb_upload_is_refused_without_reading_it(world):
    engine, _, tokens = world
    app = create_app(engine=engine)
    sent = []

    async def body():
        yield (b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
               b"Content-Type: image/jpeg\r\n\r\n")
        for _ in range(50):
            sent.append(1)
            yield b"\0" * (1024 * 1024)

    async def post(headers):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.post("/api/v1/search", content=body(), headers={
                "Authorization": f"Bearer {tokens['analyst']}", "Content-Type": "multipart/form-data; boundary=x",
                **headers})

    declared = asyncio.run(post({"Content-Length": str(50 * 1024 * 1024 + 200)}))
    assert_problem(declared, 413, "over the limit")
    assert len(sent) == 0  # refused from its Content-Length: nothing read
    sent.clear()
    app = create_app(engine.settings.model_copy(update={"max_upload_bytes": 5 * 1024 * 1024}), engine=engine)
    streamed = asyncio.run(post({}))  # no Content-Length: read until the cap, then refused
    assert_problem(streamed, 413, "over the limit")
    assert len(sent) <= 7


def test_no_token_is_401_even_with_a_huge_body(client):
    response = client.post("/api/v1/search", content=b"x", headers={"Content-Length": str(60 * 1024 * 1024)})
    assert_problem(response, 401)


def test_rate_limit_per_token(world):
    engine, _, tokens = world
    limited = TestClient(create_app(engine.settings.model_copy(update={"rate_limit_per_minute": 3}), engine=engine))
    headers = {"Authorization": f"Bearer {tokens['auditor']}"}
    assert [limited.get("/api/v1/me", headers=headers).status_code for _ in range(3)] == [200] * 3
    refused = limited.get("/api/v1/me", headers=headers)
    assert_problem(refused, 429, "rate limit")
    assert int(refused.headers["retry-after"]) >= 1
    other = {"Authorization": f"Bearer {tokens['reviewer']}"}
    assert limited.get("/api/v1/me", headers=other).status_code == 200  # per token


# -- search, verify, results, reviews ----------------------------------------------------------------

def test_search_mirrors_the_cli_json(client, auth, engine):
    probe = held_out_probes()[0]
    response = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(top_k="3"),
                           files={"image": jpeg(probe)})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine.search(probe, gallery="g", purpose="fraud", case="F-1", top_k=3).as_json()
    assert set(body) == set(expected)
    assert body["decision"] == "match" and body["candidates"][0]["subject"] == probe.parent.name
    entry = engine.ledger.entries(action="search")[-2]
    assert entry["entry_id"] == body["ledger_entry"] and entry["actor"] == "analyst-user"


def test_stranger_is_no_match_and_investigative_gives_leads(client, auth):
    stranger = never_enrolled()[0]
    body = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(),
                       files={"image": jpeg(stranger)}).json()
    assert body["decision"] == "no_match" and body["candidates"] == []
    leads = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(investigative="true", top_k="2"),
                        files={"image": jpeg(stranger)}).json()
    assert leads["mode"] == "investigative" and len(leads["candidates"]) == 2
    assert all("lead, not an identification" in c["label"] for c in leads["candidates"])


@pytest.mark.parametrize("form, files, status, detail", [
    ({"purpose": ""}, None, 422, "purpose is required"),
    ({"case": " "}, None, 422, "case reference is required"),
    ({"purpose": "curiosity"}, None, 403, "not allowed for gallery"),
    ({"gallery": "nope"}, None, 404, "unknown gallery 'nope'"),
    ({}, {"image": ("notes.txt", b"this is not an image", "text/plain")}, 400, "not an image"),
    ({}, {"image": ("empty.jpg", b"", "image/jpeg")}, 400, "empty"),
    ({"top_k": "0"}, None, 422, "top_k"),
])
def test_search_bad_input(client, auth, engine, form, files, status, detail):
    files = files or {"image": jpeg(held_out_probes()[1])}
    denied_before = len(engine.ledger.entries(action="denied"))
    response = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(**form), files=files)
    assert_problem(response, status, detail)
    if status in (403, 422) and "top_k" not in detail:
        assert len(engine.ledger.entries(action="denied")) == denied_before + 1  # refusals are ledgered


def test_search_without_image_or_gallery_is_422(client, auth):
    body = assert_problem(client.post("/api/v1/search", headers=auth("analyst"), data={"purpose": "fraud"}), 422)
    assert {e["field"] for e in body["errors"]} == {"image", "gallery"}


def test_probe_without_a_face_is_400(client, auth, tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (120, 140, 160)).save(buffer, format="PNG")
    response = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(),
                           files={"image": ("wall.png", buffer.getvalue(), "image/png")})
    assert_problem(response, 400, "no face")


def test_verify(client, auth):
    files = {"image_a": jpeg(OPEN_FACES / "macron_2014.jpg"), "image_b": jpeg(OPEN_FACES / "macron_2025.jpg")}
    body = client.post("/api/v1/verify", headers=auth("analyst"), data={"purpose": "p", "case": "c"},
                       files=files).json()
    assert body["decision"] == "same" and body["ledger_entry"]
    assert_problem(client.post("/api/v1/verify", headers=auth("analyst"), data={"case": "c"}, files=files),
                   422, "purpose")
    assert_problem(client.post("/api/v1/verify", headers=auth("reviewer"), data={"purpose": "p", "case": "c"},
                               files=files), 403)


def test_review_flow_and_search_record(client, auth):
    probe = held_out_probes()[2]
    entry = client.post("/api/v1/search", headers=auth("analyst"), data=search_form(),
                        files={"image": jpeg(probe)}).json()["ledger_entry"]
    record = client.get(f"/api/v1/searches/{entry}", headers=auth("reviewer")).json()
    assert record["searched_by"] == "analyst-user" and record["purpose"] == "fraud"
    assert record["candidates"][0]["status"] == "unreviewed"
    assert any(s["ledger_entry"] == entry for s in client.get("/api/v1/searches", headers=auth("reviewer")).json())
    review = {"search": entry, "candidate": 1, "decision": "confirm", "note": "same ear"}
    assert_problem(client.post("/api/v1/reviews", headers=auth("analyst"), json=review), 403)
    done = client.post("/api/v1/reviews", headers=auth("reviewer"), json=review)
    assert done.status_code == 201 and done.json()["status"][0]["status"] == "confirmed"
    assert_problem(client.post("/api/v1/reviews", headers=auth("reviewer"), json=review), 409, "already reviewed")
    assert_problem(client.post("/api/v1/reviews", headers=auth("reviewer"), json={**review, "candidate": 99}),
                   404, "no candidate 99")
    assert_problem(client.post("/api/v1/reviews", headers=auth("reviewer"), json={**review, "decision": "maybe"}),
                   422, "decision")
    assert_problem(client.get("/api/v1/searches/nope", headers=auth("reviewer")), 404, "no search")
    assert_problem(client.get(f"/api/v1/searches/{entry}", headers=auth("enroller")), 403)


# -- galleries and enrolment ---------------------------------------------------------------------------

def test_gallery_routes(client, auth):
    created = client.post("/api/v1/galleries", headers=auth("admin"),
                          json={"name": "staff", "purposes": ["door access"], "retain_days": 30})
    assert created.status_code == 201 and created.json()["purposes"] == ["door access"]
    assert_problem(client.post("/api/v1/galleries", headers=auth("admin"), json={"name": "staff"}), 409, "exists")
    assert_problem(client.post("/api/v1/galleries", headers=auth("analyst"), json={"name": "x"}), 403)
    assert_problem(client.post("/api/v1/galleries", headers=auth("admin"), json={"purposes": []}), 422, "name")
    names = [g["name"] for g in client.get("/api/v1/galleries", headers=auth("reviewer")).json()]
    assert {"g", "staff"} <= set(names)
    patched = client.patch("/api/v1/galleries/staff", headers=auth("admin"),
                           json={"allow_investigative": True, "purposes": []})
    assert patched.json()["allow_investigative"] and patched.json()["purposes"] == []
    assert_problem(client.patch("/api/v1/galleries/staff", headers=auth("admin"), json={"target_fpir": 2}), 422)
    assert_problem(client.patch("/api/v1/galleries/staff", headers=auth("admin"), json={}), 422, "nothing to change")
    assert_problem(client.get("/api/v1/galleries/nope", headers=auth("admin")), 404, "unknown gallery")
    assert client.get("/api/v1/galleries/staff", headers=auth("auditor")).json()["retain_days"] == 30


def test_enroll_uploads_with_provenance(client, auth):
    client.post("/api/v1/galleries", headers=auth("admin"), json={"name": "upl"})
    files = [("images", jpeg(OPEN_FACES / "ardern_2018.jpg")), ("images", ("t.jpg", b"not an image", "image/jpeg"))]
    form = {"subject": "Jacinda Ardern", "source": "press office", "legal_basis": "consent",
            "retain_until": "2031-01-01"}
    body = client.post("/api/v1/galleries/upl/enroll", headers=auth("enroller"), data=form, files=files).json()
    assert body["enrolled"] == 1 and body["failed"] == 1 and "not an image" in body["failures"][0]["error"]
    again = client.post("/api/v1/galleries/upl/enroll", headers=auth("enroller"), data=form, files=files[:1]).json()
    assert again["duplicates"] == 1 and again["enrolled"] == 0
    page = client.get("/api/v1/galleries/upl/images", headers=auth("auditor")).json()
    image = page["images"][0]
    assert page["total"] == 1 and image["source"] == "press office" and image["retain_until"].startswith("2031-01-01")
    crop = client.get(f"/api/v1/faces/{image['face_ids'][0]}/crop", headers=auth("reviewer"))
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert_problem(client.get(f"/api/v1/faces/{image['face_ids'][0]}/crop", headers=auth("enroller")), 403)
    assert_problem(client.get("/api/v1/faces/999999/crop", headers=auth("admin")), 404)
    missing = {k: v for k, v in form.items() if k != "legal_basis"}
    assert_problem(client.post("/api/v1/galleries/upl/enroll", headers=auth("enroller"), data=missing,
                               files=files[:1]), 422, "legal basis")
    assert_problem(client.post("/api/v1/galleries/nope/enroll", headers=auth("enroller"), data=form,
                               files=files[:1]), 404)
    assert_problem(client.post("/api/v1/galleries/upl/enroll", headers=auth("analyst"), data=form,
                               files=files[:1]), 403)


def test_concurrent_enrollments_of_the_same_image_store_it_once(client, auth, engine):
    client.post("/api/v1/galleries", headers=auth("admin"), json={"name": "race"})
    form = {"subject": "Rishi Sunak", "source": "s", "legal_basis": "b"}

    def enrol(_):
        return client.post("/api/v1/galleries/race/enroll", headers=auth("enroller"), data=form,
                           files=[("images", jpeg(OPEN_FACES / "sunak_portrait.jpg"))]).json()

    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(enrol, range(4)))
    assert sorted(b["enrolled"] for b in bodies) == [0, 0, 0, 1]
    assert engine.gallery_info("race")["images"] == 1 and engine.audit_verify().ok


# -- erasure, purge, audit, reports ----------------------------------------------------------------------

def test_erase_purge_audit_and_report(client, auth, engine):
    client.post("/api/v1/galleries", headers=auth("admin"), json={"name": "er"})
    client.post("/api/v1/galleries/er/enroll", headers=auth("admin"), files=[("images", jpeg(OPEN_FACES / "ardern_2018.jpg"))],
                data={"subject": "JA", "source": "s", "legal_basis": "b"})
    receipt = client.post("/api/v1/erase", headers=auth("admin"), data={"reason": "request 9", "gallery": "er"},
                          files={"face": jpeg(OPEN_FACES / "ardern_2022.jpg")})
    assert receipt.status_code == 200 and receipt.json()["images"] == 1
    assert_problem(client.post("/api/v1/erase", headers=auth("admin"), data={"reason": "r", "gallery": "er",
                                                                            "subject": "JA"}), 404, "no subject")
    assert_problem(client.post("/api/v1/erase", headers=auth("admin"), data={"gallery": "er", "subject": "JA"}),
                   422, "reason")
    assert_problem(client.post("/api/v1/erase", headers=auth("auditor"), data={"reason": "r"}), 403)
    assert client.post("/api/v1/purge", headers=auth("admin")).json()["ledger_entry"]

    rows = client.get("/api/v1/audit", headers=auth("auditor"), params={"action": "erase", "limit": 5}).json()
    assert rows[-1]["entry_id"] == receipt.json()["receipt"]
    assert all(r["actor"] == "analyst-user" for r in client.get(
        "/api/v1/audit", headers=auth("auditor"), params={"user": "analyst-user"}).json())
    assert client.get("/api/v1/audit", headers=auth("auditor"), params={"purpose": "fraud"}).json()
    assert_problem(client.get("/api/v1/audit", headers=auth("analyst")), 403)
    assert_problem(client.get("/api/v1/audit", headers=auth("auditor"), params={"since": "yesterday"}), 422)
    check = client.get("/api/v1/audit/verify", headers=auth("auditor")).json()
    assert check["ok"] and check["entries"] > 10
    exported = client.get("/api/v1/audit/export", headers=auth("auditor"), params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert list(csv.DictReader(io.StringIO(exported.text)))[0]["seq"] == "1"
    lines = client.get("/api/v1/audit/export", headers=auth("auditor")).text.splitlines()
    assert json.loads(lines[0])["seq"] == 1
    assert_problem(client.get("/api/v1/audit/export", headers=auth("auditor"), params={"format": "xml"}), 422)
    report = client.get("/api/v1/reports/transparency", headers=auth("auditor")).json()
    assert report["searches"]["total"] >= 1 and report["erasures"]["erased"] >= 1
    assert_problem(client.get("/api/v1/reports/transparency", headers=auth("reviewer")), 403)


# -- the web app -----------------------------------------------------------------------------------------

def form_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(app_client: TestClient, token: str) -> str:
    """Sign in through the form (with its login CSRF token); the session's CSRF token."""
    login_csrf = form_csrf(app_client.get("/login").text)
    response = app_client.post("/login", data={"token": token, "next": "/", "csrf": login_csrf},
                               follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert token not in cookie  # the cookie holds a session id, never the API token
    return csrf_token(app_client.cookies[COOKIE])


def test_web_pages_sign_in_search_review(world):
    engine, _, tokens = world
    app = create_app(engine=engine)
    analyst, reviewer, anonymous = TestClient(app), TestClient(app), TestClient(app)
    assert anonymous.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert "Sign in" in anonymous.get("/login").text
    login_csrf = form_csrf(anonymous.get("/login").text)
    assert anonymous.post("/login", data={"token": "flt_nope", "csrf": login_csrf}).status_code == 401
    csrf = sign_in(analyst, tokens["analyst"])
    page = analyst.get("/")
    assert page.status_code == 200 and 'name="purpose"' in page.text and "Snap a photo" in page.text and "scan.js" in page.text
    probe = held_out_probes()[3]
    form = {**search_form(case="WEB-1"), "csrf": csrf}
    result = analyst.post("/search", data=form, files={"image": jpeg(probe)})
    assert result.status_code == 200 and probe.parent.name in result.text
    assert "data:image/jpeg;base64," in result.text  # the probe, shown without being stored
    assert_html_error = analyst.post("/search", data={**form, "csrf": "wrong"}, files={"image": jpeg(probe)},
                                     headers={"Accept": "text/html"})
    assert assert_html_error.status_code == 403 and "CSRF" in assert_html_error.text
    stranger = analyst.post("/search", data=form, files={"image": jpeg(never_enrolled()[1])})
    assert "No match" in stranger.text and "normal answer" in stranger.text
    entry = re.search(r"/searches/([0-9a-f-]{36})", result.text).group(1)

    csrf_r = sign_in(reviewer, tokens["reviewer"])
    listed = reviewer.get("/searches")
    assert entry in listed.text
    assert 'value="confirm"' in reviewer.get(f"/searches/{entry}").text
    done = reviewer.post(f"/searches/{entry}/review", data={"candidate": "1", "decision": "confirm",
                                                            "csrf": csrf_r}, follow_redirects=True)
    assert done.status_code == 200 and "confirmed" in done.text
    # cookie-authenticated API calls need the CSRF header
    assert_problem(reviewer.post("/api/v1/reviews", json={"search": entry, "candidate": 2, "decision": "reject"}),
                   403, "X-CSRF-Token")
    passed = reviewer.post("/api/v1/reviews", json={"search": entry, "candidate": 1, "decision": "reject"},
                           headers={"X-CSRF-Token": csrf_r})
    assert_problem(passed, 409, "already reviewed")  # past the CSRF check, refused by the engine


def test_web_verify_gallery_audit_transparency_pages(world):
    engine, _, tokens = world
    app = create_app(engine=engine)
    admin, auditor = TestClient(app), TestClient(app)
    csrf = sign_in(admin, tokens["admin"])
    files = {"image_a": jpeg(OPEN_FACES / "macron_2014.jpg"), "image_b": jpeg(OPEN_FACES / "macron_2025.jpg")}
    verified = admin.post("/verify", data={"purpose": "p", "case": "c", "csrf": csrf}, files=files)
    assert "Same person" in verified.text
    gallery = admin.get("/galleries/g")
    assert gallery.status_code == 200 and "/crop" in gallery.text
    person = re.search(r'href="(/galleries/g/people/\d+)"', gallery.text).group(1)
    assert "legal basis: research" in admin.get(person).text  # provenance on the person's page, once per image
    assert admin.get("/galleries/nope", headers={"Accept": "text/html"}).status_code == 404
    sign_in(auditor, tokens["auditor"])
    audit = auditor.get("/audit", params={"action": "search"})
    assert "Ledger intact" in audit.text and "analyst-user" in audit.text
    assert "Transparency report" in auditor.get("/transparency").text
    assert "/crop" not in auditor.get("/galleries/g").text  # auditors see provenance, not faces
