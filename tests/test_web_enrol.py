"""Enrolment and gallery policy in the web app: the enrol page's batch route (one subject, one folder per
subject, a non-image among good photos, 500 files in batches, roles, CSRF, provenance, ledger entries like
the CLI's), the gallery create / policy forms, recorded names of uploads, and — across processes — a CLI
enrolment from a relative path whose crops a server started in another directory still shows. The flow
in Chromium (desktop and 390 px) selects a folder of committed photos and waits for the per-file results.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import faceledger
from faceledger.api.web_enrol import BATCH_FILES, MAX_BATCH_FILES
from faceledger.services.enrolment import upload_name

from .conftest import LFW_DIR, OPEN_FACES, open_test_engine
from .servers import running_serve
from .browsers import needs_chromium, sign_in
from .test_web_browser import browser, fits, page, shoot  # noqa: F401  (Chromium, its pages, the checks)
from .test_web_forms import group_photo
from . import web_clients
from .web_clients import HTML

JSON = {"Accept": "application/json"}
PROVENANCE = {"source": "staff photos 2024", "legal_basis": "consent"}


def lfw(person: str, n: int = 3) -> list[Path]:
    return sorted((LFW_DIR / person).glob("*.jpg"))[:n]


def noise_png(seed: int, side: int = 48) -> bytes:
    """A small image with no face in it (cheap to refuse)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = open_test_engine(tmp_path_factory.mktemp("web-enrol") / "home")
    tokens = {role: engine.add_user(f"{role}-w", role=role)[1] for role in ("admin", "enroller", "analyst")}
    yield engine, tokens
    engine.close()


def signed_in(world, role: str) -> tuple[TestClient, str]:
    engine, tokens = world
    return web_clients.signed_in(engine, tokens[role])


def post_batch(client: TestClient, gallery: str, files: list[tuple[str, bytes]], csrf: str, **fields):
    data = {"csrf": csrf, **PROVENANCE, **fields, "paths": [path for path, _ in files]}
    upload = [("images", (Path(path).name, content, "application/octet-stream")) for path, content in files]
    return client.post(f"/galleries/{gallery}/enrol", data=data, files=upload, headers=JSON)


def test_one_subject_batch_refuses_a_non_image_and_a_group_photo_in_plain_words(world):
    engine, _ = world
    engine.create_gallery("one")
    client, csrf = signed_in(world, "enroller")
    form = client.get("/galleries/one/enrol")
    assert form.status_code == 200 and f'data-batch="{BATCH_FILES}"' in form.text and "webkitdirectory" in form.text
    files = [("ardern_2018.jpg", (OPEN_FACES / "ardern_2018.jpg").read_bytes()), ("notes.txt", b"not a photo"),
             ("two-people.jpg", group_photo()), ("noise.png", noise_png(1))]
    answer = post_batch(client, "one", files, csrf, mode="subject", subject="Jacinda Ardern")
    assert answer.status_code == 200, answer.text
    rows = {r["file"]: r for r in answer.json()["results"]}
    assert rows["ardern_2018.jpg"]["status"] == "enrolled" and rows["ardern_2018.jpg"]["subject"] == "Jacinda Ardern"
    assert rows["notes.txt"]["status"] == "refused" and rows["notes.txt"]["reason"].startswith("not an image")
    assert rows["two-people.jpg"]["reason"].startswith("several faces") and "--" not in rows["two-people.jpg"]["reason"]
    assert rows["noise.png"]["reason"] == "no face found"
    # the same photo again: a duplicate, nothing stored twice
    again = post_batch(client, "one", files[:1], csrf, mode="subject", subject="Jacinda Ardern").json()
    assert again["results"][0]["status"] == "duplicate" and engine.gallery_info("one")["images"] == 1


