"""`faceledger evidence ENTRY --out FILE` (export a search's evidence package) and
`faceledger evidence verify FILE [--anchor ANCHORS --public-key KEY]` (check one, without the database).

`faceledger evidence ENTRY` is short for `faceledger evidence export ENTRY`. The work is in
services/evidence.py (export) and evidence/proof.py (the check); these are thin shells.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from .cli_common import JsonFlag, engine, err, me, print_json
from .errors import FaceledgerError


class _ExportByDefault(TyperGroup):
    """A first argument that is not a command name is a search entry: `evidence ENTRY` = `evidence export ENTRY`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["export", *args]
        return super().parse_args(ctx, args)


evidence_app = typer.Typer(cls=_ExportByDefault, no_args_is_help=True,
                           help="Evidence packages: one self-contained HTML file per search, and their check. "
                                "`faceledger evidence ENTRY --out FILE` is short for `evidence export`.")


@evidence_app.command("export")
def evidence_export(
    entry: Annotated[str, typer.Argument(help="the search's ledger entry id")],
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write (not overwritten)")],
    json_out: JsonFlag = False,
) -> None:
    """Write a search's evidence package (probe, candidates, FMRs, threshold, reviews, chain proof); ledgered."""
    if out.exists():
        raise FaceledgerError(f"{out} already exists; choose another --out file")
    package = engine().export_evidence(entry, by=me())
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it may hold faces
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(package["html"])
    except OSError as exc:
        raise FaceledgerError(f"cannot write {out}: {exc.strerror or exc} (the export was ledgered as "
                              f"{package['ledger_entry']})") from None
    summary = {k: package[k] for k in ("search", "sha256", "bytes", "ledger_entry")} | {"file": str(out)}
    if json_out:
        print_json(summary)
        return
    typer.echo(f"wrote {out} ({package['bytes']:,} bytes, sha256 {package['sha256']})")
    typer.echo(f"ledgered as evidence.export {package['ledger_entry']}")


@evidence_app.command("verify")
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="an evidence package (.html)")],
    anchor: Annotated[Path | None, typer.Option("--anchor", help="signed anchors (JSON lines from `faceledger "
                                                                  "audit anchor --out`)")] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="the anchors' public key (checks "
                                                                          "their signatures)")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Re-check a package's chain segment (every hash and link) and, with --anchor, that it reaches an anchor."""
    from .evidence.check import verify_file
    from .evidence.proof import EvidenceInvalid

    if public_key is not None and anchor is None:
        raise FaceledgerError("--public-key checks anchors: give --anchor ANCHORS too")
    check = verify_file(file, anchors_path=anchor, public_key_path=public_key)
    if json_out:
        print_json({"ok": check.ok, "search": check.search_entry, "segment": check.segment,
                    "problems": check.problems, "notes": check.notes, "sha256": check.sha256})
    else:
        for note in check.notes:
            err.print(f"note: {note}", highlight=False)
    if not check.ok:
        raise EvidenceInvalid("evidence package BROKEN: " + "; ".join(check.problems))
    if not json_out:
        first, last = check.segment
        typer.echo(f"evidence package intact: search {check.search_entry}, chain entries {first}-{last} "
                   f"recomputed; file sha256 {check.sha256} (compare with its evidence.export ledger entry)")
