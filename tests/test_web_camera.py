"""The camera in the web app, in Debian's Chromium with a fake camera (Playwright, as test_web_browser.py).

Chromium plays a Y4M file made in the test from committed stills as its camera
(--use-fake-device-for-media-stream --use-file-for-fake-video-capture): a face that approaches (small,
coming closer, then steady). Scan mode: "closer" is shown first, the scan searches once, the result
page names the enrolled person, and the ledger holds one search entry for the scan; a stranger's scan
answers "no match". Snap mode: one photo taken from the camera, searched, result shown. Desktop and
390-px phone sizes; screenshots in the test's tmp dir (and under $FACELEDGER_SCREENSHOTS when set).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from .conftest import OPEN_FACES, gallery_files, open_test_engine
from .servers import running_serve
from .browsers import launch, needs_chromium, sign_in
from .test_scan import ENROLLED, STRANGER, approach_sides, scene_frame

pytestmark = needs_chromium

VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
FPS = 10

WATCH_FEEDBACK = """() => {
  const el = document.getElementById('scan-feedback');
  const seen = [];
  new MutationObserver(() => {
    const code = el.dataset.code;
    if (code && seen[seen.length - 1] !== code) { seen.push(code); sessionStorage.setItem('seen', JSON.stringify(seen)); }
  }).observe(el, {attributes: true, childList: true, characterData: true, subtree: true});
}"""
"""The feedback codes the page shows, in order, kept in sessionStorage so they survive the navigation to the
result page (the test's own instrument; the page does not keep them)."""


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = FPS) -> Path:
    """Raw 4:2:0 frames in a YUV4MPEG2 file, the format Chromium's fake camera plays (looping)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("web-camera") / "home"
    engine = open_test_engine(home)
    engine.create_gallery("g", purposes=["fraud", "missing person"])
    engine.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW sample",
                  legal_basis="research")
    engine.enroll([OPEN_FACES / "macron_2025.jpg"], gallery="g", subject="Emmanuel Macron", source="CC BY",
                  legal_basis="public record")
    tokens = {role: engine.add_user(f"{role}-cam", role=role)[1] for role in ("analyst", "auditor")}
    engine.close()
    with running_serve(home, home.parent / "server.log") as (base, _process):
        yield base, tokens, home.parent


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as running:
        yield running


def camera(playwright, directory: Path, name: str, frames: list[np.ndarray]):
    """A headless Chromium whose camera plays `frames` (in a loop)."""
    video = write_y4m(frames, directory / f"{name}.y4m")
    return launch(playwright, ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                               f"--use-file-for-fake-video-capture={video}"])


@pytest.fixture(scope="module")
def approaching(playwright, tmp_path_factory):
    """The enrolled person (a photo of another year) approaching the camera, then steady."""
    browser = camera(playwright, tmp_path_factory.mktemp("camera"), "approach",
                     [scene_frame(ENROLLED, s) for s in approach_sides(FPS)])
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def stranger(playwright, tmp_path_factory):
    browser = camera(playwright, tmp_path_factory.mktemp("camera"), "stranger",
                     [scene_frame(STRANGER, s) for s in approach_sides(FPS)])
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def steady(playwright, tmp_path_factory):
    """The enrolled person close to the camera and still, for a snapshot."""
    browser = camera(playwright, tmp_path_factory.mktemp("camera"), "steady", [scene_frame(ENROLLED, 230)] * FPS)
    yield browser
    browser.close()


def open_page(browser, viewport: str, tmp_path, request):
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    frames: list[int] = []
    page.on("response", lambda r: frames.append(r.status) if r.url.endswith("/frames") else None)
    page.errors, page.frames_posted, page.width = errors, frames, VIEWPORTS[viewport]["width"]
    page.shots = tmp_path / "screenshots"
    page.shots.mkdir(exist_ok=True)
    request.addfinalizer(context.close)
    request.addfinalizer(lambda: _keep_screenshots(page.shots, request.node.name))
    return page


def _keep_screenshots(shots: Path, test: str) -> None:
    keep = os.environ.get("FACELEDGER_SCREENSHOTS")
    if keep:
        target = Path(keep) / test.replace("[", "-").rstrip("]")
        target.mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, target / shot.name)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def fill_search(page, base: str, token: str, case: str) -> None:
    sign_in(page, base, token)
    page.select_option("select[name=gallery]", "g")
    page.fill("input[name=purpose]", "fraud")
    page.fill("input[name=case]", case)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def scan_entries(base: str, token: str, case: str) -> list[dict]:
    return httpx.get(f"{base}/api/v1/audit", params={"action": "search", "case": case},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).json()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_scan_says_closer_then_searches_once_and_shows_the_person(server, approaching, viewport, tmp_path, request):
    base, tokens, _ = server
    page = open_page(approaching, viewport, tmp_path, request)
    case = f"SCAN-{viewport}"
    fill_search(page, base, tokens["analyst"], case)
    page.evaluate(WATCH_FEEDBACK)
    page.click("#scan-start")
    page.wait_for_function("() => document.getElementById('scan-feedback').dataset.code === 'closer'",
                           timeout=30_000)
    assert no_sideways_scroll(page)
    assert page.locator("#scan-video").evaluate("v => v.videoWidth > 0 && !v.paused")
    assert page.locator("#scan-feedback").inner_text() == "Come closer"
    shoot(page, "1-scan-closer")
    page.wait_for_url("**/searches/*", timeout=60_000)
    page.wait_for_selector("section.candidate")
    seen = json.loads(page.evaluate("() => sessionStorage.getItem('seen')"))
    assert seen[0] == "closer" and "good" in seen, seen
    assert "Emmanuel Macron" in page.inner_text("section.candidate")
    assert no_sideways_scroll(page)
    shoot(page, "2-scan-result")
    (entry,) = scan_entries(base, tokens["auditor"], case)  # one search for the whole scan
    assert entry["entry_id"] in page.url and entry["payload"]["capture"]["mode"] == "scan"
    assert entry["payload"]["decision"] == "match"
    assert 409 not in page.frames_posted and page.frames_posted.count(200) >= 4
    assert not page.errors, page.errors


def test_scan_of_a_stranger_answers_no_match(server, stranger, tmp_path, request):
    base, tokens, _ = server
    page = open_page(stranger, "phone", tmp_path, request)
    fill_search(page, base, tokens["analyst"], "SCAN-stranger")
    page.click("#scan-start")
    page.wait_for_url("**/searches/*", timeout=60_000)
    assert page.inner_text("h1") == "No match" and "No match" in page.inner_text("p.answer")
    assert no_sideways_scroll(page)
    shoot(page, "scan-no-match")
    (entry,) = scan_entries(base, tokens["auditor"], "SCAN-stranger")
    assert entry["payload"]["decision"] == "no_match" and entry["payload"]["candidates"] == []
    assert not page.errors, page.errors


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_snap_takes_one_photo_from_the_camera_and_searches_it(server, steady, viewport, tmp_path, request):
    base, tokens, _ = server
    page = open_page(steady, viewport, tmp_path, request)
    case = f"SNAP-{viewport}"
    fill_search(page, base, tokens["analyst"], case)
    page.click("#camera-start")
    page.wait_for_function("() => { const v = document.getElementById('camera-video'); "
                           "return v.videoWidth > 0 && v.readyState >= 2 && !v.paused; }")
    assert no_sideways_scroll(page)
    shoot(page, "1-snap-camera")
    page.click("#camera-shoot")
    page.wait_for_function("() => document.getElementById('photo-input').files.length === 1")
    assert page.locator("#photo-preview").is_visible() and page.locator("#camera").is_hidden()
    assert page.evaluate("() => document.getElementById('photo-input').files[0].type") == "image/jpeg"
    page.click("form#search-form button[type=submit]")
    page.wait_for_selector("section.candidate")
    assert "Emmanuel Macron" in page.inner_text("section.candidate")
    assert no_sideways_scroll(page)
    shoot(page, "2-snap-result")
    (entry,) = scan_entries(base, tokens["auditor"], case)
    assert entry["payload"]["decision"] == "match" and "capture" not in entry["payload"]
    assert not page.errors, page.errors


def test_scan_refusal_in_plain_words_and_stop_ends_the_scan(server, approaching, tmp_path, request):
    base, tokens, _ = server
    page = open_page(approaching, "phone", tmp_path, request)
    fill_search(page, base, tokens["analyst"], "SCAN-stop")
    page.fill("input[name=purpose]", "curiosity")
    page.click("#scan-start")
    page.wait_for_function("() => document.getElementById('scan-feedback').dataset.code === 'error'")
    assert "not allowed" in page.inner_text("#scan-feedback") and "--" not in page.inner_text("#scan-feedback")
    assert page.evaluate("() => document.getElementById('scan-video').srcObject.getVideoTracks()"
                         ".every(t => t.readyState === 'ended')")  # the camera is off again
    shoot(page, "1-scan-refused")
    page.errors.clear()  # the refused start is an expected 403
    page.fill("input[name=purpose]", "fraud")
    page.click("#scan-start")
    page.wait_for_function("() => document.getElementById('scan-feedback').dataset.code === 'closer'",
                           timeout=30_000)
    with page.expect_response(lambda r: r.request.method == "DELETE") as cancelled:
        page.click("#scan-stop")
    assert cancelled.value.status == 200 and "/api/v1/scans/" in cancelled.value.url
    assert page.locator("#scan").is_hidden()
    assert scan_entries(base, tokens["auditor"], "SCAN-stop") == []
    assert not page.errors, page.errors
