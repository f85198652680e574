"""The web app in process (FastAPI's TestClient over a real engine), signed in the way a browser signs in:
GET /login for the form's CSRF token, POST the API token with it, keep the session cookie."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from faceledger.api import create_app

HTML = {"Accept": "text/html"}
"""A browser's Accept header: errors come back as the HTML error page, not problem+json."""
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def signed_in(engine, token: str, *, page: str = "/galleries") -> tuple[TestClient, str]:
    """A TestClient signed in with `token` through the sign-in form, and its session's CSRF token as the
    forms of `page` carry it."""
    client = TestClient(create_app(engine=engine), headers=HTML)
    login_csrf = CSRF_FIELD.search(client.get("/login").text).group(1)
    client.post("/login", data={"token": token, "csrf": login_csrf}, follow_redirects=False)
    return client, CSRF_FIELD.search(client.get(page).text).group(1)
