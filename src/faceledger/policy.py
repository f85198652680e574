"""Who may do what, and the accountability rules of a gallery. Every check raises a clear error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import FaceledgerError, PermissionDenied, PolicyViolation
from .texts import clean_text

ROLES = ("admin", "enroller", "analyst", "reviewer", "auditor")

PERMISSIONS: dict[str, frozenset[str]] = {
    "gallery.create": frozenset({"admin"}),
    "gallery.update": frozenset({"admin"}),
    "gallery.read": frozenset(ROLES),
    "user.manage": frozenset({"admin"}),
    "enroll": frozenset({"admin", "enroller"}),
    "subject.edit": frozenset({"admin", "enroller"}),
    "search": frozenset({"admin", "analyst"}),
    "verify": frozenset({"admin", "analyst"}),
    "review": frozenset({"reviewer"}),
    "search.read": frozenset({"admin", "analyst", "reviewer", "auditor"}),
    "erase": frozenset({"admin"}),
    "purge": frozenset({"admin"}),
    "reindex": frozenset({"admin"}),
    "migrate": frozenset({"admin"}),
    "calibrate": frozenset({"admin"}),
    "audit": frozenset({"admin", "auditor"}),
    "report": frozenset({"admin", "auditor"}),
    "faces": frozenset(ROLES),
    "face.view": frozenset({"admin", "analyst", "reviewer"}),
    "stats": frozenset(ROLES),
    "evaluate": frozenset({"admin", "analyst", "auditor"}),
    "evidence": frozenset({"admin", "analyst", "auditor"}),
}
"""Action -> roles allowed. Reviewing is reserved to reviewers so a decision is always a second person's."""

DECISIONS = ("confirm", "reject", "inconclusive")


@dataclass(frozen=True)
class Principal:
    """The user an action is taken by."""

    name: str
    role: str


def check_role(principal: Principal, action: str) -> None:
    allowed = PERMISSIONS.get(action)
    if allowed is None:
        raise FaceledgerError(f"unknown action {action!r}")
    if principal.role not in allowed:
        raise PermissionDenied(
            f"user {principal.name!r} has role {principal.role!r}; {action!r} needs one of: {', '.join(sorted(allowed))}"
        )


def check_role_name(role: str) -> str:
    if role not in ROLES:
        raise FaceledgerError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    return role


def check_purpose(purpose: str, allowed: list[str], gallery: str) -> None:
    """A gallery with listed purposes refuses any other; one with none accepts any stated purpose."""
    if allowed and purpose not in allowed:
        raise PolicyViolation(
            f"purpose {purpose!r} is not allowed for gallery {gallery!r}; allowed: {', '.join(allowed)}"
        )


def check_investigative(requested: bool, allowed: bool, gallery: str) -> None:
    if requested and not allowed:
        raise PolicyViolation(
            f"gallery {gallery!r} does not allow investigative search (always return top-k); its policy must "
            "be changed by an admin (`faceledger gallery update NAME --investigative`)"
        )


def check_decision(decision: str) -> str:
    if decision not in DECISIONS:
        raise FaceledgerError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    return decision


def expiry(start: datetime, days: int | None) -> datetime | None:
    return start + timedelta(days=days) if days else None


def check_positive_days(value: int | None, flag: str, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise FaceledgerError(f"{flag} must be a {'non-negative' if allow_zero else 'positive'} number of days")


def check_fpir(value: float | None) -> None:
    if value is not None and not 0 < value < 1:
        raise FaceledgerError(f"--target-fpir must be between 0 and 1 (e.g. 0.01), got {value}")


def candidate_status(decisions: list[dict]) -> str:
    """unreviewed, confirmed, rejected, inconclusive, or disputed (reviewers disagree)."""
    kinds = {d["decision"] for d in decisions}
    if not kinds:
        return "unreviewed"
    if {"confirm", "reject"} <= kinds:
        return "disputed"
    for decision, status in (("confirm", "confirmed"), ("reject", "rejected")):
        if decision in kinds:
            return status
    return "inconclusive"


POLICY_FIELDS = ("purposes", "allow_investigative", "target_fpir", "retain_days", "probe_retain_days",
                 "keep_probe_images", "keep_probe_for_review", "blind_review")
"""A gallery's policy: the columns of the gallery row that `gallery update` may change."""


def gallery_policy(gallery) -> dict:
    """The policy fields of a gallery row."""
    return {key: getattr(gallery, key) for key in POLICY_FIELDS}


def validated_policy(*, purposes, allow_investigative, target_fpir, retain_days, probe_retain_days,
                     keep_probe_images, keep_probe_for_review=True, blind_review=False) -> dict:
    """Gallery policy fields, checked and normalised; a bad value raises a clear error."""
    check_fpir(target_fpir)
    check_positive_days(retain_days, "--retain-days")
    check_positive_days(probe_retain_days, "--probe-retain-days", allow_zero=True)
    cleaned = sorted({clean_text(p, "a purpose", "--purposes", required=False) for p in purposes or ()} - {None})
    return {"purposes": cleaned, "allow_investigative": bool(allow_investigative), "target_fpir": float(target_fpir),
            "retain_days": retain_days, "probe_retain_days": int(probe_retain_days),
            "keep_probe_images": bool(keep_probe_images), "keep_probe_for_review": bool(keep_probe_for_review),
            "blind_review": bool(blind_review)}


def check_retain_until(retain_until: datetime | None, retain_days: int | None, gallery: str,
                       now: datetime) -> None:
    """An explicit retention date must lie in the future and within the gallery's retention period."""
    if retain_until is None:
        return
    when = retain_until if retain_until.tzinfo else retain_until.replace(tzinfo=now.tzinfo)
    if when <= now:
        raise PolicyViolation(f"the retention date {when.date().isoformat()} has already passed: "
                              "records that must already be deleted cannot be enrolled")
    if retain_days and when > now + timedelta(days=retain_days):
        latest = (now + timedelta(days=retain_days)).date().isoformat()
        raise PolicyViolation(f"gallery {gallery!r} keeps records at most {retain_days} days: "
                              f"the retention date must be on or before {latest}")
