"""Users and their tokens (shown once, stored as sha256), managed by admins and ledgered."""

from __future__ import annotations

from sqlalchemy import delete, select

from ..accounts import LOCAL_OPERATOR, add_user, authenticate, find_user, new_token, token_digest
from ..errors import Conflict, FaceledgerError
from ..policy import Principal
from ..store import User, WebSession
from .access import Access
from .context import Context, iso, require_text


class Users:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access

    def add_user(self, name: str, *, role: str, by: Principal | None = None) -> tuple[dict, str]:
        """Create a user; returns (user, token). The token is shown once; only its hash is stored."""
        ctx = self.ctx
        principal = self.access.authorize(by, "user.manage", user=name, role=role)
        name = require_text(name, "a user name", "NAME")
        with ctx.writing() as session:
            user, token = add_user(session, name=name, role=role, created_by=principal.name)
            entry = ctx.ledger.append(session, actor=principal.name, action="user.add",
                                      payload={"user": name, "role": role})
            session.commit()
        ctx.ledger.note_committed(entry)
        return {"user": user.name, "role": user.role}, token

    def set_user_disabled(self, name: str, disabled: bool = True, *, by: Principal | None = None) -> dict:
        ctx = self.ctx
        principal = self.access.authorize(by, "user.manage", user=name)
        if disabled and name == principal.name:
            raise Conflict(f"{name!r} may not disable their own account; another admin must")
        with ctx.writing() as session:
            user = find_user(session, name)
            user.disabled = disabled
            if disabled:  # the user's web sessions end now, not when they next expire
                session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            entry = ctx.ledger.append(session, actor=principal.name, action="user.disable" if disabled
                                      else "user.enable", payload={"user": name})
            session.commit()
        ctx.ledger.note_committed(entry)
        return {"user": name, "disabled": disabled}

    def rotate_token(self, name: str, *, by: Principal | None = None) -> tuple[dict, str]:
        """A new token for a user (shown once); the old one stops working at once. Ledgered."""
        ctx = self.ctx
        principal = self.access.authorize(by, "user.manage", user=name)
        if name == LOCAL_OPERATOR:
            raise FaceledgerError(f"{LOCAL_OPERATOR!r} signs in without a token; there is none to rotate")
        with ctx.writing() as session:
            user = find_user(session, name)
            token = new_token()
            user.token_sha256 = token_digest(token)
            entry = ctx.ledger.append(session, actor=principal.name, action="user.token.rotate",
                                      payload={"user": name, "role": user.role})
            session.commit()
        ctx.ledger.note_committed(entry)
        return {"user": name, "role": user.role}, token

    def list_users(self, *, by: Principal | None = None) -> list[dict]:
        self.access.authorize(by, "user.manage")
        with self.ctx.sessions() as session:
            users = session.execute(select(User).order_by(User.name)).scalars().all()
            return [{"user": u.name, "role": u.role, "disabled": u.disabled, "has_token": bool(u.token_sha256),
                     "created_at": iso(u.created_at), "created_by": u.created_by} for u in users]

    def authenticate(self, token: str | None) -> Principal:
        with self.ctx.sessions() as session:
            return authenticate(session, token)
