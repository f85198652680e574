"""Galleries in the web app (admins): create one with its policy, and change a gallery's policy.

The form is drawn from one list, `policy.POLICY_FIELDS` (the policy `gallery update` may change), with
a label and an input kind for each field in `FIELDS`; a field added to the policy without an entry here
still shows up, as a checkbox (a yes/no value) or a text box. Each save is one engine call with the
signed-in admin as `by=` (`create_gallery`, `update_gallery`): the engine checks the role and ledgers
the policy. Bad input re-renders the form with the error in plain words and the values typed kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import AuthenticationFailed, FaceledgerError, PermissionDenied
from ..policy import PERMISSIONS, POLICY_FIELDS
from .deps import MAX_DAYS, EngineDep, Me, check_csrf
from .pages import render
from .problems import classify
from .wording import plain_words

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Field:
    label: str
    kind: str  # "list" (one per line), "check", "days", "rate", "text"
    help: str = ""
    minimum: int = 0


FIELDS = {
    "purposes": Field("Purposes a search may state", "list",
                      "one per line; leave empty to accept any stated purpose"),
    "allow_investigative": Field("Allow investigative search", "check",
                                 "always return the top candidates, each labelled a lead with its false-match "
                                 "rate; a second person must review before a candidate is confirmed"),
    "target_fpir": Field("Target FPIR (false-positive identification rate)", "rate",
                         "chance that a search of someone not enrolled returns a candidate, e.g. 0.01"),
    "retain_days": Field("Records kept (days)", "days", "enrolled images are deleted this many days after "
                         "enrolment; empty: kept until erased", minimum=1),
    "probe_retain_days": Field("Probes kept (days)", "days", "how long a search's probe (hash, embedding) is "
                               "kept; 0: not kept after the search"),
    "keep_probe_images": Field("Keep probe images", "check", "keep the probe photo itself for its retention period"),
    "keep_probe_for_review": Field("Keep the probe for review", "check",
                                   "keep a crop of the probe's face until the search is reviewed (or its "
                                   "retention ends), so the reviewer sees it"),
    "blind_review": Field("Blind review", "check",
                          "reviewers record a decision before they see the candidate's rank and score"),
}
DEFAULTS = {"keep_probe_for_review": True}


def policy_fields(info: dict | None = None) -> list[tuple[str, Field]]:
    """(name, Field) for every policy field, in POLICY_FIELDS order."""
    fields = []
    for name in POLICY_FIELDS:
        guess = "check" if isinstance((info or {}).get(name, DEFAULTS.get(name)), bool) else "text"
        fields.append((name, FIELDS.get(name) or Field(name.replace("_", " ").capitalize(), guess)))
    return fields


def shown(info: dict) -> dict:
    """A gallery's policy as the form shows it."""
    values = {}
    for name, field in policy_fields(info):
        value = info.get(name, DEFAULTS.get(name))
        values[name] = "\n".join(value or ()) if field.kind == "list" else value
    return values


def parsed(form, fields: list[tuple[str, Field]]) -> dict:
    """The policy values of a posted form; a number that is not one raises a clear error."""
    values: dict = {}
    for name, field in fields:
        raw = (form.get(name) or "").strip() if field.kind != "check" else None
        if field.kind == "check":
            values[name] = form.get(name) in ("on", "true", "1", "yes")
        elif field.kind == "list":
            values[name] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif not raw:
            values[name] = None
        elif field.kind == "days":
            if not raw.isdigit() or not field.minimum <= int(raw) <= MAX_DAYS:
                raise FaceledgerError(f"{field.label} must be a whole number from {field.minimum} to {MAX_DAYS}")
            values[name] = int(raw)
        elif field.kind == "rate":
            try:
                values[name] = float(raw)
            except ValueError:
                raise FaceledgerError(f"{field.label} must be a number between 0 and 1, e.g. 0.01") from None
        else:
            values[name] = raw
    return values


def _form(request: Request, *, gallery: dict | None, values: dict, fields, error: str | None = None,
          status: int = 200, name: str = "") -> HTMLResponse:
    return render(request, "gallery_form.html", status=status, gallery=gallery, values=values, fields=fields,
                  error=error, name=name)


def _admin(by, action: str) -> None:
    if by.role not in PERMISSIONS[action]:
        raise PermissionDenied(f"changing galleries needs the admin role; you are signed in as {by.role}")


@router.get("/admin/galleries/new")
def new_gallery(request: Request, engine: EngineDep, by: Me) -> HTMLResponse:
    _admin(by, "gallery.create")
    settings = engine.settings
    values = {**shown({}), "target_fpir": settings.target_fpir, "probe_retain_days": settings.probe_retain_days,
              "allow_investigative": False, "keep_probe_images": False}
    return _form(request, gallery=None, values=values, fields=policy_fields())


@router.post("/admin/galleries/new")
async def create_gallery(request: Request, engine: EngineDep, by: Me):
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    fields = policy_fields()
    name = str(form.get("name") or "")
    try:
        values = parsed(form, fields)
        created = engine.create_gallery(name, **values, by=by)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        kept = {n: (form.get(n) or "") if f.kind != "check" else form.get(n) == "on" for n, f in fields}
        return _form(request, gallery=None, values=kept, fields=fields, error=plain_words(str(exc)),
                     status=classify(exc)[0], name=name)
    return RedirectResponse(f"/galleries/{created['name']}", 303)


@router.get("/galleries/{name}/policy")
def edit_policy(request: Request, engine: EngineDep, by: Me, name: str) -> HTMLResponse:
    info = engine.gallery_info(name, by=by)
    _admin(by, "gallery.update")
    return _form(request, gallery=info, values=shown(info), fields=policy_fields(info))


@router.post("/galleries/{name}/policy")
async def save_policy(request: Request, engine: EngineDep, by: Me, name: str):
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    info = engine.gallery_info(name, by=by)
    fields = policy_fields(info)
    try:
        values = parsed(form, fields)
        before = {n: info.get(n) for n, _ in fields}
        if values.get("purposes") is not None:
            before["purposes"] = sorted(before.get("purposes") or [])
        changes = {n: v for n, v in values.items() if v is not None and v != before.get(n)}
        if not changes:
            raise FaceledgerError("nothing changed: edit a field, then save")
        engine.update_gallery(name, **changes, by=by)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except FaceledgerError as exc:
        kept = {n: (form.get(n) or "") if f.kind != "check" else form.get(n) == "on" for n, f in fields}
        return _form(request, gallery=info, values=kept, fields=fields, error=plain_words(str(exc)),
                     status=classify(exc)[0])
    return RedirectResponse(f"/galleries/{name}", 303)
