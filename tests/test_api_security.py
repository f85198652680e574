"""The HTTP surface: server-side web sessions, login CSRF, security headers, out-of-range numbers.

Each test names the defence it checks; docs/security.md ("The HTTP surface") describes them."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from faceledger.api import create_app
from faceledger.api.security import CSP, DOCS_CSP
from faceledger.api.session import COOKIE, LOGIN_COOKIE
from faceledger.store import LedgerEntry, User, WebSession

from .conftest import OPEN_FACES, open_test_engine
from .browsers import launch, needs_chromium
from .servers import running_serve

PROBLEM = "application/problem+json"
TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "api" / "templates"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An engine with one small gallery and a user of a few roles; no models are needed by these tests."""
    engine = open_test_engine(tmp_path_factory.mktemp("httpsec") / "home")
    engine.create_gallery("g")
    tokens = {role: engine.add_user(f"{role}-sec", role=role)[1] for role in ("admin", "analyst", "reviewer")}
    app = create_app(engine=engine)
    yield engine, app, tokens
    engine.close()


@pytest.fixture
def engine(world):
    return world[0]


@pytest.fixture
def app(world):
    return world[1]


@pytest.fixture
def tokens(world):
    return world[2]


def form_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login_csrf(html: str) -> str:
    """The token of the sign-in form (a signed-in page also has the sign-out form's)."""
    return form_csrf(html[html.index('action="/login"'):])


def sign_in(client: TestClient, token: str):
    """The form's way: GET /login (pre-session cookie and token), then POST it."""
    login_csrf_ = login_csrf(client.get("/login").text)
    return client.post("/login", data={"token": token, "next": "/galleries", "csrf": login_csrf_},
                       follow_redirects=False)


def session_row(engine, session_id: str) -> WebSession | None:
    with engine.sessions() as session:
        return session.get(WebSession, hashlib.sha256(session_id.encode()).hexdigest())


# -- server-side sessions --------------------------------------------------------------------------------

def test_the_cookie_holds_a_random_session_id_and_the_store_only_its_hash(engine, app, tokens):
    client = TestClient(app)
    response = sign_in(client, tokens["analyst"])
    assert response.status_code == 303 and response.headers["location"] == "/galleries"
    session_id = client.cookies[COOKIE]
    assert session_id != tokens["analyst"] and tokens["analyst"] not in response.headers["set-cookie"]
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Secure" not in cookie  # plain http
    row = session_row(engine, session_id)
    assert row is not None and row.expires_at is not None
    assert session_id not in repr([row.id_sha256, row.user_id]) and row.id_sha256 != session_id  # only its hash
    assert client.get("/api/v1/me").json()["user"] == "analyst-sec"
    again = TestClient(app)
    sign_in(again, tokens["analyst"])
    assert again.cookies[COOKIE] != session_id  # a new id at every sign-in


def test_sign_out_kills_the_cookie_even_when_it_was_copied(engine, app, tokens):
    client = TestClient(app)
    sign_in(client, tokens["reviewer"])
    session_id = client.cookies[COOKIE]
    csrf = form_csrf(client.get("/galleries").text)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert session_row(engine, session_id) is None
    copied = TestClient(app, cookies={COOKIE: session_id})
    assert copied.get("/galleries", follow_redirects=False).headers["location"].startswith("/login")
    me = copied.get("/api/v1/me")
    assert me.status_code == 401 and me.headers["content-type"].startswith(PROBLEM)


def test_sign_in_and_out_are_ledgered_without_token_or_session_id(engine, app, tokens):
    client = TestClient(app)
    sign_in(client, tokens["analyst"])
    session_id = client.cookies[COOKIE]
    client.post("/logout", data={"csrf": form_csrf(client.get("/galleries").text)})
    with engine.sessions() as session:
        rows = session.execute(select(LedgerEntry).where(LedgerEntry.action.in_(["session.login", "session.logout"]))
                               .order_by(LedgerEntry.seq.desc()).limit(2)).scalars().all()
    assert [r.action for r in rows] == ["session.logout", "session.login"]
    assert {r.actor for r in rows} == {"analyst-sec"}
    for row in rows:
        assert tokens["analyst"] not in row.payload and session_id not in row.payload
        assert hashlib.sha256(session_id.encode()).hexdigest() not in row.payload
    assert engine.audit_verify().ok


