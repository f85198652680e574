"""/docs and /redoc work offline: their assets come from this server (the pinned fastapi-offline files,
checked by sha256), the pages name no other host, their CSP allows scripts from 'self' only, and in
Chromium, with every request to another host blocked, both render the API's title."""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

import httpx
import pytest

from faceledger.api.docs_offline import ASSETS_PREFIX, PINNED, asset_problems, assets_dir
from faceledger.api.security import DOCS_CSP

from .servers import running_serve
from .browsers import launch, needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs-offline") / "home"
    with running_serve(home, home.parent / "server.log") as (base, _process):
        yield base


def test_the_installed_assets_are_the_pinned_ones(tmp_path):
    assert asset_problems(assets_dir()) == []
    copy = tmp_path / "static"
    shutil.copytree(assets_dir(), copy)
    (copy / "redoc.standalone.js").write_bytes(b"alert(1)")
    (copy / "favicon.png").unlink()
    problems = asset_problems(copy)
    assert len(problems) == 2
    assert any("redoc.standalone.js has sha256" in p for p in problems)
    assert any("favicon.png is missing" in p for p in problems)


def test_docs_pages_name_no_other_host_and_their_assets_load(server):
    for path in ("/docs", "/redoc"):
        response = httpx.get(server + path)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == DOCS_CSP
        assert not re.search(r"https?://", response.text), response.text
        assert "<script>" not in response.text  # no inline script: every script has a src on this server
        for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
            loaded = httpx.get(server + asset)
            assert asset.startswith("/") and loaded.status_code == 200, asset
    assert "http" not in DOCS_CSP and "script-src 'self';" in DOCS_CSP
    for name in PINNED:
        assert httpx.get(f"{server}{ASSETS_PREFIX}/{name}").status_code == 200


@needs_chromium
def test_docs_render_in_chromium_with_other_hosts_blocked(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    own = urlsplit(server).netloc
    elsewhere: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def only_this_server(route):
                if urlsplit(route.request.url).netloc == own or route.request.url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_this_server)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(server + "/docs")
            title = page.locator(".swagger-ui .info .title")
            title.wait_for(timeout=30_000)
            assert "faceledger" in title.inner_text()
            page.locator(".opblock-tag").first.wait_for(timeout=30_000)  # the operations, from /openapi.json
            page.screenshot(path=str(tmp_path / "docs.png"))
            page.goto(server + "/redoc")
            heading = page.locator("h1", has_text="faceledger")
            heading.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "redoc.png"))
        finally:
            browser.close()
    assert elsewhere == []
    # ReDoc always tries to show Redocly's logo from its CDN (hiding it when that fails): the policy blocks
    # it before any request is made. That is the one refusal expected; a blocked script or style is not.
    assert [p for p in problems if "https://cdn.redoc.ly/redoc/logo-mini.svg" not in p] == []
