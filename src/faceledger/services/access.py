"""Who is acting, whether their role allows it, and ledgering every refusal and failed attempt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..accounts import local_operator
from ..errors import FaceledgerError, PermissionDenied, PolicyViolation
from ..policy import Principal, check_role
from ..texts import ledger_safe
from .context import Context


class Access:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._operator: Principal | None = None

    @property
    def operator(self) -> Principal:
        """The local operator: whoever runs the CLI on this data directory (an admin, made on first use)."""
        if self._operator is None:
            with self.ctx.writing() as session:
                self._operator = local_operator(session, self.ctx.settings.operator)
        return self._operator

    def authorize(self, by: Principal | None, action: str, **details) -> Principal:
        """The acting user, if their role allows the action; a refusal is ledgered, then raised."""
        principal = by or self.operator
        try:
            check_role(principal, action)
        except PermissionDenied as exc:
            self.record_denial(principal, action, str(exc), details)
            raise
        return principal

    def record_denial(self, principal: Principal, action: str, reason: str, details: dict) -> None:
        self.ctx.ledger.record(actor=principal.name, action="denied", payload={
            "attempted": action, "role": principal.role, "reason": ledger_safe(reason),
            "request": ledger_safe(details)})

    @contextmanager
    def refusals(self, principal: Principal, action: str, details: dict) -> Iterator[None]:
        """A request refused by policy (missing purpose, purpose not allowed, ...) is ledgered as denied."""
        try:
            yield
        except PolicyViolation as exc:
            self.record_denial(principal, action, str(exc), details)
            raise

    @contextmanager
    def failures(self, principal: Principal, action: str, request: dict) -> Iterator[None]:
        """A search, verify or erase that fails on its probe (no face, several faces) is still ledgered."""
        try:
            yield
        except FaceledgerError as exc:
            self.ctx.ledger.record(actor=principal.name, action=action, payload={
                **ledger_safe(request), "decision": "failed", "error": ledger_safe(str(exc), limit=500),
                "model_id": self.ctx.model_id})
            raise
