"""Server-side sessions of the web app.

At sign-in the user's API token is checked once and a random session id is minted; the cookie holds
only that id, and the store only its sha256 (table `web_sessions`: user, created, last seen, expires).
A session ends when its row is gone: sign-out deletes it, so a copied cookie is dead from that moment;
it also ends after `FACELEDGER_SESSION_IDLE_MINUTES` without use, `FACELEDGER_SESSION_MAX_HOURS` after
sign-in, and at once when its user is disabled (checked on every request, and the rows are deleted).
Sign-in and sign-out are ledgered (`session.login`, `session.logout`, actor = the user) without the token
or the session id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select, update

from ..accounts import token_digest
from ..errors import AuthenticationFailed
from ..policy import Principal
from ..store import User, WebSession

SESSION_BYTES = 32
TOUCH_EVERY = timedelta(seconds=60)
"""last_seen_at is written at most this often per session (a write per request would serialise reads)."""

ENDED = "the web session has ended (signed out, expired or the user is disabled); sign in again"


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    principal: Principal
    expires_at: datetime


class WebSessions:
    """Open, resolve and close web sessions in the engine's store (its sessions, write lock and ledger)."""

    def __init__(self, engine, *, idle_minutes: float, max_hours: float) -> None:
        self.engine = engine
        self.idle = timedelta(minutes=idle_minutes)
        self.lifetime = timedelta(hours=max_hours)

    @classmethod
    def from_settings(cls, engine, settings) -> WebSessions:
        return cls(engine, idle_minutes=settings.session_idle_minutes, max_hours=settings.session_max_hours)

    def open(self, token: str | None) -> SignedIn:
        """Check the API token and start a session for its user; AuthenticationFailed otherwise."""
        if not token or not token.strip():
            raise AuthenticationFailed("no token given")
        now = datetime.now(timezone.utc)
        session_id = secrets.token_urlsafe(SESSION_BYTES)
        ledger = self.engine.ledger
        with self.engine.writing() as session:
            user = session.execute(select(User).where(User.token_sha256 == token_digest(token.strip()))
                                   ).scalar_one_or_none()
            if user is None or user.disabled:
                raise AuthenticationFailed("the token is not valid (unknown or disabled)")
            session.execute(delete(WebSession).where(WebSession.expires_at < now))  # housekeeping
            expires = now + self.lifetime
            session.add(WebSession(id_sha256=session_digest(session_id), user_id=user.id, created_at=now,
                                   last_seen_at=now, expires_at=expires))
            entry = ledger.append(session, actor=user.name, action="session.login",
                                  payload={"via": "web", "expires_at": expires.isoformat()})
            principal = Principal(name=user.name, role=user.role)
            session.commit()
        ledger.note_committed(entry)
        return SignedIn(session_id, principal, expires)

    def resolve(self, session_id: str | None) -> Principal:
        """The user of a live session; AuthenticationFailed (and the row deleted) if it has ended."""
        if not session_id:
            raise AuthenticationFailed(ENDED)
        digest = session_digest(session_id)
        now = datetime.now(timezone.utc)
        with self.engine.sessions() as session:
            row = session.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                                  .where(WebSession.id_sha256 == digest)).first()
        if row is None:
            raise AuthenticationFailed(ENDED)
        web, user = row
        last_seen = _aware(web.last_seen_at)
        if user.disabled or now >= _aware(web.expires_at) or now - last_seen >= self.idle:
            self._delete(digest)
            raise AuthenticationFailed(ENDED)
        if now - last_seen >= TOUCH_EVERY:
            with self.engine.writing() as session:
                session.execute(update(WebSession).where(WebSession.id_sha256 == digest).values(last_seen_at=now))
                session.commit()
        return Principal(name=user.name, role=user.role)

    def close(self, session_id: str | None, principal: Principal) -> None:
        """Sign-out: the row is deleted (the cookie is dead from now on) and the act ledgered."""
        ledger = self.engine.ledger
        with self.engine.writing() as session:
            gone = session.execute(delete(WebSession).where(WebSession.id_sha256 == session_digest(session_id or "")))
            entry = None
            if gone.rowcount:
                entry = ledger.append(session, actor=principal.name, action="session.logout", payload={"via": "web"})
            session.commit()
        if entry is not None:
            ledger.note_committed(entry)

    def _delete(self, digest: str) -> None:
        with self.engine.writing() as session:
            session.execute(delete(WebSession).where(WebSession.id_sha256 == digest))
            session.commit()

    def count(self, user: str) -> int:
        """How many live rows a user has (for tests and operators)."""
        with self.engine.sessions() as session:
            return len(session.execute(select(WebSession.id_sha256).join(User, User.id == WebSession.user_id)
                                       .where(User.name == user)).all())
