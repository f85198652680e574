"""End to end in a real browser: `faceledger serve` in a subprocess, Debian's Chromium driven by Playwright.

Sign in as an analyst, search with a photo, read the result, sign out; sign in as a reviewer, confirm the
candidate. Screenshots (desktop and phone sizes) are saved in the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .conftest import gallery_files, held_out_probes, open_test_engine
from .browsers import chromium, needs_chromium, sign_in
from .servers import running_serve

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e") / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["fraud", "missing person"])
    engine.enroll(gallery_files()[:12], gallery="g", subject_from_folder=True, source="LFW sample",
                  legal_basis="research")
    tokens = {role: engine.add_user(f"{role}-e2e", role=role)[1] for role in ("analyst", "reviewer")}
    engine.close()
    with running_serve(home, home.parent / "server.log") as (base, _process):
        yield base, tokens, home.parent


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_sign_in_search_result_review(server, browser, viewport, tmp_path):
    base, tokens, _ = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    sign_in(page, base, tokens["analyst"])
    page.screenshot(path=str(shots / "1-search.png"), full_page=True)
    probe = held_out_probes()[1]
    page.set_input_files("input[name=image]", str(probe))
    page.select_option("select[name=gallery]", "g")
    page.fill("input[name=purpose]", "fraud")
    page.fill("input[name=case]", f"E2E-{viewport['width']}")
    page.click("form#search-form button[type=submit]")
    page.wait_for_selector("section.candidate")
    text = page.inner_text("main")
    assert probe.parent.name in text and "false-match rate" in text
    assert page.locator("section.candidate img.face").first.get_attribute("src").startswith("data:image/jpeg")
    crop = page.locator(f"section.candidate img[alt='{probe.parent.name}']").first
    # the crop is a separate request: on a busy machine it may still be on its way (bounded wait, then judged)
    crop.evaluate("img => img.complete ? true : new Promise(done => { img.onload = img.onerror = done; })")
    assert crop.evaluate("img => img.complete && img.naturalWidth > 0"), "the candidate's face crop did not load"
    page.screenshot(path=str(shots / "2-result.png"), full_page=True)
    entry = re.search(r"/searches/([0-9a-f-]{36})", page.content()).group(1)
    page.click("header form.who button")
    page.wait_for_url(re.compile(r".*/login.*"))

    sign_in(page, base, tokens["reviewer"])
    page.goto(base + "/searches")
    page.click(f"a[href='/searches/{entry}']")
    page.fill("#candidate-1 input[name=note]", "same person: ears and hairline")
    page.click("#candidate-1 button[value=confirm]")
    page.wait_for_selector("#candidate-1 .badge.confirmed")
    assert "reviewer-e2e: confirm" in page.inner_text("#candidate-1")
    page.screenshot(path=str(shots / "3-reviewed.png"), full_page=True)
    context.close()
    for shot in shots.iterdir():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("FACELEDGER_SCREENSHOTS")
    if keep:
        target = Path(keep) / f"{viewport['width']}"
        target.mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, target / shot.name)
