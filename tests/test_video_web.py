"""The web app's Video page: forms and errors through TestClient (one engine in this process), and the
whole flow in Debian's Chromium at desktop and phone (390 px) sizes against a real `faceledger serve`:
upload, progress, timeline, a matched track's shots and candidates, the review page, a redacted copy."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("av")

from faceledger.api import create_app

from .conftest import OPEN_FACES, open_test_engine
from .servers import running_serve
from .browsers import launch, needs_chromium, sign_in
from .video_scenes import crossing, write
from . import web_clients

FORM = {"gallery": "g", "purpose": "investigation", "case": "W-1", "every_ms": "200"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-web")
    engine = open_test_engine(folder / "home")
    engine.create_gallery("g", purposes=["investigation"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="macron", source="test", legal_basis="b")
    tokens = {name: engine.add_user(name, role=role)[1] for name, role in
              (("analyst-w", "analyst"), ("analyst-x", "analyst"), ("reviewer-w", "reviewer"))}
    video = write(crossing(), folder / "crossing.mp4")
    yield engine, tokens, video
    engine.close()


def signed_in(world, user: str) -> tuple[TestClient, str]:
    engine, tokens, _ = world
    return web_clients.signed_in(engine, tokens[user], page="/video")


def _finished(client: TestClient, url: str, within: float = 120) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page = client.get(url).text
        if re.search(r'data-state="(done|failed)"', page):
            return page
        assert '<meta http-equiv="refresh"' in page and "<progress" in page  # still going: it refreshes itself
        time.sleep(0.3)
    pytest.fail(f"{url} did not finish within {within} s")


def test_the_video_form_keeps_what_was_typed_and_says_what_is_wrong(world):
    client, csrf = signed_in(world, "analyst-w")
    video = world[2]
    upload = {"video": ("crossing.mp4", video.read_bytes(), "video/mp4")}
    no_csrf = client.post("/video", data=FORM, files=upload)
    assert no_csrf.status_code == 403
    no_purpose = client.post("/video", data={**FORM, "purpose": "", "csrf": csrf}, files=upload)
    assert no_purpose.status_code == 422 and "the Purpose field" in no_purpose.text
    assert 'value="W-1"' in no_purpose.text and "--purpose" not in no_purpose.text
    no_file = client.post("/video", data={**FORM, "csrf": csrf})
    assert no_file.status_code == 422 and "choose a video" in no_file.text
    text = client.post("/video", data={**FORM, "csrf": csrf},
                       files={"video": ("notes.mp4", b"not a video at all\n" * 50, "video/mp4")})
    assert text.status_code == 400 and "notes.mp4: cannot be read as a video" in text.text
    assert "/video/jobs/" not in text.text.split("Your video jobs")[0] and "home/video" not in text.text


def test_a_job_page_shows_progress_then_the_timeline_and_only_to_its_owner(world):
    client, csrf = signed_in(world, "analyst-w")
    answer = client.post("/video", data={**FORM, "csrf": csrf}, follow_redirects=False,
                         files={"video": ("crossing.mp4", world[2].read_bytes(), "video/mp4")})
    assert answer.status_code == 303
    url = answer.headers["location"]
    page = _finished(client, url)
    assert 'data-state="done"' in page and '<meta http-equiv="refresh"' not in page
    assert page.count('class="lane matched"') == 1 and page.count('class="lane bystander"') == 1
    assert "macron" in page and "deleted from the server when the job ended" in page
    review = re.search(r'href="(/searches/[0-9a-f-]+)#candidate-1"', page).group(1)
    bystanders = page.split('id="bystanders"')[1].split("</section>")[0]
    assert "<img" not in bystanders and "Track 2" in bystanders
    # the matched track is an ordinary reviewable search: a reviewer reviews it on the result page
    reviewer, reviewer_csrf = signed_in(world, "reviewer-w")
    result = reviewer.get(review)
    assert result.status_code == 200 and "macron" in result.text and "/review" in result.text
    done = reviewer.post(review + "/review", data={"candidate": "1", "decision": "confirm", "csrf": reviewer_csrf},
                         follow_redirects=False)
    assert done.status_code == 303
    assert "confirmed" in reviewer.get(review).text
    other, _ = signed_in(world, "analyst-x")
    assert other.get(url).status_code == 404
    assert url not in other.get("/video").text
    assert url in client.get("/video").text  # the owner's job list
    redact_without_file = client.post(url + "/redact", data={"csrf": csrf, "keep_track": "1"})
    assert redact_without_file.status_code == 422 and "choose the same video again" in redact_without_file.text


def test_a_full_queue_refuses_a_new_video_and_keeps_nothing(world, monkeypatch):
    from faceledger.services import video_jobs

    engine, tokens, video = world
    jobs_dir = engine.settings.home / "video" / "jobs"
    before = {p.name for p in jobs_dir.iterdir()} if jobs_dir.is_dir() else set()
    monkeypatch.setattr(video_jobs, "MAX_WAITING", 0)  # as if every place in the queue were taken
    client = TestClient(create_app(engine=engine))
    answer = client.post("/api/v1/video/search", headers={"Authorization": f"Bearer {tokens['analyst-w']}"},
                         data={k: v for k, v in FORM.items() if k != "every_ms"},
                         files={"video": ("crossing.mp4", video.read_bytes(), "video/mp4")})
    assert answer.status_code == 409 and "already waiting" in answer.json()["detail"]
    assert {p.name for p in jobs_dir.iterdir()} == before | {"runners"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video-web-e2e")
    home = folder / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["investigation"])
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="macron", source="test", legal_basis="b")
    token = engine.add_user("analyst-e2e", role="analyst")[1]
    engine.close()
    video = write(crossing(), folder / "crossing.mp4")
    with running_serve(home, folder / "server.log", start_within=180) as (base, _process):
        yield base, token, video


@needs_chromium
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_upload_progress_timeline_review_and_redacted_copy_in_a_browser(served, viewport, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token, video = served
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport=viewport, accept_downloads=True)
            page = context.new_page()
            failed: list[str] = []
            page.on("pageerror", lambda exc: failed.append(str(exc)))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            sign_in(page, base, token)
            page.click("header nav a[href='/video']")
            page.set_input_files("#video-input", str(video))
            page.fill("input[name=purpose]", "investigation")
            page.fill("input[name=case]", f"E-{viewport['width']}")
            page.click("#video-form button[type=submit]")
            page.wait_for_selector("#job")
            page.wait_for_selector("#job[data-state=done]", timeout=120_000)  # the page refreshes itself
            assert page.locator(".lane.matched").count() == 1 and page.locator(".lane.bystander").count() == 1
            shot = page.locator("#track-1 img.face")
            shot.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=shot.element_handle())
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
            page.click("#track-1 a.review-link")
            page.wait_for_selector("section.candidate")
            assert "macron" in page.inner_text("section.candidate")
            page.go_back()
            page.wait_for_selector("#redact-form")
            page.set_input_files("#redact-form input[type=file]", str(video))
            page.click("#redact-form button[type=submit]")
            page.wait_for_selector("#job[data-state=done]", timeout=120_000)
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "redacted.mp4"
            download.value.save_as(saved)
            assert saved.stat().st_size > 1000 and saved.read_bytes()[4:8] == b"ftyp"
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert not failed, failed
        finally:
            browser.close()
