"""`faceledger gallery create|update|list`: galleries and their policy."""

from __future__ import annotations

from typing import Annotated

import typer

from .cli_common import JsonFlag, Rows, engine, me, out, print_json, switch

gallery_app = typer.Typer(help="Create and list galleries.", no_args_is_help=True)

PurposeList = Annotated[list[str] | None, typer.Option(
    "--purpose", help="a purpose searches may state (repeat); none: any stated purpose")]
RetainDays = Annotated[int | None, typer.Option(help="keep enrolled records this many days")]
ProbeDays = Annotated[int | None, typer.Option(help="keep a probe's hash and embedding this many days [30]")]
FpirOpt = Annotated[float | None, typer.Option(
    help="target false-positive identification rate for open-set search [0.01]")]

# The policy switches: each `--x` and its `--no-x` are two plain options (cli_common.switch), so that
# --help lists them on rows of their own and every name fits 80 columns.
INVESTIGATIVE = "allow investigative (always top-k) searches"
KEEP_IMAGES, NO_KEEP_IMAGES = "keep probe images", "keep only a probe's hash + embedding"
KEEP_FOR_REVIEW = "keep a small crop of the probe's face until its candidates are reviewed or the probe expires"
NO_KEEP_FOR_REVIEW = "keep no such crop"
BLIND, NOT_BLIND = "reviewers decide before they see rank and score", "reviewers see rank and score"


def flag(name: str, help: str):
    """A plain switch: `name` sets it, nothing else."""
    return typer.Option(name, help=help)


@gallery_app.command("create")
def gallery_create(
    name: str,
    purpose: PurposeList = None,
    investigative: Annotated[bool, flag("--investigative", INVESTIGATIVE)] = False,
    no_investigative: Annotated[bool, flag("--no-investigative", "do not allow them (the default)")] = False,
    target_fpir: FpirOpt = None,
    retain_days: RetainDays = None,
    probe_retain_days: ProbeDays = None,
    keep_probe_images: Annotated[bool, flag("--keep-probe-images", KEEP_IMAGES)] = False,
    no_keep_probe_images: Annotated[bool, flag("--no-keep-probe-images", f"{NO_KEEP_IMAGES} (the default)")] = False,
    keep_probe_for_review: Annotated[bool, flag("--keep-probe-for-review", f"{KEEP_FOR_REVIEW} (the default)")] = False,
    no_keep_probe_for_review: Annotated[bool, flag("--no-keep-probe-for-review", NO_KEEP_FOR_REVIEW)] = False,
    blind_review: Annotated[bool, flag("--blind-review", BLIND)] = False,
    no_blind_review: Annotated[bool, flag("--no-blind-review", f"{NOT_BLIND} (the default)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a gallery (a named set of enrolled people) and its policy."""
    policy = dict(  # before the engine opens: contradictory switches are a usage error that creates nothing
        allow_investigative=switch(investigative, no_investigative, "--investigative", default=False),
        keep_probe_images=switch(keep_probe_images, no_keep_probe_images, "--keep-probe-images", default=False),
        keep_probe_for_review=switch(keep_probe_for_review, no_keep_probe_for_review, "--keep-probe-for-review",
                                     default=True),
        blind_review=switch(blind_review, no_blind_review, "--blind-review", default=False))
    info = engine().create_gallery(name, purposes=purpose or (), target_fpir=target_fpir, retain_days=retain_days,
                                   probe_retain_days=probe_retain_days, **policy, by=me())
    _print_gallery(info, "created", as_json)


@gallery_app.command("update")
def gallery_update(
    name: str,
    purpose: PurposeList = None,
    any_purpose: Annotated[bool, flag("--any-purpose", "accept any stated purpose (clears the list)")] = False,
    no_any_purpose: Annotated[bool, flag("--no-any-purpose", "do not clear the list (the default)")] = False,
    investigative: Annotated[bool, flag("--investigative", INVESTIGATIVE)] = False,
    no_investigative: Annotated[bool, flag("--no-investigative", "stop allowing them")] = False,
    target_fpir: FpirOpt = None,
    retain_days: RetainDays = None,
    probe_retain_days: ProbeDays = None,
    keep_probe_images: Annotated[bool, flag("--keep-probe-images", KEEP_IMAGES)] = False,
    no_keep_probe_images: Annotated[bool, flag("--no-keep-probe-images", NO_KEEP_IMAGES)] = False,
    keep_probe_for_review: Annotated[bool, flag("--keep-probe-for-review", KEEP_FOR_REVIEW)] = False,
    no_keep_probe_for_review: Annotated[bool, flag("--no-keep-probe-for-review", NO_KEEP_FOR_REVIEW)] = False,
    blind_review: Annotated[bool, flag("--blind-review", BLIND)] = False,
    no_blind_review: Annotated[bool, flag("--no-blind-review", NOT_BLIND)] = False,
    as_json: JsonFlag = False,
) -> None:
    """Change a gallery's policy (admin): only what is given changes. Every change is ledgered with the
    before and after."""
    policy = dict(  # before the engine opens, as in create
        purposes=[] if switch(any_purpose, no_any_purpose, "--any-purpose") else purpose,
        allow_investigative=switch(investigative, no_investigative, "--investigative"),
        keep_probe_images=switch(keep_probe_images, no_keep_probe_images, "--keep-probe-images"),
        keep_probe_for_review=switch(keep_probe_for_review, no_keep_probe_for_review, "--keep-probe-for-review"),
        blind_review=switch(blind_review, no_blind_review, "--blind-review"))
    info = engine().update_gallery(name, target_fpir=target_fpir, retain_days=retain_days,
                                   probe_retain_days=probe_retain_days, **policy, by=me())
    _print_gallery(info, "updated", as_json)


def _print_gallery(info: dict, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    purposes = ", ".join(info["purposes"]) or "any stated purpose"
    kept = f"{info['retain_days']} days" if info["retain_days"] else "indefinitely"
    out.print(f"{verb} gallery [bold]{info['name']}[/]: purposes: {purposes}; investigative search "
              f"{'allowed' if info['allow_investigative'] else 'not allowed'}; target FPIR {info['target_fpir']:g}; "
              f"records kept {kept}; probes kept {info['probe_retain_days']} days"
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
