"""The whole workflow in a real browser (Debian's Chromium through Playwright, as tests/test_e2e_browser.py),
at desktop and phone (390 px) sizes: an admin adds a user and sees the token once; an analyst searches
with a photo of two people, picks the face, and starts the next search with the same purpose and case;
a form error keeps what was typed; an enroller finds a person by name, merges a duplicate and renames
it; the audit, results and gallery pages fit a phone without sideways scrolling, with the user in view.
Screenshots are saved in the test's tmp dir (and copied under $FACELEDGER_SCREENSHOTS when it is set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from .conftest import LFW_DIR, OPEN_FACES, gallery_files, held_out_probes, open_test_engine
from .servers import running_serve
from .browsers import chromium, needs_chromium, sign_in
from .test_web_forms import group_photo

pytestmark = needs_chromium

VIEWPORTS = [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("web-e2e") / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["fraud", "missing person"])
    engine.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW sample",
                  legal_basis="research")
    engine.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="g", subject="Jacinda Ardern", source="CC BY",
                  legal_basis="public record")
    for viewport, person in zip(VIEWPORTS, ("Kofi_Annan", "Serena_Williams")):  # a duplicate to merge per size
        w, photos = viewport["width"], sorted((LFW_DIR / person).glob("*.jpg"))
        engine.enroll(photos[:2], gallery="g", subject=f"Person {w}", source="LFW", legal_basis="research")
        engine.enroll(photos[2:3], gallery="g", subject=f"Person dup {w}", source="LFW", legal_basis="research")
    tokens = {role: engine.add_user(f"{role}-b", role=role)[1] for role in ("admin", "enroller", "analyst")}
    engine.close()
    with running_serve(home, home.parent / "server.log") as (base, _process):
        group = home.parent / "two-people.jpg"
        group.write_bytes(group_photo())
        yield base, tokens, group


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(params=VIEWPORTS, ids=["desktop", "phone"])
def page(request, browser, tmp_path):
    context = browser.new_context(viewport=request.param)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))  # a script error on a page
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" and not r.url.endswith("/favicon.ico")
            else None)  # an image, script or style sheet that failed (a page may answer 4xx on purpose)
    page.shots = tmp_path / "screenshots"
    page.shots.mkdir()
    page.width = request.param["width"]
    page.console_errors = errors
    yield page
    context.close()
    keep = os.environ.get("FACELEDGER_SCREENSHOTS")
    if keep:
        target = Path(keep) / request.node.name.split("[")[0] / str(request.param["width"])
        target.mkdir(parents=True, exist_ok=True)
        for shot in page.shots.iterdir():
            shutil.copy(shot, target / shot.name)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def fits(page) -> None:
    """No sideways scrolling; the signed-in user and role in view; the menu on at most two lines."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), page.url
    me = page.locator("header .who .me")
    assert me.is_visible() and "(" in me.inner_text()
    box = me.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.width + 1
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('header nav a')).lineHeight) || 24")
    assert page.locator("header nav").bounding_box()["height"] <= 2 * line + 8


def test_admin_adds_a_user_and_sees_the_token_once(server, page):
    base, tokens, _ = server
    sign_in(page, base, tokens["admin"])
    page.click("header nav a[href='/admin/users']")
    page.fill("#add-user input[name=name]", f"new-{page.width}")
    page.select_option("#add-user select[name=role]", "reviewer")
    page.click("#add-user button[type=submit]")
    token = page.inner_text("#new-token").strip()
    assert token.startswith("flt_")
    assert f"new-{page.width}" in page.inner_text(f"#user-new-{page.width}")
    fits(page)
    shoot(page, "1-user-added")
    page.click(f"#user-new-{page.width} button:has-text('Disable')")
    page.wait_for_selector(f"#user-new-{page.width} .badge.rejected")
    assert token not in page.content()
    assert httpx.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    page.goto(base + "/audit")
    assert "user.disable" in page.inner_text("main")
    fits(page)
    shoot(page, "2-audit")
    assert not page.console_errors


