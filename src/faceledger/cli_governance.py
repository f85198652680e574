"""`faceledger audit|user|report|purge|erase`: the ledger, users and tokens, reports, retention and erasure.

The sub-apps are added to the main app in cli.py, and `purge` and `erase` registered there as commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .audit_cli import check_with_anchors
from .audit_cli import register as register_anchor_commands
from .cli_common import JsonFlag, Rows, engine, err, me, out, parse_date, print_json
from .policy import ROLES

audit_app = typer.Typer(help="Check, read and export the ledger.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users and their tokens (admin).", no_args_is_help=True)
report_app = typer.Typer(help="Reports for the public and for oversight.", no_args_is_help=True)


# -- the ledger -------------------------------------------------------------------------------------

register_anchor_commands(audit_app, engine, me)


@audit_app.command("verify")
def audit_verify(
    as_json: JsonFlag = False,
    anchors: Annotated[Path | None, typer.Option(help="also check against these signed anchors (JSON lines "
                                                         "from `audit anchor`)")] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="the anchors' public key")] = None,
) -> None:
    """Check the ledger's hash chain; exit code 2 when any entry was edited, removed or reordered.
    With --anchors and --public-key, also detects truncation, deletion and a recomputed chain."""
    check = engine().audit_verify(by=me())
    if anchors is not None or public_key is not None:
        check = check_with_anchors(engine(), check, anchors, public_key)
    if as_json:
        print_json({"ok": check.ok, "entries": check.entries, "problems": check.problems,
                    "head_hash": check.head_hash})
    elif check.ok:
        out.print(f"[green]ledger intact[/]: {check.entries} entries, head {check.head_hash[:16]}…")
    else:
        err.print(f"[red]ledger BROKEN[/]: {len(check.problems)} problem(s) in {check.entries} entries")
        for problem in check.problems:
            err.print(f"  {problem}")
    if not check.ok:
        raise typer.Exit(2)


@audit_app.command("list")
def audit_list(
    user: Annotated[str | None, typer.Option(help="only this user's entries")] = None,
    action: Annotated[str | None, typer.Option(help="search, verify, review, denied, erase, ...")] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
    case: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    limit: Annotated[int, typer.Option(help="newest N entries")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List ledger entries, newest last, filtered by user, action, purpose, case or date."""
    rows = engine().audit_entries(actor=user, action=action, purpose=purpose, case=case,
                                  since=parse_date(since, "--since"), limit=limit, by=me())
    if as_json:
        print_json(rows)
        return
    table = Rows("seq", "time (UTC)", "user", "action", "purpose", "case", "entry", optional=("time (UTC)",))
    for r in rows:
        p = {**r["payload"].get("request", {}), **r["payload"]}
        table.add_row(str(r["seq"]), r["created_at"][:19], r["actor"], r["action"] + (
            f" ({p['attempted']})" if r["action"] == "denied" else ""), str(p.get("purpose") or ""),
            str(p.get("case") or ""), r["entry_id"])
    out.print(table)


@audit_app.command("export")
def audit_export(
    format: Annotated[str, typer.Option("--format", help="jsonl | csv")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout")] = None,
) -> None:
    """Export the ledger (hashes included, so the copy can be verified elsewhere). The export is ledgered."""
    text = engine().audit_export(format, since=parse_date(since, "--since"), by=me())
    if output:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@report_app.command("transparency")
def report_transparency(
    output: Annotated[Path, typer.Option("--out", help="folder for transparency.json/.html and charts")],
    since: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Write the transparency report: searches by purpose and user, no-match share, reviews, denials, erasures."""
    written = engine().transparency_report(output, since=parse_date(since, "--since"), by=me())
    out.print(f"wrote {written['files']['html']} and {written['files']['json']}")


# -- users ------------------------------------------------------------------------------------------

@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
    as_json: JsonFlag = False,
) -> None:
    """Create a user and print their token once (only its hash is stored)."""
    user, token = engine().add_user(name, role=role, by=me())
    if as_json:
        print_json({**user, "token": token})
        return
    out.print(f"created user [bold]{user['user']}[/] with role {user['role']}. Their token (shown once, "
              f"store it safely):\n{token}")


@user_app.command("list")
def user_list(as_json: JsonFlag = False) -> None:
    """List users and their roles."""
    users = engine().list_users(by=me())
    if as_json:
        print_json(users)
        return
    table = Rows("user", "role", "disabled", "token", "created", "by", optional=("by",))
    for u in users:
        table.add_row(u["user"], u["role"], "yes" if u["disabled"] else "no", "yes" if u["has_token"] else "no",
                      u["created_at"] or "", u["created_by"])
    out.print(table)


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user: their token stops working at once."""
    engine().set_user_disabled(name, True, by=me())
    out.print(f"disabled user {name}")


@user_app.command("rotate-token")
def user_rotate_token(name: str, as_json: JsonFlag = False) -> None:
    """Give a user a new token, printed once; their old token stops working at once."""
    user, token = engine().rotate_token(name, by=me())
    if as_json:
        print_json({**user, "token": token})
        return
    out.print(f"new token for [bold]{user['user']}[/] (shown once, store it safely):\n{token}")


# -- retention and erasure --------------------------------------------------------------------------

def purge(as_json: JsonFlag = False) -> None:
    """Delete expired images, faces, embeddings and probes now (it also runs by itself when overdue)."""
    summary = engine().purge(by=me())
    if as_json:
        print_json(summary)
        return
    out.print(f"purged {summary['images']} image(s), {summary['faces']} face(s), {summary['subjects']} subject(s), "
              f"{summary['probes']} probe(s); ledger entry {summary['ledger_entry']}")


def erase(
    reason: Annotated[str | None, typer.Option(help="why (e.g. erasure request reference)")] = None,
    face: Annotated[Path | None, typer.Option(help="a photo of the person to erase")] = None,
    subject: Annotated[str | None, typer.Option(help="subject name or id (with --gallery)")] = None,
    gallery: Annotated[str | None, typer.Option(help="only this gallery (default: all)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be removed")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a person: every matching subject's images, faces and embeddings, with a receipt."""
    receipt = engine().erase(reason=reason, face=face, subject=subject, gallery=gallery, dry_run=dry_run, by=me())
    if as_json:
        print_json(receipt)
        return
    if receipt["dry_run"]:
        out.print(f"[bold]dry run[/]: would erase {len(receipt['subjects'])} subject(s) and "
                  f"{receipt['probes_matching']} probe(s); nothing was removed")
    else:
        out.print(f"erased {len(receipt['subjects'])} subject(s): {receipt['images']} image(s), "
                  f"{receipt['faces']} face(s), {receipt['probes']} probe(s)")
    for s in receipt["subjects"]:
        score = f" (score {s['score']:.3f} >= {s['threshold']:.3f})" if s["score"] is not None else ""
        out.print(f"  {s['gallery']}: {s.get('subject', '(name withheld)')} (id {s['subject_id']}){score}")
    out.print(f"receipt: ledger entry {receipt['receipt']}")