def test_a_disabled_users_session_dies_at_once_and_stays_dead(engine, app):
    _, token = engine.add_user("leaver", role="analyst")
    client = TestClient(app)
    sign_in(client, token)
    session_id = client.cookies[COOKIE]
    assert client.get("/api/v1/me").status_code == 200
    engine.set_user_disabled("leaver", True)
    assert session_row(engine, session_id) is None  # the rows are gone with the user's access
    assert client.get("/api/v1/me").status_code == 401
    engine.set_user_disabled("leaver", False)
    assert client.get("/api/v1/me").status_code == 401  # re-enabling does not bring the old session back


def test_a_session_of_a_user_disabled_behind_the_servers_back_is_refused(engine, app):
    """Even if the rows were not deleted (a direct change to the store), a disabled user's cookie is dead."""
    _, token = engine.add_user("disabled-in-db", role="analyst")
    client = TestClient(app)
    sign_in(client, token)
    with engine.writing() as session:
        session.execute(update(User).where(User.name == "disabled-in-db").values(disabled=True))
        session.commit()
    assert client.get("/api/v1/me").status_code == 401
    assert session_row(engine, client.cookies.get(COOKIE) or "x") is None


@pytest.mark.parametrize("column, ago, alive", [
    ("last_seen_at", timedelta(minutes=31), False),   # idle past FACELEDGER_SESSION_IDLE_MINUTES (30)
    ("last_seen_at", timedelta(minutes=5), True),     # idle, but not for long
    ("expires_at", timedelta(seconds=1), False),      # past FACELEDGER_SESSION_MAX_HOURS since sign-in
])
def test_idle_and_absolute_timeouts(engine, app, tokens, column, ago, alive):
    client = TestClient(app)
    sign_in(client, tokens["analyst"])
    session_id = client.cookies[COOKIE]
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    with engine.writing() as session:
        session.execute(update(WebSession).where(WebSession.id_sha256 == digest)
                        .values({column: datetime.now(timezone.utc) - ago}))
        session.commit()
    assert (client.get("/api/v1/me").status_code == 200) is alive
    row = session_row(engine, session_id)
    assert (row is not None) is alive
    if alive:  # used now: last seen moves on (written at most once a minute)
        seen = row.last_seen_at.replace(tzinfo=row.last_seen_at.tzinfo or timezone.utc)
        assert datetime.now(timezone.utc) - seen < ago


def test_the_api_token_is_no_longer_accepted_as_a_cookie(app, tokens):
    """The old design's cookie was the bearer token: such a cookie is not a session."""
    client = TestClient(app, cookies={COOKIE: tokens["admin"]})
    assert client.get("/api/v1/me").status_code == 401


def test_secure_cookies_over_https(app, tokens):
    client = TestClient(app, base_url="https://testserver")
    login_page = client.get("/login")
    assert "Secure" in login_page.headers["set-cookie"]
    response = client.post("/login", data={"token": tokens["analyst"], "csrf": form_csrf(login_page.text)},
                           follow_redirects=False)
    assert response.status_code == 303
    assert any(COOKIE in c and "Secure" in c for c in response.headers.get_list("set-cookie"))


# -- login CSRF ------------------------------------------------------------------------------------------

def test_sign_in_needs_the_forms_csrf_token(app, tokens):
    client = TestClient(app)
    page = client.get("/login")
    assert LOGIN_COOKIE in client.cookies and "path=/login" in page.headers["set-cookie"].lower()
    no_token = client.post("/login", data={"token": tokens["analyst"]}, follow_redirects=False)
    assert no_token.status_code == 403 and COOKIE not in client.cookies
    wrong = client.post("/login", data={"token": tokens["analyst"], "csrf": "0" * 32}, follow_redirects=False)
    assert wrong.status_code == 403 and "expired" in wrong.text and COOKIE not in client.cookies
    # another site's page can post the form, but cannot read this browser's pre-session cookie or the page
    attacker = TestClient(app)
    forged = attacker.post("/login", data={"token": tokens["analyst"], "csrf": form_csrf(page.text)},
                           follow_redirects=False)
    assert forged.status_code == 403 and COOKIE not in attacker.cookies
    fresh = form_csrf(client.get("/login").text)
    assert client.post("/login", data={"token": tokens["analyst"], "csrf": fresh},
                       follow_redirects=False).status_code == 303
    assert COOKIE in client.cookies


def test_sign_in_does_not_redirect_off_site(app, tokens):
    client = TestClient(app)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        csrf = login_csrf(client.get("/login").text)
        response = client.post("/login", data={"token": tokens["analyst"], "csrf": csrf, "next": target},
                               follow_redirects=False)
        assert response.headers["location"] == "/"


