"""`faceledger calibration show` and `faceledger gallery duplicates`: what a gallery's open-set threshold
rests on, and the cross-subject pairs that score like one person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_common import JsonFlag, Rows, engine, fmt_rate, me, out, print_json

calibration_app = typer.Typer(help="What a gallery's open-set threshold rests on.", no_args_is_help=True)


@calibration_app.command("show")
def calibration_show(
    gallery: Annotated[str, typer.Option(help="the gallery")],
    as_json: JsonFlag = False,
    html: Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML page with the "
                                                            "calibration plot to this file")] = None,
) -> None:
    """Which samples set the gallery's threshold (packaged, the gallery's own, combined), how many pairs,
    the fitted tail, how far each figure is extrapolated, and the thresholds at the gallery's size."""
    info = engine().calibration_info(gallery, by=me())
    if html is not None:
        from .report_charts import survival_points
        from .reporting import calibration_html

        html.write_text(calibration_html(gallery, info, {"packaged": survival_points(engine().calibration.fmr)}))
    if as_json:
        print_json(info)
        return
    out.print(f"gallery [bold]{gallery}[/]: {info['gallery_faces']:,} faces, calibration "
              f"[bold]{info['source']}[/] ({info['calibration_id']})")
    if info.get("gallery_note"):
        out.print(f"  gallery sample not used: {info['gallery_note']}")
    for name in ("packaged", "gallery"):
        part = info.get(name)
        if isinstance(part, dict):  # "gallery" is also the gallery's name when its own sample is not in use
            tail = part.get("tail") or {}
            out.print(f"  {name} sample: {part['pairs']:,} impostor pairs; the data show FMR down to "
                      f"{part['floor']:.2g}" + (f"; tail: {tail}" if tail else ""))
    sample = info.get("gallery_sample")
    if sample:
        kind = "all pairs" if sample["exhaustive"] else "a random sample of pairs"
        out.print(f"  gallery's own sample: {sample['subjects']:,} subjects, {sample['faces']:,} faces, "
                  f"{sample['pairs']:,} cross-subject pairs ({kind}); probable duplicates left out: "
                  f"{sample['duplicates_excluded']}, kept: {sample['duplicates_kept']}")
    shift = info.get("gallery_shift")
    if shift and shift["applied"]:
        out.print(f"  combined by the gallery's excess: at FMR {shift['reference_fmr']:.2g} ({shift['reference_pairs']} "
                  f"of its pairs) it reaches {shift['gallery_score']:.4f} (95 % upper) against the packaged "
                  f"{shift['packaged_score']:.4f}: packaged thresholds raised by {shift['shift']:.4f}")
    elif shift:
        out.print("  the gallery's tail is heavier than the packaged one's shape: its own tail bound sets the threshold")
    from rich.table import Table

    table = Table("target FPIR", "threshold", "predicted FPIR", "set by", "extrapolated", "supported")
    for row in info["thresholds"]:
        table.add_row(f"{row['target_fpir']:g}", f"{row['threshold']:.4f}", fmt_rate(row["predicted_fpir"] or 0),
                      row["binding"], f"x{row['extrapolation_factor']:g}" if row["extrapolated"] else "no",
                      "yes" if row["supported"] else "NO")
    out.print(table)
    own = [r for r in info["thresholds"] if r["target_fpir"] == info["gallery_target_fpir"]]
    if own:
        out.print(own[0]["explanation"])


def gallery_duplicates(
    gallery: Annotated[str, typer.Argument(help="the gallery")],
    against: Annotated[str | None, typer.Option(help="compare with this gallery instead (e.g. a watch list "
                                                        "against a visa gallery)")] = None,
    min_score: Annotated[float | None, typer.Option(help="report pairs at or above this score (default: the "
                                                            "strict erasure threshold)")] = None,
    limit: Annotated[int, typer.Option(help="at most this many pairs")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """Pairs of different subjects whose faces score like the same person: one person enrolled twice under
    two names, twins, a mislabelled photo. Ledgered."""
    found = engine().gallery_duplicates(gallery, against=against, min_score=min_score, limit=limit, by=me())
    if as_json:
        print_json(found)
        return
    if not found["pairs"]:
        out.print(f"no cross-subject pair scores at or above {found['min_score']:.3f}")
        return
    table = Rows("subject", "face", "subject", "face", "score", "false-match rate")
    for p in found["pairs"]:
        table.add_row(f"{p['subject_a']} ({p['gallery_a']})", str(p["face_a"]),
                      f"{p['subject_b']} ({p['gallery_b']})", str(p["face_b"]), f"{p['score']:.3f}",
                      fmt_rate(p["false_match_rate"]))
    out.print(table)
    out.print(f"{len(found['pairs'])} pair(s) at or above {found['min_score']:.3f}: check each; the same person "
              "under two names breaks the gallery's calibration and its answers")