def test_web_enrolment_ledgers_like_the_cli(world, tmp_path):
    engine, _ = world
    engine.create_gallery("same")
    client, csrf = signed_in(world, "enroller")
    photos = lfw("Tony_Blair", 2)
    answer = post_batch(client, "same", [(p.name, p.read_bytes()) for p in photos[:1]], csrf, mode="subject",
                        subject="Tony Blair", retain_until="2099-01-01").json()
    web_entry = engine.audit_entries(action="enroll")[-1]
    assert answer["ledger_entries"] == [web_entry["entry_id"]]
    engine.enroll(photos[1:], gallery="same", subject="Tony Blair", retain_until=None, **PROVENANCE)
    cli_entry = engine.audit_entries(action="enroll")[-1]
    # the same entry but for who acted: a signed-in user, or the CLI's local operator (`acting_from`)
    assert web_entry["actor"] == "enroller-w" and set(web_entry["payload"]) == set(cli_entry["payload"]) - {
        "acting_from"}
    for key in ("gallery", "gallery_id", "model_id", "source", "legal_basis"):
        assert web_entry["payload"][key] == cli_entry["payload"][key]
    assert web_entry["payload"]["retain_until"].startswith("2099-01-01")
    image = web_entry["payload"]["images"][0]
    assert (image["name"], image["subject"], len(image["faces"])) == (f"upload:{photos[0].name}", "Tony Blair", 1)
    assert engine.subject("same", engine.list_subjects("same")["subjects"][0]["subject_id"])["faces"] == 2
    assert engine.audit_verify().ok


def test_folder_per_subject_names_people_after_their_folders(world):
    engine, _ = world
    engine.create_gallery("folders")
    client, csrf = signed_in(world, "admin")
    files = [(f"team/{p.parent.name}/{p.name}", p.read_bytes()) for p in lfw("Kofi_Annan", 2) + lfw("Pele", 1)]
    files.append(("loose.jpg", lfw("Mother_Teresa", 1)[0].read_bytes()))
    files.append(("team/Kofi_Annan/readme.txt", b"hello"))
    answer = post_batch(client, "folders", files, csrf, mode="folders", subject="ignored").json()
    rows = {r["file"]: r for r in answer["results"]}
    assert rows["team/Kofi_Annan/" + lfw("Kofi_Annan")[0].name]["status"] == "enrolled"
    assert rows["loose.jpg"]["status"] == "refused" and "not in a folder" in rows["loose.jpg"]["reason"]
    assert rows["team/Kofi_Annan/readme.txt"]["reason"].startswith("not an image")
    people = {s["name"]: s["images"] for s in engine.list_subjects("folders")["subjects"]}
    assert people == {"Kofi_Annan": 2, "Pele": 1}
    names = {im["name"] for im in engine.gallery_images("folders")["images"]}
    assert f"upload:team/Pele/{lfw('Pele')[0].name}" in names  # the relative path, as recorded name
    assert len(answer["ledger_entries"]) == 1  # one enrolment call, one ledger entry, for the batch
    entry = engine.audit_entries(action="enroll")[-1]["payload"]
    assert sorted(i["subject"] for i in entry["images"]) == ["Kofi_Annan", "Kofi_Annan", "Pele"]


def test_five_hundred_files_in_batches(world):
    """What the page does with 500 chosen files: 50 requests of 10, each answered with one row per file."""
    engine, _ = world
    engine.create_gallery("many")
    client, csrf = signed_in(world, "enroller")
    faces = [(f"many/{p.parent.name}/{p.name}", p.read_bytes()) for p in lfw("Serena_Williams", 3) + lfw("Colin_Powell", 2)]
    files = faces + [(f"many/noise/{i:03d}.png", noise_png(1000 + i, side=32)) for i in range(495)]
    rows = []
    for start in range(0, len(files), BATCH_FILES):
        answer = post_batch(client, "many", files[start:start + BATCH_FILES], csrf, mode="folders")
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == len(files[start:start + BATCH_FILES])
        rows += answer.json()["results"]
    statuses = [r["status"] for r in rows]
    assert statuses.count("enrolled") == 5 and statuses.count("refused") == 495
    assert {r["reason"] for r in rows if r["status"] == "refused"} == {"no face found"}
    assert engine.gallery_info("many")["images"] == 5
    too_many = post_batch(client, "many", files[:MAX_BATCH_FILES + 1], csrf, mode="folders")
    assert too_many.status_code == 422 and f"at most {MAX_BATCH_FILES}" in too_many.json()["detail"]