def test_analyst_picks_a_face_and_the_next_search_keeps_purpose_and_case(server, page):
    base, tokens, group = server
    sign_in(page, base, tokens["analyst"])
    case = f"G-{page.width}"
    page.set_input_files("input[name=image]", str(group))
    page.select_option("select[name=gallery]", "g")
    page.fill("input[name=purpose]", "missing person")
    page.fill("input[name=case]", case)
    page.click("form#search-form button[type=submit]")
    page.wait_for_selector("img.overview")
    assert "Which face?" in page.inner_text("main") and "--" not in page.inner_text("main")
    assert page.locator("img.overview").evaluate("i => i.complete && i.naturalWidth > 0")
    fits(page)
    shoot(page, "1-choose-face")
    buttons = page.locator("button[name=face]")
    assert buttons.count() == 2
    buttons.nth(1).click()  # the right-hand face: Ardern (smaller than Macron's in this photo)
    page.wait_for_selector("section.candidate")
    assert "Jacinda Ardern" in page.inner_text("section.candidate")
    fits(page)
    shoot(page, "2-result")
    page.click("#new-search")
    assert page.input_value("input[name=purpose]") == "missing person" and page.input_value("input[name=case]") == case
    # an error keeps what was typed and the photo, in plain words
    page.set_input_files("input[name=image]", str(held_out_probes()[0]))
    page.fill("input[name=purpose]", "curiosity")
    page.click("form#search-form button[type=submit]")
    page.wait_for_selector("p.alert")
    assert "not allowed" in page.inner_text("p.alert") and "--" not in page.inner_text("p.alert")
    assert page.input_value("input[name=purpose]") == "curiosity" and page.input_value("input[name=case]") == case
    shoot(page, "3-form-error")
    page.fill("input[name=purpose]", "fraud")
    page.click("form#search-form button[type=submit]")  # the kept photo is searched
    page.wait_for_selector("dl.facts")
    page.goto(base + "/searches")
    assert case in page.inner_text("main")
    fits(page)
    shoot(page, "4-results")
    assert not page.console_errors


def test_enroller_finds_merges_and_renames_a_person(server, page):
    base, tokens, _ = server
    w = page.width
    sign_in(page, base, tokens["enroller"])
    page.goto(base + "/galleries/g")
    page.fill("input[name=q]", f"dup {w}")
    page.click("form.filters button")
    page.click(f"article.person a:has-text('Person dup {w}')")
    page.fill("#merge-form input[name=into]", f"Person dup {w}")
    page.click("#merge-form button")
    assert "into itself" in page.inner_text("p.alert")
    page.fill("#merge-form input[name=into]", f"Person {w}")
    page.click("#merge-form button")
    page.wait_for_selector(f"h1:has-text('Person {w}')")
    assert "3 faces in 3 images" in page.inner_text("main")
    page.fill("#rename-form input[name=new_name]", f"Renamed person {w}")
    page.click("#rename-form button")
    page.wait_for_selector(f"h1:has-text('Renamed person {w}')")
    fits(page)
    shoot(page, "1-subject")
    page.click("main a:has-text('← g')")
    fits(page)
    shoot(page, "2-people")
    assert not page.console_errors


def test_admin_sees_the_faces_of_people_and_the_edit_forms(server, page):
    base, tokens, _ = server
    sign_in(page, base, tokens["admin"])
    page.goto(base + "/galleries/g?q=Merkel")
    thumb = page.locator("article.person img.thumb").first
    thumb.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)")
    assert thumb.evaluate("i => i.naturalWidth > 0")
    page.click("article.person h3 a")
    page.wait_for_function("() => [...document.querySelectorAll('img.face')].every(i => i.complete)")
    main = page.inner_text("main")
    assert main.count("legal basis: research") == 3 and page.locator("#rename-form").is_visible()
    assert page.locator("form.face-form button:has-text('Remove')").count() == 3
    fits(page)
    shoot(page, "1-person")
    assert not page.console_errors
