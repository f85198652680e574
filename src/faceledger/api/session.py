"""Session constants and the per-session CSRF token: shared by the middleware, the pages and the dependencies.

A leaf module (standard library only), so every other module of the HTTP side may import it.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "faceledger_session"
"""The sign-in cookie: a random session id (api/sessions_store.py), never the API token."""
LOGIN_COOKIE = "faceledger_login"
"""The pre-session cookie of the sign-in form: the form's CSRF token is derived from it (double submit)."""
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_token(token: str) -> str:
    """Per-session CSRF token: derived from the (secret) session id, so only its holder can know it."""
    return hmac.new(token.encode(), b"faceledger csrf", hashlib.sha256).hexdigest()[:32]


def csrf_ok(token: str | None, sent: str | None) -> bool:
    """Whether `sent` is the CSRF token of the session `token` (constant-time comparison)."""
    return token is not None and hmac.compare_digest(sent or "", csrf_token(token))


def is_api(path: str) -> bool:
    """Paths of the JSON API (/api/...): their errors are problem+json, never HTML."""
    return path.startswith("/api/")
