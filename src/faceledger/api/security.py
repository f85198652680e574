"""What every request passes before any route sees it: authentication, rate limit, CSRF, body size cap;
and what every response leaves with: the security headers (CSP, framing, sniffing, referrer, caching).

A pure ASGI middleware, so a request is refused before a byte of its body is read: no token is 401
whatever the body; a body over FACELEDGER_MAX_UPLOAD_BYTES is 413 from its Content-Length, or as soon as
a streamed body passes the cap.
"""

from __future__ import annotations

import math
import threading
import time

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse

from ..accounts import token_digest
from ..errors import AuthenticationFailed
from .pages import error_page
from .problems import problem
from .session import COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_ok, csrf_token, is_api

__all__ = ["COOKIE", "CSRF_HEADER", "Guard", "TokenBucket", "csrf_token", "is_api", "is_public"]

PUBLIC_PATHS = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/login", "/favicon.ico"}
PUBLIC_PREFIXES = ("/static/",)

CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; script-src 'self'; "
       "style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
"""The pages' policy: no inline script or style, nothing from another origin, never framed."""
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'")
"""/docs and /redoc: Swagger UI and ReDoc from this server's own files (docs_offline.py), no inline script;
inline styles stay allowed because both set them at run time (ReDoc's styled-components), and ReDoc
runs its search in a blob: worker. Nothing from another origin."""
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc"}
VIDEO_UPLOADS = ("/api/v1/video/", "/video")
"""Video uploads are capped at FACELEDGER_VIDEO_MAX_BYTES (plus the form's fields), not the image cap."""
VIDEO_FORM_SLACK = 1 << 20
SECURITY_HEADERS = {b"x-frame-options": b"DENY", b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer"}


class TokenBucket:
    """Per-key token bucket: `per_minute` requests a minute, bursts up to `per_minute`. In memory."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed (a token is taken), else seconds until the next request would be allowed."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Guard:
    """Authentication first, then the rate limit, CSRF for cookie sessions, and the body size cap."""

    def __init__(self, app, *, engine, settings, web_sessions) -> None:
        self.app = app
        self.engine = engine
        self.web_sessions = web_sessions
        self.max_body = settings.max_upload_bytes
        self.max_video_body = settings.video_max_bytes + VIDEO_FORM_SLACK  # the video routes check the file
        self.limiter = TokenBucket(settings.rate_limit_per_minute)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope["path"])
        request = Request(scope)
        path = scope["path"]
        state = scope.setdefault("state", {})
        state["principal"] = state["token"] = state["auth_via"] = None
        token, via = _credentials(request)
        if token:
            try:
                check = self.web_sessions.resolve if via == "cookie" else self.engine.authenticate
                state["principal"] = await run_in_threadpool(check, token)
                state["token"], state["auth_via"] = token, via
            except AuthenticationFailed as exc:
                if not is_public(path):
                    await self._unauthenticated(request, str(exc), clear_cookie=via == "cookie")(scope, receive, send)
                    return
        elif not is_public(path):
            message = "no token given; send `Authorization: Bearer TOKEN` (or sign in at /login)"
            await self._unauthenticated(request, message)(scope, receive, send)
            return

        if state["principal"] is not None:
            wait = self.limiter.take(token_digest(state["token"]))
            if wait:
                response = problem(429, f"rate limit of {int(self.limiter.capacity)} requests a minute per token "
                                   f"reached; retry in {math.ceil(wait)} s", slug="rate-limited",
                                   headers={"Retry-After": str(math.ceil(wait))})
                await response(scope, receive, send)
                return
            if (via == "cookie" and is_api(path) and request.method not in SAFE_METHODS
                    and not csrf_ok(token, request.headers.get(CSRF_HEADER))):
                await problem(403, "a cookie-authenticated request must carry the X-CSRF-Token header of its "
                              "session (or use `Authorization: Bearer TOKEN`)", slug="csrf")(scope, receive, send)
                return

        limit = self.max_video_body if path.startswith(VIDEO_UPLOADS) else self.max_body
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(request, limit)(scope, receive, send)
            return
        await self.app(scope, self._capped(receive, limit), send)

    def _capped(self, receive, limit: int):
        seen = 0
        setting = "FACELEDGER_MAX_UPLOAD_BYTES" if limit == self.max_body else "FACELEDGER_VIDEO_MAX_BYTES"

        async def capped_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is over the limit of {limit:,} bytes ({setting})")
            return message

        return capped_receive

    def _too_large(self, request: Request, limit: int):
        setting = "FACELEDGER_MAX_UPLOAD_BYTES" if limit == self.max_body else "FACELEDGER_VIDEO_MAX_BYTES"
        detail = (f"the request body ({int(request.headers['content-length']):,} bytes) is over the limit of "
                  f"{limit:,} bytes ({setting})")
        if is_api(request.url.path):
            return problem(413, detail, slug="too-large")
        return error_page(request, 413, detail)

    def _unauthenticated(self, request: Request, detail: str, *, clear_cookie: bool = False):
        if is_api(request.url.path):
            response = problem(401, detail, slug="authentication-failed",
                               headers={"WWW-Authenticate": 'Bearer realm="faceledger"'})
        else:
            target = "/login" + (f"?next={request.url.path}" if request.method in SAFE_METHODS else "")
            response = RedirectResponse(target, status_code=303)
        if clear_cookie:
            response.delete_cookie(COOKIE, path="/")
        return response


def _credentials(request: Request) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        return (value.strip() or None, "bearer") if scheme.lower() == "bearer" else (None, None)
    cookie = request.cookies.get(COOKIE)
    return (cookie, "cookie") if cookie else (None, None)


def _with_security_headers(send, path: str):
    """`send`, adding the security headers to the response; `Cache-Control: no-store` on all but static
    files, so no authenticated page, face crop or API answer is kept by a browser or proxy."""
    csp = (DOCS_CSP if path in DOCS_PATHS else CSP).encode()
    no_store = not path.startswith(PUBLIC_PREFIXES)

    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            extra = {**SECURITY_HEADERS, b"content-security-policy": csp}
            if no_store:
                extra[b"cache-control"] = b"no-store"
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in extra]
            message = {**message, "headers": headers + list(extra.items())}
        await send(message)

    return send_with_headers