def test_roles_csrf_and_provenance_are_checked_and_nothing_is_stored(world):
    engine, _ = world
    engine.create_gallery("guarded", retain_days=30)
    photo = [("a.jpg", (OPEN_FACES / "ardern_2022.jpg").read_bytes())]
    analyst, csrf = signed_in(world, "analyst")
    assert analyst.get("/galleries/guarded/enrol").status_code == 403
    refused = post_batch(analyst, "guarded", photo, csrf, mode="subject", subject="x")
    assert refused.status_code == 403
    assert engine.audit_entries(action="denied")[-1]["payload"]["attempted"] == "enroll"
    enroller, csrf = signed_in(world, "enroller")
    from datetime import UTC, datetime, timedelta

    latest = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    assert f'max="{latest}"' in enroller.get("/galleries/guarded/enrol").text  # the date field knows the limit
    assert post_batch(enroller, "guarded", photo, "wrong", mode="subject", subject="x").status_code == 403
    no_basis = post_batch(enroller, "guarded", photo, csrf, mode="subject", subject="x", legal_basis=" ")
    assert no_basis.status_code == 422 and "Legal basis" in no_basis.json()["detail"]
    assert "--" not in no_basis.json()["detail"]
    no_name = post_batch(enroller, "guarded", photo, csrf, mode="subject", subject="")
    assert no_name.status_code == 422 and "Subject" in no_name.json()["detail"]
    too_late = post_batch(enroller, "guarded", photo, csrf, mode="subject", subject="x", retain_until="2199-01-01")
    assert too_late.status_code == 403 and "at most 30 days" in too_late.json()["detail"]
    bad_date = post_batch(enroller, "guarded", photo, csrf, mode="subject", subject="x", retain_until="soon")
    assert bad_date.status_code == 422 and "YYYY-MM-DD" in bad_date.json()["detail"]
    assert engine.gallery_info("guarded")["images"] == 0


def test_upload_names_are_kept_readable_and_safe():
    assert upload_name("person/photo.jpg") == "upload:person/photo.jpg"
    assert upload_name("../../etc/passwd") == "upload:etc/passwd"
    assert upload_name("C:\\Users\\me\\a.jpg") == "upload:C:/Users/me/a.jpg"
    assert upload_name("a\x00b\u200b.jpg") == "upload:a_b_.jpg"
    assert upload_name("") == upload_name(None) == "upload:image"
    assert len(upload_name("x" * 5000)) == len("upload:") + 255


# -- gallery create and policy ---------------------------------------------------------------------------

