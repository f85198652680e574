"""Users and their tokens. Tokens are shown once and stored only as sha256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import AlreadyExists, AuthenticationFailed, NotFound
from .policy import Principal, check_role_name
from .store import User

TOKEN_PREFIX = "flt_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_user(session: Session, *, name: str, role: str, created_by: str, with_token: bool = True) -> tuple[User, str | None]:
    check_role_name(role)
    if session.execute(select(User.id).where(User.name == name)).first():
        raise AlreadyExists(f"user {name!r} already exists")
    token = new_token() if with_token else None
    user = User(name=name, role=role, token_sha256=token_digest(token) if token else None,
                created_at=datetime.now(timezone.utc), created_by=created_by, disabled=False)
    session.add(user)
    session.flush()
    return user, token


def authenticate(session: Session, token: str | None) -> Principal:
    """The user holding this token, or AuthenticationFailed (never says which part was wrong)."""
    if not token or not token.strip():
        raise AuthenticationFailed("no token given; send `Authorization: Bearer TOKEN` or set FACELEDGER_TOKEN")
    user = session.execute(select(User).where(User.token_sha256 == token_digest(token.strip()))).scalar_one_or_none()
    if user is None or user.disabled:
        raise AuthenticationFailed("the token is not valid (unknown or disabled)")
    return Principal(name=user.name, role=user.role)


def local_operator(session: Session, name: str) -> Principal:
    """The person running the CLI on the data directory: an admin, created on first use (no token)."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        user, _ = add_user(session, name=name, role="admin", created_by="local operator (first use)",
                           with_token=False)
        session.commit()
    if user.disabled:
        raise AuthenticationFailed(f"user {name!r} is disabled")
    return Principal(name=user.name, role=user.role)


def find_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"unknown user {name!r}")
    return user
