"""Errors as RFC 9457 problem details (application/problem+json); the one place statuses are chosen."""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse

from .. import errors

PROBLEM_TYPE = "urn:faceledger:problem:"
MEDIA_TYPE = "application/problem+json"

# Most specific first: the first class an exception is an instance of decides.
STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.AuthenticationFailed, 401, "authentication-failed"),
    (errors.PermissionDenied, 403, "permission-denied"),
    (errors.MissingField, 422, "missing-field"),
    (errors.PolicyViolation, 403, "policy-violation"),
    (errors.ImageTooLarge, 413, "image-too-large"),
    (errors.NoFaceFound, 400, "no-face"),
    (errors.MultipleFaces, 400, "multiple-faces"),
    (errors.ImageError, 400, "bad-image"),
    (errors.Gone, 410, "gone"),
    (errors.NotFound, 404, "not-found"),
    (errors.AlreadyExists, 409, "already-exists"),
    (errors.Conflict, 409, "conflict"),
    (errors.IndexMismatch, 409, "index-mismatch"),
    (errors.ModelNotAvailable, 503, "model-unavailable"),
    (errors.LedgerTampered, 500, "ledger-tampered"),
    (errors.FaceledgerError, 422, "invalid-request"),
]
"""FaceledgerError subclass -> (HTTP status, problem type). docs/api.md prints this table."""


def classify(exc: Exception) -> tuple[int, str]:
    for cls, status, slug in STATUS:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal-error"


def problem(status: int, detail: str, *, slug: str | None = None, headers: dict | None = None,
            **extra) -> JSONResponse:
    title = HTTPStatus(status).phrase
    slug = slug or title.lower().replace(" ", "-")
    body = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)
