"""Alerts leave by webhook through a spool file: written first, removed only once delivered.

An alert is appended (and fsynced) to the spool before anything is posted, so a webhook that is down,
a crash or a kill never loses one; `flush` posts what is pending in order and keeps what failed for
the next try. Delivery is at least once: each alert carries an id (also sent as Idempotency-Key) so a
receiver can drop a repeat. Knows nothing of the store.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import FaceledgerError


def post_json(url: str, payload: dict, *, key: str, timeout: float = 5.0) -> None:
    """POST payload as JSON; raises OSError (or URLError/HTTPError) when it was not accepted (2xx)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "faceledger-watch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")


def check_webhook(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FaceledgerError(f"--webhook must be an http:// or https:// URL (got {redact_url(url)!r})")
    return url


def redact_url(url: str) -> str:
    """A URL fit for the ledger and logs: user name and password removed, query dropped."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class AlertSpool:
    """A JSON-lines file of alerts not yet delivered to their webhook."""

    def __init__(self, path: Path, *, post=post_json) -> None:
        self.path = path
        self.post = post
        self._lock = threading.Lock()

    def pending(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def add(self, webhook: str, alert: dict) -> str:
        """Append an alert for `webhook` (fsynced before returning); returns its id."""
        alert_id = str(alert.get("alert_id") or uuid.uuid4())
        record = {"id": alert_id, "webhook": webhook, "alert": {**alert, "alert_id": alert_id}, "attempts": 0,
                  "last_error": None}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return alert_id

    def flush(self) -> dict:
        """Try every pending alert in order; keep the ones that failed. Returns delivered/pending counts."""
        with self._lock:
            records = self.pending()
            kept, delivered = [], 0
            for record in records:
                try:
                    self.post(record["webhook"], record["alert"], key=record["id"])
                    delivered += 1
                except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
                    record["attempts"] += 1
                    record["last_error"] = str(exc)[:200]
                    kept.append(record)
            if records:
                self._rewrite(kept)
        return {"delivered": delivered, "pending": len(kept)}

    def _rewrite(self, records: list[dict]) -> None:
        if not records:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
