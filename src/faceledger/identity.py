"""Who acts, without the store: token digests, the local operator's name, and the seat behind it.

accounts.py keeps users in the store through SQLAlchemy; these pieces are what a search run by the CLI
without SQLAlchemy (direct_search.py) needs as well.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket

TOKEN_PREFIX = "flt_"
LOCAL_OPERATOR = "local-operator"
"""The one identity of whoever runs the CLI on the data directory without a token."""
LOCAL_CREATED_BY = "local operator (first use)"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def local_seat(label: str | None = None) -> dict:
    """Where the local operator acted from, recorded with its ledger entries (not an identity)."""
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    seat = {"os_user": os_user, "host": socket.gethostname()}
    if label:
        seat["label"] = label
    return seat
