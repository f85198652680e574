"""The web app's users page, face choice in a photo of several faces, and forms that keep their values
(TestClient over the real engine; the browser flows are in tests/test_web_browser.py)."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceledger.api import create_app
from faceledger.api.wording import plain_words

from .conftest import OPEN_FACES, gallery_files, held_out_probes, open_test_engine
from .web_clients import signed_in



def group_photo() -> bytes:
    """Macron and Ardern side by side: two faces of similar size."""
    a = Image.open(OPEN_FACES / "macron_2025.jpg").convert("RGB").resize((360, 450))
    b = Image.open(OPEN_FACES / "ardern_2022.jpg").convert("RGB").resize((340, 450))
    group = Image.new("RGB", (700, 450))
    group.paste(a, (0, 0))
    group.paste(b, (360, 0))
    out = io.BytesIO()
    group.save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = open_test_engine(tmp_path_factory.mktemp("web") / "home")
    engine.create_gallery("g", purposes=["fraud", "missing person"])
    engine.enroll(gallery_files()[:9], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    engine.enroll([OPEN_FACES / "ardern_2018.jpg"], gallery="g", subject="Jacinda Ardern", source="CC",
                  legal_basis="public record")
    tokens = {role: engine.add_user(f"{role}-w", role=role)[1] for role in ("admin", "enroller", "analyst")}
    yield engine, tokens
    engine.close()


def browser_for(world, role: str) -> tuple[TestClient, str]:
    """A TestClient signed in through /login like a browser, and its CSRF token (from a page)."""
    engine, tokens = world
    return signed_in(engine, tokens[role])


# -- users --------------------------------------------------------------------------------------------

def test_admin_adds_a_user_sees_the_token_once_and_the_user_can_sign_in(world):
    engine, _ = world
    client, csrf = browser_for(world, "admin")
    page = client.post("/admin/users", data={"name": "new-analyst", "role": "analyst", "csrf": csrf})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    token = re.search(r'id="new-token">([^<]+)<', page.text).group(1)
    assert engine.authenticate(token).name == "new-analyst"
    listing = client.get("/admin/users").text
    assert "new-analyst" in listing and token not in listing
    assert engine.audit_entries(action="user.add")[-1]["payload"] == {"user": "new-analyst", "role": "analyst"}


def test_admin_rotates_a_token_and_disables_and_enables_a_user(world):
    engine, _ = world
    user, old = engine.add_user("rotated", role="reviewer")
    client, csrf = browser_for(world, "admin")
    page = client.post("/admin/users/rotated/token", data={"csrf": csrf})
    new = re.search(r'id="new-token">([^<]+)<', page.text).group(1)
    assert new != old and engine.authenticate(new).name == "rotated"
    with pytest.raises(Exception, match="not valid"):
        engine.authenticate(old)
    assert engine.audit_entries(action="user.token.rotate")[-1]["payload"]["user"] == "rotated"
    assert client.post("/admin/users/rotated/disable", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert [u for u in engine.list_users() if u["user"] == "rotated"][0]["disabled"]
    client.post("/admin/users/rotated/enable", data={"csrf": csrf})
    assert engine.authenticate(new).name == "rotated"


def test_users_page_bad_input_is_a_plain_error_with_the_values_kept(world):
    client, csrf = browser_for(world, "admin")
    taken = client.post("/admin/users", data={"name": "analyst-w", "role": "analyst", "csrf": csrf})
    assert taken.status_code == 409 and "already exists" in taken.text
    assert 'value="analyst-w"' in taken.text
    bad_role = client.post("/admin/users", data={"name": "x-user", "role": "boss", "csrf": csrf})
    assert bad_role.status_code == 422 and "unknown role" in bad_role.text
    myself = client.post("/admin/users/admin-w/disable", data={"csrf": csrf})
    assert myself.status_code == 409 and "own account" in myself.text
    nobody = client.post("/admin/users/nobody/token", data={"csrf": csrf})
    assert nobody.status_code == 404


@pytest.mark.parametrize("role", ["enroller", "analyst"])
def test_users_pages_refuse_other_roles(world, role):
    engine, _ = world
    client, csrf = browser_for(world, role)
    assert client.get("/admin/users").status_code == 403
    assert client.post("/admin/users", data={"name": "sneaky", "role": "admin", "csrf": csrf}).status_code == 403
    assert client.post("/admin/users/admin-w/disable", data={"csrf": csrf}).status_code == 403
    assert "sneaky" not in [u["user"] for u in engine.list_users()]
    assert engine.audit_entries(action="denied")[-1]["payload"]["attempted"] == "user.manage"


def test_users_forms_need_the_csrf_token(world):
    client, _ = browser_for(world, "admin")
    assert client.post("/admin/users", data={"name": "no-csrf", "role": "admin"}).status_code == 403


# -- several faces in the probe ------------------------------------------------------------------------

def test_photo_with_several_faces_shows_them_numbered_and_searches_the_chosen_one(world):
    engine, _ = world
    client, csrf = browser_for(world, "analyst")
    form = {"gallery": "g", "purpose": "fraud", "case": "G-7", "csrf": csrf}
    page = client.post("/search", data=form, files={"image": ("group.jpg", group_photo(), "image/jpeg")})
    assert page.status_code == 200 and "Which face?" in page.text
    assert "--" not in re.sub(r"<!--.*?-->", "", page.text.split("<main>")[1])  # no CLI flag on the page
    assert 'name="face" value="1"' in page.text and 'name="face" value="2"' in page.text
    carried = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    assert carried["purpose"] == "fraud" and carried["case"] == "G-7" and carried["gallery"] == "g"
    ardern = next(n for n in (1, 2) if engine.faces(group_photo())[1][n - 1].box[0] > 300)
    result = client.post("/search", data={**carried, "face": str(ardern)})
    assert result.status_code == 200 and "Candidates found" in result.text and "Jacinda Ardern" in result.text
    entry = engine.audit_entries(action="search")[-1]["payload"]
    assert entry["case"] == "G-7" and entry["decision"] == "match"
    import hashlib
    assert entry["probe_sha256"] == hashlib.sha256(group_photo()).hexdigest()


def test_api_and_engine_take_a_face_number(world):
    engine, tokens = world
    api = TestClient(create_app(engine=engine), headers={"Authorization": f"Bearer {tokens['analyst']}"})
    faces = api.post("/api/v1/faces", files={"image": ("group.jpg", group_photo(), "image/jpeg")}).json()
    assert [f["number"] for f in faces["faces"]] == [1, 2] and all(len(f["box"]) == 4 for f in faces["faces"])
    right = next(f["number"] for f in faces["faces"] if f["box"][0] > 300)
    form = {"gallery": "g", "purpose": "fraud", "case": "A-1"}
    refused = api.post("/api/v1/search", data=form, files={"image": ("group.jpg", group_photo(), "image/jpeg")})
    assert refused.status_code == 400 and "--face N" in refused.json()["detail"]
    found = api.post("/api/v1/search", data={**form, "face": str(right)},
                     files={"image": ("group.jpg", group_photo(), "image/jpeg")}).json()
    assert found["candidates"][0]["subject"] == "Jacinda Ardern"
    missing = api.post("/api/v1/search", data={**form, "face": "5"},
                       files={"image": ("group.jpg", group_photo(), "image/jpeg")})
    assert missing.status_code == 422 and "no face 5" in missing.json()["detail"]
    both = api.post("/api/v1/search", data={**form, "face": "1", "largest_face": "true"},
                    files={"image": ("group.jpg", group_photo(), "image/jpeg")})
    assert both.status_code == 422


# -- forms keep their values; errors in plain words ------------------------------------------------------

def test_search_error_keeps_the_form_and_the_photo_and_names_no_flag(world):
    client, csrf = browser_for(world, "analyst")
    probe = held_out_probes()[0].read_bytes()
    page = client.post("/search", data={"gallery": "g", "purpose": "fraud", "case": " ", "authorisation": "W-9",
                                        "csrf": csrf}, files={"image": ("p.jpg", probe, "image/jpeg")})
    assert page.status_code == 422
    assert "Case reference" in page.text and "--case" not in page.text
    assert 'value="fraud"' in page.text and 'value="W-9"' in page.text and 'name="image_data"' in page.text
    photo = re.search(r'name="image_data" value="([^"]+)"', page.text).group(1)
    again = client.post("/search", data={"gallery": "g", "purpose": "fraud", "case": "C-2", "csrf": csrf,
                                         "image_data": photo, "image_name": "p.jpg"})
    assert again.status_code == 200 and "Ledger entry" in again.text
    link = re.search(r'id="new-search" href="([^"]+)"', again.text).group(1).replace("&amp;", "&")
    assert "purpose=fraud" in link and "case=C-2" in link
    next_form = client.get(link).text
    assert 'value="fraud"' in next_form and 'value="C-2"' in next_form


def test_purpose_outside_the_policy_is_a_form_error(world):
    client, csrf = browser_for(world, "analyst")
    probe = held_out_probes()[0].read_bytes()
    page = client.post("/search", data={"gallery": "g", "purpose": "curiosity", "case": "C-3", "csrf": csrf},
                       files={"image": ("p.jpg", probe, "image/jpeg")})
    assert page.status_code == 403 and "not allowed" in page.text and 'value="curiosity"' in page.text


def test_verify_error_keeps_the_values(world):
    client, csrf = browser_for(world, "analyst")
    a, b = (p.read_bytes() for p in held_out_probes()[:2])
    page = client.post("/verify", data={"purpose": "", "case": "V-1", "csrf": csrf},
                       files={"image_a": ("a.jpg", a, "image/jpeg"), "image_b": ("b.jpg", b, "image/jpeg")})
    assert page.status_code == 422 and 'value="V-1"' in page.text and "--purpose" not in page.text


@pytest.mark.parametrize("message, expected", [
    ("a purpose is required (--purpose); every search must state it", "(the Purpose field)"),
    ("x.jpg: 2 faces of similar size found; use one face per image, or choose --face N (search), --largest-face "
     "or --allow-multiple (enrol)", "use a photo that shows one person"),
    ("unknown gallery 'x' (known galleries: g); create it with `faceledger gallery create`", "unknown gallery 'x'"),
    ("its policy must be changed by an admin (`faceledger gallery update NAME --investigative`)", "by an admin"),
])
def test_plain_words_drop_cli_flags(message, expected):
    text = plain_words(message)
    assert expected in text and "--" not in text and "`" not in text


def test_error_page_names_no_flag(world):
    client, _ = browser_for(world, "analyst")
    page = client.get("/galleries/nowhere")
    assert page.status_code == 404 and "unknown gallery" in page.text and "faceledger gallery" not in page.text


def test_cli_search_takes_a_face_number(tmp_path, capsys, monkeypatch):
    import json

    from .test_cli import run
    home = tmp_path / "home"
    run(capsys, monkeypatch, home, "gallery", "create", "g")
    code, _, err = run(capsys, monkeypatch, home, "enroll", OPEN_FACES / "ardern_2018.jpg", "--gallery", "g",
                       "--subject", "Jacinda Ardern", "--source", "CC", "--legal-basis", "public record")
    assert code == 0, err
    group = tmp_path / "group.jpg"
    group.write_bytes(group_photo())
    search = ["search", group, "--gallery", "g", "--purpose", "p", "--case", "c", "--json"]
    code, out, _ = run(capsys, monkeypatch, home, *search)  # with --json, the error is JSON on stdout
    assert code == 2 and "--face N" in json.loads(out)["error"]["message"]
    code, out, err = run(capsys, monkeypatch, home, *search, "--face", "2")
    assert code == 0, err
    assert '"subject": "Jacinda Ardern"' in out


def test_cli_rotates_a_token(tmp_path, capsys, monkeypatch):
    import json

    from .test_cli import run
    home = tmp_path / "home"
    code, out, err = run(capsys, monkeypatch, home, "user", "add", "ana", "--role", "analyst", "--json")
    old = json.loads(out)["token"]
    code, out, err = run(capsys, monkeypatch, home, "user", "rotate-token", "ana", "--json")
    assert code == 0, err
    new = json.loads(out)["token"]
    assert new != old
    code, _, err = run(capsys, monkeypatch, home, "user", "rotate-token", "nobody")
    assert code == 2 and "unknown user" in err


def test_verify_with_a_group_photo_says_so_in_plain_words(world):
    client, csrf = browser_for(world, "analyst")
    one = held_out_probes()[0].read_bytes()
    page = client.post("/verify", data={"purpose": "fraud", "case": "V-2", "csrf": csrf},
                       files={"image_a": ("group.jpg", group_photo(), "image/jpeg"),
                              "image_b": ("one.jpg", one, "image/jpeg")})
    assert page.status_code == 400 and "one person" in page.text
    assert "--" not in page.text.split("<main>")[1] and 'value="V-2"' in page.text