def test_admin_creates_a_gallery_and_edits_its_policy_in_the_browser_forms(world):
    engine, _ = world
    client, csrf = signed_in(world, "admin")
    form = client.get("/admin/galleries/new").text
    for field in ("purposes", "allow_investigative", "target_fpir", "retain_days", "probe_retain_days",
                  "keep_probe_images"):
        assert f'name="{field}"' in form
    bad = client.post("/admin/galleries/new", data={"csrf": csrf, "name": "formed", "purposes": "fraud\nmissing person",
                                                    "target_fpir": "2", "retain_days": "365", "probe_retain_days": "7"})
    assert bad.status_code == 422 and "Target FPIR" in bad.text and "--" not in bad.text.split("<main>")[1]
    assert 'value="365"' in bad.text and "missing person</textarea>" in bad.text  # the values typed are kept
    days = client.post("/admin/galleries/new", data={"csrf": csrf, "name": "formed", "retain_days": "ten"})
    assert days.status_code == 422 and "whole number" in days.text
    made = client.post("/admin/galleries/new", data={
        "csrf": csrf, "name": "formed", "purposes": "fraud\nmissing person\n", "target_fpir": "0.001",
        "retain_days": "365", "probe_retain_days": "7", "allow_investigative": "on"}, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/galleries/formed"
    info = engine.gallery_info("formed")
    assert (info["purposes"], info["target_fpir"], info["retain_days"], info["probe_retain_days"],
            info["allow_investigative"], info["keep_probe_images"]) == (["fraud", "missing person"], 0.001, 365, 7,
                                                                         True, False)
    assert engine.audit_entries(action="gallery.create")[-1]["actor"] == "admin-w"
    edit = client.get("/galleries/formed/policy").text
    assert 'value="365"' in edit and "fraud\nmissing person</textarea>" in edit and "checked" in edit
    saved = client.post("/galleries/formed/policy", data={
        "csrf": csrf, "purposes": "fraud", "target_fpir": "0.001", "retain_days": "90", "probe_retain_days": "7"},
        follow_redirects=False)
    assert saved.status_code == 303
    entry = engine.audit_entries(action="gallery.update")[-1]
    assert entry["actor"] == "admin-w" and entry["payload"]["before"]["retain_days"] == 365
    assert (entry["payload"]["after"]["retain_days"], entry["payload"]["after"]["purposes"],
            entry["payload"]["after"]["allow_investigative"]) == (90, ["fraud"], False)
    same = client.post("/galleries/formed/policy", data={
        "csrf": csrf, "purposes": "fraud", "target_fpir": "0.001", "retain_days": "90", "probe_retain_days": "7"})
    assert same.status_code == 422 and "nothing changed" in same.text
    taken = client.post("/admin/galleries/new", data={"csrf": csrf, "name": "formed"})
    assert taken.status_code == 409 and "already exists" in taken.text


def test_only_admins_change_galleries(world):
    engine, _ = world
    engine.create_gallery("kept")
    client, csrf = signed_in(world, "enroller")
    assert client.get("/admin/galleries/new").status_code == 403
    assert client.get("/galleries/kept/policy").status_code == 403
    assert client.post("/admin/galleries/new", data={"csrf": csrf, "name": "nope"}).status_code == 403
    assert client.post("/galleries/kept/policy", data={"csrf": csrf, "retain_days": "5"}).status_code == 403
    assert engine.audit_entries(action="denied")[-1]["payload"]["attempted"] == "gallery.update"
    assert engine.gallery_info("kept")["retain_days"] is None
    assert "nope" not in {g["name"] for g in engine.list_galleries()}
    admin, csrf = signed_in(world, "admin")
    assert admin.post("/admin/galleries/new", data={"name": "no-csrf"}).status_code == 403
    assert "/admin/galleries/new" in admin.get("/galleries").text
    assert "/admin/galleries/new" not in client.get("/galleries").text


# -- across processes: a relative path enrolled from one directory, served from another ------------------

# A process started in another directory imports this faceledger (a relative PYTHONPATH would not find it).
SOURCE = {"PYTHONPATH": os.pathsep.join([str(Path(faceledger.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}


def cli(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from faceledger.cli import main; main()", "--home", str(home),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **SOURCE, "FACELEDGER_OPERATOR": "cli-enroller"})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`faceledger serve` started in directory B over a home where the CLI enrolled `photos/...` (a path
    relative to directory A); galleries "web-1280" and "web-390" are empty for the browser to enrol into."""
    root = tmp_path_factory.mktemp("dirs")
    home, a, b = root / "home", root / "a", root / "b"
    (a / "photos").mkdir(parents=True)
    b.mkdir()
    for p in lfw("Vladimir_Putin", 2):
        shutil.copy(p, a / "photos" / p.name)
    engine = open_test_engine(home)
    engine.create_gallery("rel")
    for width in (1280, 390):  # one empty gallery per browser size
        engine.create_gallery(f"web-{width}")
    tokens = {role: engine.add_user(f"{role}-s", role=role)[1] for role in ("admin", "enroller")}
    engine.close()
    done = cli(["enroll", "photos", "--gallery", "rel", "--subject", "Vladimir Putin", "--source", "s",
                "--legal-basis", "b", "--json"], home, a)
    assert done.returncode == 0, done.stderr
    here = Path.cwd()
    os.chdir(b)  # the server's working directory: not A, where the relative paths were given
    try:
        with running_serve(home, root / "server.log", env=SOURCE) as (base, _process):
            os.chdir(here)
            yield base, tokens, root
    finally:
        os.chdir(here)


def test_crops_of_a_relative_path_enrolment_load_in_a_server_started_elsewhere(server):
    base, tokens, root = server
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    images = httpx.get(base + "/api/v1/galleries/rel/images", headers=headers).json()["images"]
    assert len(images) == 2 and all(Path(im["name"]).is_absolute() for im in images)
    assert all(Path(im["name"]).parent == root / "a" / "photos" for im in images)
    for image in images:
        crop = httpx.get(base + f"/api/v1/faces/{image['face_ids'][0]}/crop", headers=headers)
        assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).format == "JPEG"
    person = httpx.get(base + f"/galleries/rel/people/{images[0]['subject_id']}", headers={**headers, **HTML})
    assert person.status_code == 200 and person.text.count("legal basis: b") == 2
    assert person.text.count("/api/v1/faces/") == 2  # the crops the page loads: fetched above


# -- the page in Chromium ----------------------------------------------------------------------------------

@needs_chromium
def test_enrol_a_folder_in_the_browser(server, page):  # noqa: F811
    base, tokens, root = server
    w = page.width
    folder = root / f"to-enrol-{w}"
    for person, n in (("Junichiro_Koizumi", 2), ("Shinzo_Abe", 1)):
        (folder / person).mkdir(parents=True)
        for p in lfw(person, n):
            shutil.copy(p, folder / person / p.name)
    (folder / "Shinzo_Abe" / "notes.txt").write_text("not a photo")
    (folder / "Nobody").mkdir()
    for i in range(BATCH_FILES * 2):  # photos without a face: the upload takes several requests
        (folder / "Nobody" / f"noise-{i:02d}.png").write_bytes(noise_png(5000 + i, side=32))
    total = 4 + BATCH_FILES * 2
    batches: list[str] = []
    page.on("request", lambda r: batches.append(r.url) if r.method == "POST" and r.url.endswith("/enrol") else None)
    sign_in(page, base, tokens["enroller"])
    page.goto(base + f"/galleries/web-{w}")
    page.click("#enrol-link")
    page.check("input[name=mode][value=folders]")
    assert not page.locator("#subject-field").is_visible()
    page.fill("input[name=source]", f"browser test {w}")
    page.fill("input[name=legal_basis]", "consent")
    page.set_input_files("#pick-folder", str(folder))
    assert f"{total} files chosen" in page.inner_text("#chosen") and "3 people" in page.inner_text("#chosen")
    page.click("#enrol-start")
    page.wait_for_selector("#progress-card.finished")
    assert page.locator("#progress").evaluate("p => p.value === p.max")
    assert len(batches) >= 3  # sent in batches of at most BATCH_FILES
    assert page.locator("#results tbody tr").count() == total
    enrolled = page.locator("#results tr.enrolled")
    assert enrolled.count() == 3 and "Junichiro_Koizumi" in page.inner_text("#results tr.enrolled >> nth=0")
    assert "not an image" in page.inner_text("#results")
    assert page.locator("#results tr.refused:has-text('no face found')").count() == BATCH_FILES * 2
    assert f"{total} of {total} files · 3 enrolled · 0 duplicates · {total - 3} refused" in page.inner_text(
        "#progress-text")
    fits(page)
    shoot(page, "1-enrolled")
    page.check("#only-refused")
    assert page.locator("#results tr.result:visible").count() == total - 3
    page.uncheck("#only-refused")
    # the same folder again: the three photos are duplicates now
    page.click("#enrol-start")
    page.wait_for_function("() => document.querySelector('#progress-text').textContent.includes('done')")
    assert page.locator("#results .badge.duplicate").count() == 3
    page.click("#done-links a")
    assert "Junichiro_Koizumi" in page.inner_text("main") and "Shinzo_Abe" in page.inner_text("main")
    fits(page)
    shoot(page, "2-people")
    assert not page.console_errors


@needs_chromium
def test_admin_creates_a_gallery_in_the_browser(server, page):  # noqa: F811
    base, tokens, _ = server
    sign_in(page, base, tokens["admin"])
    page.goto(base + "/galleries")
    page.click("#new-gallery")
    page.fill("input[name=name]", f"made-{page.width}")
    page.fill("textarea[name=purposes]", "fraud\nmissing person")
    page.fill("input[name=target_fpir]", "1.5")
    page.click("#gallery-form button[type=submit]")
    assert "Target FPIR" in page.inner_text("p.alert")
    assert page.input_value("textarea[name=purposes]") == "fraud\nmissing person"
    fits(page)
    shoot(page, "1-form-error")
    page.fill("input[name=target_fpir]", "0.001")
    page.click("#gallery-form button[type=submit]")
    page.wait_for_selector(f"h1:has-text('made-{page.width}')")
    assert "fraud, missing person" in page.inner_text("main")
    page.click("#policy-link")
    page.check("input[name=allow_investigative]")
    page.click("#gallery-form button[type=submit]")
    page.wait_for_selector("#enrol-link")
    assert "Investigative search allowed" in page.inner_text("main")
    shoot(page, "2-gallery")
    assert not page.console_errors




@needs_chromium
def test_dropped_files_a_busy_server_and_a_refused_upload_in_the_browser(server, page):  # noqa: F811
    """Files dropped on the page (a DataTransfer, as a drag from the desktop gives); a retention date in the
    past is refused by the form, and by the server (the upload stops with the engine's reason); a 429
    answer is waited out and the batch sent again."""
    import base64

    base, tokens, _ = server
    w = page.width
    sign_in(page, base, tokens["enroller"])
    page.goto(base + f"/galleries/web-{w}/enrol")
    page.fill("input[name=subject]", f"Jacinda Ardern {w}")
    page.fill("input[name=source]", "press office")
    page.fill("input[name=legal_basis]", "consent")
    photo = base64.b64encode((OPEN_FACES / "ardern_2018.jpg").read_bytes()).decode()
    page.evaluate("""photo => {
        const bytes = Uint8Array.from(atob(photo), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "ardern.jpg", {type: "image/jpeg"}));
        dt.items.add(new File(["just text"], "notes.txt", {type: "text/plain"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""", photo)
    page.wait_for_function("() => document.getElementById('chosen').textContent.startsWith('2 files chosen')")
    page.fill("input[name=retain_until]", "2001-01-01")
    page.click("#enrol-start")  # the date field's minimum is tomorrow: the browser sends nothing
    assert page.locator("input[name=retain_until]").evaluate("i => !i.validity.valid")
    assert page.locator("#progress-card").is_hidden()
    page.evaluate("document.querySelector('input[name=retain_until]').removeAttribute('min')")
    page.click("#enrol-start")  # the server checks it too
    page.wait_for_selector("#batch-error:not([hidden])")
    assert "already passed" in page.inner_text("#batch-error") and page.locator("#results tbody tr").count() == 0
    shoot(page, "1-refused-upload")
    answered: list[int] = []
    busy = {"left": 1}

    def once_busy(route):
        if busy["left"]:
            busy["left"] -= 1
            answered.append(429)
            route.fulfill(status=429, headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                          body='{"detail": "rate limit reached; retry in 1 s"}')
        else:
            answered.append(200)
            route.continue_()

    page.route("**/enrol", once_busy)
    page.fill("input[name=retain_until]", "")
    page.click("#enrol-start")
    page.wait_for_selector("#progress-card.finished")
    assert answered == [429, 200] and page.locator("#batch-error").is_hidden()
    assert "2 of 2 files · 1 enrolled · 0 duplicates · 1 refused" in page.inner_text("#progress-text")
    assert f"Jacinda Ardern {w}" in page.inner_text("#results tr.enrolled")
    fits(page)
    shoot(page, "2-dropped")
    # no script error; the only failed requests are the two answered so on purpose (403 past date, 429)
    assert [e.split()[0] for e in page.console_errors] == ["403", "429"]
    assert all(e.endswith("/enrol") for e in page.console_errors)
