"""Review in the web app: the queue (/reviews), the review page with the probe beside each candidate (or
why it is gone), blind review, the decision form, and the bad input of issue 13 — through TestClient, then
in Debian's Chromium (desktop and 390-px phone) against a real `faceledger serve`, with screenshots in the
test's tmp dir (copied under $FACELEDGER_SCREENSHOTS when it is set)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceledger.policy import Principal
from faceledger.services.context import utcnow

from .conftest import gallery_files, held_out_probes, open_test_engine
from .servers import running_serve
from .browsers import HAVE_CHROMIUM, chromium, sign_in
from .web_clients import signed_in

ANALYST = Principal("ana-w", "analyst")
PROBE = held_out_probes()[0]


def make_world(home: Path):
    engine = open_test_engine(home)
    for name, policy in {"open": {}, "blind": {"blind_review": True}, "hashonly": {"keep_probe_for_review": False},
                         "short": {"probe_retain_days": 1}}.items():
        engine.create_gallery(name, allow_investigative=True, **policy)
        engine.enroll(gallery_files()[:6], gallery=name, subject_from_folder=True, source="LFW",
                      legal_basis="research")
    return engine


def lead_search(engine, gallery: str, case: str) -> str:
    result = engine.search(PROBE, gallery=gallery, purpose="fraud", case=case, top_k=2, investigative=True,
                           by=ANALYST)
    assert len(result.candidates) == 2
    return result.ledger_entry


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = make_world(tmp_path_factory.mktemp("web-review") / "home")
    tokens = {name: engine.add_user(name, role=role)[1] for name, role in (
        ("rev-w", "reviewer"), ("rev2-w", "reviewer"), ("ana-w", "analyst"), ("adm-w", "admin"))}
    yield engine, tokens
    engine.close()


def browser_for(world, user: str) -> tuple[TestClient, str]:
    engine, tokens = world
    return signed_in(engine, tokens[user])


# -- TestClient ----------------------------------------------------------------------------------------

def test_the_queue_is_the_reviewers_way_in_with_filters_kept_and_cards_not_tables(world):
    engine, _ = world
    entries = [lead_search(engine, "open", f"WQ-{i}") for i in range(3)]
    reviewer, _ = browser_for(world, "rev-w")
    home = reviewer.get("/galleries").text
    assert 'href="/reviews"' in home and 'href="/searches"' not in home
    assert reviewer.get("/searches", follow_redirects=False).headers["location"] == "/reviews"
    page = reviewer.get("/reviews", params={"case": "WQ-", "gallery": "open"}).text
    assert [m for m in re.findall(r'id="queue-([0-9a-f-]{36})"', page)] == entries  # oldest first
    assert 'value="WQ-"' in page and '<option value="open" selected>' in page and "<table" not in page
    assert "2 of 2 awaiting a decision" in page and ">kept<" in page
    assert "No search" not in page and "3 searches awaiting review (filtered)" in page
    aged = reviewer.get("/reviews", params={"case": "WQ-", "older_than": "2", "unit": "days"}).text
    assert "Nothing awaits review with these filters" in aged and 'value="2"' in aged
    for bad in ("-1", "soon", "1e9"):
        refused = reviewer.get("/reviews", params={"older_than": bad, "unit": "days"})
        assert refused.status_code == 422 and "the age must be a number of days" in refused.text
    assert reviewer.get("/reviews", params={"older_than": "", "case": "WQ-"}).text.count('class="card queue-item"') == 3
    analyst, _ = browser_for(world, "ana-w")
    assert analyst.get("/searches").status_code == 200 and 'href="/reviews"' in analyst.get("/searches").text


def test_the_review_page_shows_the_probe_then_says_plainly_why_it_is_gone(world):
    engine, _ = world
    entry = lead_search(engine, "open", "WP-1")
    reviewer, csrf = browser_for(world, "rev-w")
    page = reviewer.get(f"/searches/{entry}").text
    assert page.count(f'src="/api/v1/searches/{entry}/probe"') == 2  # beside each candidate
    assert "score <b>" in page and 'id="probe-kept"' in page
    assert reviewer.get(f"/api/v1/searches/{entry}/probe").headers["content-type"] == "image/jpeg"
    for rank, decision in ((1, "confirm"), (2, "reject")):
        done = reviewer.post(f"/searches/{entry}/review", data={"candidate": str(rank), "decision": decision,
                                                                "csrf": csrf})
        assert done.status_code == 200
    page = reviewer.get(f"/searches/{entry}").text
    assert "/probe" not in page and "after the search was reviewed" in page
    gone = reviewer.get(f"/api/v1/searches/{entry}/probe")
    assert gone.status_code == 410 and "after the search was reviewed" in gone.text

    hashed = lead_search(engine, "hashonly", "WP-2")
    assert "keeps only a hash and an embedding" in reviewer.get(f"/searches/{hashed}").text
    expired = lead_search(engine, "short", "WP-3")
    engine.purge(now=utcnow() + timedelta(days=2))  # "short" keeps its probes one day
    page = reviewer.get(f"/searches/{expired}").text
    assert "when its retention ended" in page and "/probe" not in page  # opened after retention: said plainly


def test_blind_review_in_the_browser_hides_rank_and_score_until_every_decision(world):
    engine, _ = world
    entry = lead_search(engine, "blind", "WB-1")
    reviewer, csrf = browser_for(world, "rev-w")
    page = reviewer.get(f"/searches/{entry}").text
    assert 'id="blind-note"' in page and "score <b>" not in page and "(up to " not in page
    assert 'name="candidate"' not in page and "#1 " not in page
    keys = re.findall(r'name="key" value="([0-9a-f]{12})"', page)
    assert len(keys) == 2 and keys == sorted(keys)
    done = reviewer.post(f"/searches/{entry}/review", data={"key": keys[0], "decision": "reject", "csrf": csrf},
                         follow_redirects=False)
    assert done.headers["location"] == f"/searches/{entry}#candidate-{keys[0]}"  # no rank in the URL either
    assert "score <b>" not in reviewer.get(f"/searches/{entry}").text
    reviewer.post(f"/searches/{entry}/review", data={"key": keys[1], "decision": "confirm", "csrf": csrf})
    page = reviewer.get(f"/searches/{entry}").text
    assert page.count("score <b>") == 2 and 'id="blind-done"' in page and "(blind)" in page
    other, _ = browser_for(world, "rev2-w")
    assert "score <b>" not in other.get(f"/searches/{entry}").text  # the next reviewer is blind too


def test_bad_review_input_in_the_browser(world):
    engine, _ = world
    entry = lead_search(engine, "open", "WX-1")
    reviewer, csrf = browser_for(world, "rev-w")
    missing = reviewer.post(f"/searches/{entry}/review", data={"candidate": "9", "decision": "confirm", "csrf": csrf})
    assert missing.status_code == 404 and "no candidate 9" in missing.text
    nothing = reviewer.post(f"/searches/{entry}/review", data={"decision": "confirm", "csrf": csrf})
    assert nothing.status_code == 422 and "choose a candidate" in nothing.text
    forged = reviewer.post(f"/searches/{entry}/review", data={"candidate": "1", "decision": "confirm", "csrf": "x"})
    assert forged.status_code == 403
    analyst, csrf_a = browser_for(world, "ana-w")
    assert 'class="review-form"' not in analyst.get(f"/searches/{entry}").text
    refused = analyst.post(f"/searches/{entry}/review", data={"candidate": "1", "decision": "confirm", "csrf": csrf_a})
    assert refused.status_code == 403 and "reviewer" in refused.text
    assert engine.review_status(entry)[0]["reviews"] == []  # nothing was recorded
    assert reviewer.get("/searches/not-an-entry").status_code == 404


def test_a_disabled_reviewers_open_session_is_ended_on_the_next_request(world):
    engine, _ = world
    world[1]["leaving-w"] = engine.add_user("leaving-w", role="reviewer")[1]
    entry = lead_search(engine, "open", "WD-1")
    reviewer, csrf = browser_for(world, "leaving-w")
    assert reviewer.get("/reviews").status_code == 200
    engine.set_user_disabled("leaving-w", True)
    refused = reviewer.post(f"/searches/{entry}/review", data={"candidate": "1", "decision": "confirm", "csrf": csrf},
                            follow_redirects=False)
    assert refused.status_code in (303, 401)
    assert reviewer.get("/reviews", follow_redirects=False).headers["location"].startswith("/login")
    assert engine.review_status(entry)[0]["reviews"] == []
    assert reviewer.app.state.web_sessions.count("leaving-w") == 0


# -- Chromium ------------------------------------------------------------------------------------------

VIEWPORTS = [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("web-review-e2e") / "home"
    engine = make_world(home)
    searches = {w["width"]: {"blind": lead_search(engine, "blind", f"E2E-B-{w['width']}"),
                             "open": lead_search(engine, "open", f"E2E-O-{w['width']}")} for w in VIEWPORTS}
    tokens = {"reviewer": engine.add_user("rev-e2e", role="reviewer")[1],
              "leaver": engine.add_user("leaver-e2e", role="reviewer")[1]}
    engine.close()
    with running_serve(home, home.parent / "server.log") as (base, _process):
        yield base, home, tokens, searches


@pytest.fixture(scope="module")
def browser():
    if not HAVE_CHROMIUM:
        pytest.skip("Chromium is not installed (scripts/system-deps.sh installs it)")
    with chromium() as browser:
        yield browser


def fits(page, width: int) -> None:
    """No sideways scroll; the signed-in user in view."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), page.url
    box = page.locator("header .who .me").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1