# -- headers ---------------------------------------------------------------------------------------------

def test_security_headers_on_pages_api_and_errors(app, tokens):
    client = TestClient(app)
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    for response in (client.get("/login"), client.get("/api/v1/me", headers=bearer), client.get("/api/v1/me"),
                     client.get("/api/v1/galleries/nope", headers=bearer), client.get("/healthz")):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP and "unsafe" not in CSP
    static = client.get("/static/app.js")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"
    assert static.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs")
    assert docs.headers["content-security-policy"] == DOCS_CSP and "frame-ancestors 'none'" in DOCS_CSP


def test_face_crops_are_not_cached(engine, app, tokens):
    """A route's own Cache-Control (the crop's `private, max-age`) is replaced: faces are never cached."""
    client = TestClient(app)
    response = client.get("/api/v1/faces/1/crop", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert response.headers.get_list("cache-control") == ["no-store"]


def test_templates_have_no_inline_script_style_or_handlers():
    """The CSP forbids inline script and style: a template with one would silently break in a browser."""
    found = []
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"<style\b", r"\sstyle=", r"\son[a-z]+\s*=",
                        r"javascript:"):
            found += [f"{template.name}: {m.group(0)}" for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert found == []


# -- out-of-range numbers: 422, never a 500 ----------------------------------------------------------------

HUGE = str(2**70)


@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", f"/api/v1/faces/{HUGE}/crop", {}),
    ("GET", f"/api/v1/faces/{2**63}/crop", {}),
    ("GET", "/api/v1/galleries/g/images", {"params": {"offset": HUGE}}),
    ("GET", "/api/v1/galleries/g/images", {"params": {"offset": str(2**63)}}),
    ("POST", "/api/v1/galleries", {"json": {"name": "huge", "retain_days": 10**12}}),
    ("POST", "/api/v1/galleries", {"json": {"name": "huge2", "probe_retain_days": 10**6}}),
    ("PATCH", "/api/v1/galleries/g", {"json": {"retain_days": 10**7}}),
    ("POST", "/api/v1/reviews", {"json": {"search": "x", "candidate": 10**30, "decision": "confirm"}}),
])
def test_out_of_range_numbers_are_422(app, tokens, method, path, kwargs):
    client = TestClient(app, raise_server_exceptions=False)
    response = client.request(method, path, headers={"Authorization": f"Bearer {tokens['admin']}"}, **kwargs)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)


def test_a_number_the_database_cannot_bind_is_422_on_any_route(app, tokens):
    """The backstop for routes without bounds (here a page's `offset`): the driver's OverflowError."""
    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/galleries/g", params={"offset": HUGE},
                          headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert response.status_code == 422, response.text
    assert "out of the range" in response.json()["detail"]


# -- the policy in a real browser --------------------------------------------------------------------------

WATCH_CSP = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`faceledger serve` in a subprocess over a gallery with one face whose image file is then removed,
    so its crop is a 404 that the page must show as a placeholder."""
    home = tmp_path_factory.mktemp("csp") / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g")
    moved = home.parent / "moved.jpg"
    shutil.copy(OPEN_FACES / "sunak_portrait.jpg", moved)
    engine.enroll([moved], gallery="g", subject="RS", source="s", legal_basis="b")
    moved.unlink()
    _, token = engine.add_user("csp-admin", role="admin")
    engine.close()
    with running_serve(home, home.parent / "server.log", start_within=180) as (base, _process):
        yield base, token


@needs_chromium
def test_the_pages_work_under_the_policy_in_a_browser(served):
    """No page trips the CSP: a missing face crop becomes the placeholder (app.js, not an inline handler),
    and the error page's Back link works without a javascript: URL."""
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = served
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context().new_page()
            page.add_init_script(WATCH_CSP)
            page.goto(base + "/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert "/login" not in page.url
            violations = []
            for path in ("/", "/galleries", "/galleries/g", "/verify", "/galleries/nope"):
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                violations += [f"{path}: {v}" for v in page.evaluate("window.__csp")]
                if path == "/galleries/g":
                    page.wait_for_selector("div.missing")  # the people list's thumbnail whose file is gone
                    assert page.locator("div.missing").count() == 1, page.content()
                    assert page.locator("img.thumb").count() == 0
            page.click("a.back-link")
            page.wait_for_url(base + "/verify")
            violations += [f"back: {v}" for v in page.evaluate("window.__csp")]
            assert violations == []
        finally:
            browser.close()
