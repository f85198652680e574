"""`faceledger audit keygen | anchor` and the anchor check behind `audit verify --anchors`.

Registered on cli.py's `audit` sub-app by `register(audit_app, engine, me)`, so this module needs no
import of cli.py (no cycle). The work is in anchors.py; these are thin shells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def register(audit_app: typer.Typer, engine: Callable, me: Callable) -> None:
    """Add `keygen` and `anchor` to the `audit` sub-app."""

    @audit_app.command("keygen")
    def audit_keygen(
        out: Annotated[Path, typer.Option("--out", help="directory for the key pair; must be outside the data "
                                                        "directory (refused inside it)")],
    ) -> None:
        """Make an Ed25519 key pair for signing ledger anchors; keep the private key away from the server."""
        from .anchors import generate_keys

        private, public = generate_keys(out, data_dir=_home(engine))
        typer.echo(f"private key (keep it off this machine, or offline): {private}")
        typer.echo(f"public key (give it to whoever verifies): {public}")

    @audit_app.command("anchor")
    def audit_anchor(
        key: Annotated[Path, typer.Option("--key", help="the private key from `audit keygen` (outside the data "
                                                        "directory)")],
        out: Annotated[Path | None, typer.Option("--out", help="append the signed anchor to this JSON-lines "
                                                                  "file, kept outside the data directory")] = None,
    ) -> None:
        """Ledger an "audit.anchor" entry and print a signed anchor over it; keep the anchors elsewhere."""
        from .anchors import anchor_ledger, anchor_line, append_anchor, load_private_key

        eng = engine()
        principal = eng.authorize(me(), "audit")
        private_key = load_private_key(key, data_dir=eng.settings.home)
        if out is not None:
            from .anchors import refuse_inside_data_dir

            refuse_inside_data_dir(out, eng.settings.home, "the anchors file")
        anchor = anchor_ledger(eng.ledger, private_key, actor=principal.name)
        if out is not None:
            append_anchor(out, anchor, data_dir=eng.settings.home)
            err.print(f"anchored entry {anchor['seq']} ({anchor['hash'][:16]}…), appended to {out}")
        typer.echo(anchor_line(anchor), nl=False)


def _home(engine: Callable) -> Path:
    return engine().settings.home


def check_with_anchors(eng, check, anchors: Path | None, public_key: Path | None):
    """The chain check (a LedgerCheck) plus the check against signed anchors (`audit verify --anchors
    --public-key`)."""
    from .anchors import AnchorError, load_public_key, read_anchors, verify_against_anchors

    if anchors is None or public_key is None:
        raise AnchorError("give both --anchors FILE and --public-key PUBLIC.pem to check against anchors")
    listed = read_anchors(anchors)
    problems = verify_against_anchors(eng.ledger, listed, load_public_key(public_key))
    if not problems:
        err.print(f"consistent with {len(listed)} signed anchor(s); the newest covers entry "
                  f"{max(a['seq'] for a in listed)}")
    return dataclasses.replace(check, ok=check.ok and not problems, problems=[*check.problems, *problems])