def loaded(image) -> bool:
    image.evaluate("img => img.complete ? true : new Promise(done => { img.onload = img.onerror = done; })")
    return image.evaluate("img => img.complete && img.naturalWidth > 0")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])
def test_a_reviewer_works_the_queue_blind_then_open_in_chromium(served, browser, viewport, tmp_path):
    base, _, tokens, searches = served
    width, mine = viewport["width"], searches[viewport["width"]]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base, tokens["reviewer"])
        page.click("header nav a[href='/reviews']")
        page.fill("#queue-filters input[name=case]", f"E2E-B-{width}")
        page.click("#queue-filters button[type=submit]")
        page.wait_for_selector(f"#queue-{mine['blind']}")
        assert page.locator("article.queue-item").count() == 1
        page.goto(base + "/reviews")
        assert page.locator("article.queue-item").count() >= 2
        fits(page, width)
        page.screenshot(path=str(shots / "1-queue.png"), full_page=True)

        page.click(f"#queue-{mine['blind']} a.button")
        page.wait_for_selector("#blind-note")
        shown = " ".join(page.locator("section.candidate").all_inner_texts())
        assert "score" not in shown and "false-match" not in shown and "#1" not in shown
        assert loaded(page.locator("section.candidate img[alt=probe]").first), "the probe did not load"
        fits(page, width)
        page.screenshot(path=str(shots / "2-blind.png"), full_page=True)
        for decision in ("reject", "confirm"):
            page.locator(f"section.candidate form button[value={decision}]").first.click()
            page.wait_for_load_state()
        page.wait_for_selector("#blind-done")
        assert page.locator("section.candidate").first.inner_text().count("score") == 1
        fits(page, width)
        page.screenshot(path=str(shots / "3-blind-revealed.png"), full_page=True)

        page.goto(f"{base}/searches/{mine['open']}")
        assert loaded(page.locator("#candidate-1 img[alt=probe]")) and "score" in page.inner_text("#candidate-1")
        page.fill("#candidate-1 input[name=note]", "same ears and hairline")
        page.click("#candidate-1 button[value=confirm]")
        page.wait_for_selector("#candidate-1 .badge.confirmed")
        page.click("#candidate-2 button[value=reject]")
        page.wait_for_selector("#probe-gone")
        assert "after the search was reviewed" in page.inner_text("#probe-gone")
        assert page.locator("img[alt=probe]").count() == 0
        fits(page, width)
        page.screenshot(path=str(shots / "4-reviewed-probe-deleted.png"), full_page=True)
        assert not errors
    finally:
        context.close()
        keep = os.environ.get("FACELEDGER_SCREENSHOTS")
        if keep:
            target = Path(keep) / "review" / str(width)
            target.mkdir(parents=True, exist_ok=True)
            for shot in shots.iterdir():
                shutil.copy(shot, target / shot.name)


def test_a_reviewer_disabled_from_another_process_loses_the_open_browser_session(served, browser):
    base, home, tokens, searches = served
    context = browser.new_context(viewport=VIEWPORTS[0])
    page = context.new_page()
    try:
        sign_in(page, base, tokens["leaver"])
        page.goto(f"{base}/searches/{searches[1280]['open']}")
        page.wait_for_selector("section.candidate")
        done = subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                               "user", "disable", "leaver-e2e"], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        page.goto(base + "/reviews")
        assert "/login" in page.url  # the next request ends the session: back to sign-in
        page.goto(f"{base}/searches/{searches[1280]['open']}")
        assert "/login" in page.url
    finally:
        context.close()
