"""`faceledger gallery create|update|list`: galleries and their policy."""

from __future__ import annotations

from typing import Annotated

import typer

from .cli_common import JsonFlag, Rows, engine, me, out, print_json

gallery_app = typer.Typer(help="Create and list galleries.", no_args_is_help=True)

PurposeList = Annotated[list[str] | None, typer.Option(
    "--purpose", help="a purpose searches may state (repeat); none: any stated purpose")]
RetainDays = Annotated[int | None, typer.Option(help="keep enrolled records this many days")]
ProbeDays = Annotated[int | None, typer.Option(help="keep a probe's hash and embedding this many days [30]")]
KeepForReview = Annotated[bool, typer.Option(
    "--keep-probe-for-review/--no-keep-probe-for-review",
    help="keep a small crop of the probe's face until its candidates are reviewed (or the probe expires)")]
BlindReview = Annotated[bool, typer.Option(
    "--blind-review/--no-blind-review", help="reviewers decide before they see rank and score")]
FpirOpt = Annotated[float | None, typer.Option(
    help="target false-positive identification rate for open-set search [0.01]")]


@gallery_app.command("create")
def gallery_create(
    name: str,
    purpose: PurposeList = None,
    investigative: Annotated[bool, typer.Option(help="allow investigative (always top-k) searches")] = False,
    target_fpir: FpirOpt = None,
    retain_days: RetainDays = None,
    probe_retain_days: ProbeDays = None,
    keep_probe_images: Annotated[bool, typer.Option(help="keep probe images (default: only hash + embedding)")] = False,
    keep_probe_for_review: KeepForReview = True,
    blind_review: BlindReview = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a gallery (a named set of enrolled people) and its policy."""
    info = engine().create_gallery(name, purposes=purpose or (), allow_investigative=investigative,
                                   target_fpir=target_fpir, retain_days=retain_days,
                                   probe_retain_days=probe_retain_days, keep_probe_images=keep_probe_images,
                                   keep_probe_for_review=keep_probe_for_review, blind_review=blind_review, by=me())
    _print_gallery(info, "created", as_json)


@gallery_app.command("update")
def gallery_update(
    name: str,
    purpose: PurposeList = None,
    any_purpose: Annotated[bool, typer.Option(help="accept any stated purpose (clears the list)")] = False,
    investigative: Annotated[bool | None, typer.Option("--investigative/--no-investigative")] = None,
    target_fpir: FpirOpt = None,
    retain_days: RetainDays = None,
    probe_retain_days: ProbeDays = None,
    keep_probe_images: Annotated[bool | None, typer.Option("--keep-probe-images/--no-keep-probe-images")] = None,
    keep_probe_for_review: Annotated[bool | None, typer.Option(
        "--keep-probe-for-review/--no-keep-probe-for-review")] = None,
    blind_review: Annotated[bool | None, typer.Option("--blind-review/--no-blind-review")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a gallery's policy (admin). Every change is ledgered with the before and after."""
    purposes = [] if any_purpose else purpose
    info = engine().update_gallery(name, purposes=purposes, allow_investigative=investigative,
                                   target_fpir=target_fpir, retain_days=retain_days,
                                   probe_retain_days=probe_retain_days, keep_probe_images=keep_probe_images,
                                   keep_probe_for_review=keep_probe_for_review, blind_review=blind_review, by=me())
    _print_gallery(info, "updated", as_json)


def _print_gallery(info: dict, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    purposes = ", ".join(info["purposes"]) or "any stated purpose"
    out.print(f"{verb} gallery [bold]{info['name']}[/]: purposes: {purposes}; investigative search "
              f"{'allowed' if info['allow_investigative'] else 'not allowed'}; target FPIR {info['target_fpir']:g}; "
              f"records kept {info['retain_days'] or 'indefinitely'} days; probes kept {info['probe_retain_days']} days"
              f" ({'with' if info['keep_probe_images'] else 'without'} the image"
              f"{', a face crop until reviewed' if info['keep_probe_for_review'] and not info['keep_probe_images'] else ''})"
              f"; {'blind' if info['blind_review'] else 'open'} review")


@gallery_app.command("list")
def gallery_list(as_json: JsonFlag = False) -> None:
    """List galleries with their sizes and policy."""
    galleries = engine().list_galleries(by=me())
    if as_json:
        print_json(galleries)
        return
    table = Rows("gallery", "subjects", "images", "faces", "target FPIR", "retention (days)", "purposes",
                 "investigative", "model", optional=("images", "investigative", "model"))
    for g in galleries:
        table.add_row(g["name"], str(g["subjects"]), str(g["images"]), str(g["faces"]), f"{g['target_fpir']:g}",
                      str(g["retain_days"] or "-"), ", ".join(g["purposes"]) or "any",
                      "yes" if g["allow_investigative"] else "no", g["model_id"])
    out.print(table if galleries else "no galleries yet: faceledger gallery create NAME")
