"""Users and their tokens. Tokens are shown once and stored only as sha256.

Who the CLI acts as: whoever can run the CLI on the data directory can read and write it anyway, so
that person is one identity, the local operator (`local-operator`, an admin, no token); the OS user
and host are recorded with each of its ledger entries (`local_seat`). Acting as a named user (an
analyst, a second reviewer) needs that user's token; a name alone (FACELEDGER_OPERATOR) is never
enough, or one person could search as one name and review as another.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import AlreadyExists, AuthenticationFailed, NotFound
from .identity import LOCAL_CREATED_BY, LOCAL_OPERATOR, TOKEN_PREFIX, local_seat, token_digest  # noqa: F401 (re-exported)
from .policy import Principal, check_role_name
from .store import User, hold_write_lock


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_user(session: Session, *, name: str, role: str, created_by: str, with_token: bool = True) -> tuple[User, str | None]:
    check_role_name(role)
    if name.strip().lower() == LOCAL_OPERATOR and created_by != LOCAL_CREATED_BY:
        raise AlreadyExists(f"{LOCAL_OPERATOR!r} is reserved for whoever runs the CLI on the data directory")
    hold_write_lock(session)  # the name check and the insert, with no other process in between
    if session.execute(select(User.id).where(User.name == name)).first():
        raise AlreadyExists(f"user {name!r} already exists")
    token = new_token() if with_token else None
    user = User(name=name, role=role, token_sha256=token_digest(token) if token else None,
                created_at=datetime.now(UTC), created_by=created_by, disabled=False)
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


def local_operator(session: Session, name: str = LOCAL_OPERATOR) -> Principal:
    """The person running the CLI on the data directory: an admin, created on first use (no token).

    Never a named user: a user who has a token, or was added by someone, can be acted as only with
    their token (`authenticate`)."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        hold_write_lock(session)  # first use by several CLI processes at once: one creates it
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        user, _ = add_user(session, name=name, role="admin", created_by=LOCAL_CREATED_BY, with_token=False)
        session.commit()
    if user.token_sha256 is not None or user.created_by != LOCAL_CREATED_BY:
        raise AuthenticationFailed(f"{name!r} is a named user: act as them with their token (FACELEDGER_TOKEN), "
                                   "not by name")
    if user.disabled:
        raise AuthenticationFailed(f"user {name!r} is disabled")
    return Principal(name=user.name, role=user.role)


def cli_principal(session: Session, *, token: str | None, claimed: str | None = None) -> Principal:
    """Who a CLI invocation acts as: the token's holder, else the one local operator.

    `claimed` is a name asked for without a token (FACELEDGER_OPERATOR): only `local-operator` (or
    nothing) is accepted; any other name is refused rather than silently ignored."""
    if token and token.strip():
        return authenticate(session, token)
    if claimed and claimed.strip() and claimed.strip() != LOCAL_OPERATOR:
        raise AuthenticationFailed(f"acting as {claimed.strip()!r} needs their token: set FACELEDGER_TOKEN (or "
                                   f"--token-file); without one the CLI acts as {LOCAL_OPERATOR!r}")
    return local_operator(session, LOCAL_OPERATOR)


def find_user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"unknown user {name!r}")
    return user
