"""`faceledger video ...` and `faceledger watch`: thin shells over the engine's video services."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

video_app = typer.Typer(help="Search recorded video, redact faces, and allow galleries for live use.",
                        no_args_is_help=True)

EveryMs = Annotated[float, typer.Option("--every-ms", help="detect on one frame per this many milliseconds")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def _shell():
    """The CLI's shared state: one engine per process, the acting user, the consoles."""
    from . import cli_common

    return cli_common


def _fmt_t(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


@video_app.command("search")
def video_search(
    video: Path,
    gallery: Annotated[str, typer.Option(help="gallery to search")],
    purpose: Annotated[str | None, typer.Option(help="why this search is made (required)")] = None,
    case: Annotated[str | None, typer.Option(help="case or ticket reference (required)")] = None,
    every_ms: EveryMs = 200,
    top_k: Annotated[int, typer.Option(help="at most this many candidates per track")] = 5,
    investigative: Annotated[bool, typer.Option(
        help="return each track's top-k as leads (only where the gallery allows it)")] = False,
    authorisation: Annotated[str | None, typer.Option(help="warrant or authorisation id, if any")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search a recorded VIDEO: every face is followed as a track and each track is searched once."""
    cli = _shell()
    result = cli.engine().video_search(video, gallery=gallery, purpose=purpose, case=case, every_ms=every_ms,
                                       top_k=top_k, investigative=investigative, authorisation=authorisation,
                                       by=cli.me())
    if as_json:
        cli.print_json(result.as_json())
        return
    out = cli.out
    info = result.video
    out.print(f"{info['name']}: {info['duration_s']} s, {info['width']}×{info['height']}, {result.frames_sampled} "
              f"frames sampled every {result.every_ms:g} ms; {len(result.tracks)} face track(s), "
              f"{result.searches} search(es) of [bold]{result.gallery}[/] ({result.gallery_size} faces) at "
              f"threshold {result.threshold:.3f}")
    hits = [t for t in result.tracks if t.status == "candidates"]
    if not hits:
        out.print("[bold]no match[/]: no track is similar enough to anyone in the gallery. This is a normal answer.")
    else:
        table = cli.Rows("track", "from", "to", "frames", "subject", "score", "false-match rate")
        for track in hits:
            for c in track.candidates:
                table.add_row(str(track.track), _fmt_t(track.first_s), _fmt_t(track.last_s), str(track.frames),
                              c.subject, f"{c.score:.3f}", cli.fmt_rate(c.false_match_rate))
        out.print(table)
        out.print("candidates are not identifications: a reviewer must confirm one before anyone acts on it")
    out.print(f"bystanders: {result.bystanders['tracks']} track(s), kept as {result.bystanders['kept']}")
    out.print(f"ledger entry {result.ledger_entry}")


@video_app.command("tracks")
def video_tracks(video: Path, every_ms: EveryMs = 200, as_json: JsonFlag = False) -> None:
    """List the face tracks of VIDEO (numbers, times) to choose what `video redact` keeps. Searches nothing."""
    cli = _shell()
    rows = cli.engine().video_tracks(video, every_ms=every_ms, by=cli.me())
    if as_json:
        cli.print_json(rows)
        return
    table = cli.Rows("track", "from", "to", "frames")
    for row in rows:
        table.add_row(str(row["track"]), _fmt_t(row["first_s"]), _fmt_t(row["last_s"]), str(row["frames"]))
    cli.out.print(table)


@video_app.command("redact")
def video_redact(
    video: Path,
    out_path: Annotated[Path, typer.Option("--out", help="the redacted copy to write (.mp4, .mkv, .mov, .webm, .avi)")],
    keep_track: Annotated[list[int] | None, typer.Option(
        "--keep-track", help="a track left visible (repeat); numbered as `video search` numbers them")] = None,
    every_ms: EveryMs = 200,
    purpose: Annotated[str | None, typer.Option(help="why the copy is made (ledgered)")] = None,
    case: Annotated[str | None, typer.Option(help="case or request reference (ledgered)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a copy of VIDEO with every face blurred on every frame, except the tracks kept."""
    cli = _shell()
    summary = cli.engine().video_redact(video, out=out_path, keep_tracks=tuple(keep_track or ()),
                                        every_ms=every_ms, purpose=purpose, case=case, by=cli.me())
    if as_json:
        cli.print_json(summary)
        return
    cli.out.print(f"wrote {out_path}: {summary['frames_written']} frames, {summary['blurred_tracks']} track(s) "
                  f"blurred, kept {summary['kept_tracks'] or 'none'}; ledger entry {summary['ledger_entry']}")


@video_app.command("allow-live")
def video_allow_live(
    gallery: str,
    revoke: Annotated[bool, typer.Option(help="stop allowing live use")] = False,
) -> None:
    """Allow live watching (`faceledger watch`) against GALLERY (admin; ledgered)."""
    cli = _shell()
    result = cli.engine().allow_live(gallery, allowed=not revoke, by=cli.me())
    verb = "allowed" if result["allow_live"] else "no longer allowed"
    was = "" if result["before"] != result["allow_live"] else " (unchanged)"
    cli.out.print(f"gallery {gallery!r} is {verb} for live use{was} (its allow_live column); ledger entry "
                  f"{result['ledger_entry']}")


@video_app.command("retry-alerts")
def video_retry_alerts() -> None:
    """Post the watch alerts still waiting in the spool (their webhook was down)."""
    cli = _shell()
    result = cli.engine().retry_alerts(by=cli.me())
    cli.out.print(f"delivered {result['delivered']}, still pending {result['pending']}")


def watch(
    source: Annotated[str, typer.Argument(help="a stream URL, a camera (0 or /dev/video0), or a video file")],
    gallery: Annotated[str, typer.Option(help="gallery to search (allowed for live use)")],
    authorisation: Annotated[str | None, typer.Option(help="warrant or authorisation id (required)")] = None,
    purpose: Annotated[str | None, typer.Option(help="why this watch is made (required)")] = None,
    case: Annotated[str | None, typer.Option(help="case or ticket reference (required)")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST each alert here as JSON (spooled when down)")] = None,
    every_ms: EveryMs = 200,
    max_seconds: Annotated[float | None, typer.Option(help="stop after this many seconds of video")] = None,
) -> None:
    """Watch a live SOURCE: faces are searched as their tracks form; a match raises an alert. Ctrl-C stops."""
    cli = _shell()
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())

    def show(alert: dict) -> None:
        best = alert["candidates"][0]
        cli.out.print(f"[bold red]ALERT[/] track {alert['track']} at {_fmt_t(alert['first_s'])}: "
                      f"{best['subject']} (score {best['score']:.3f}) — a candidate, not an identification; "
                      f"ledger entry {alert['ledger_entry']}")

    try:
        summary = cli.engine().watch(source, gallery=gallery, purpose=purpose, case=case,
                                     authorisation=authorisation, webhook=webhook, every_ms=every_ms,
                                     max_seconds=max_seconds, stop=stop, on_alert=show, by=cli.me())
    finally:
        signal.signal(signal.SIGINT, previous)
    cli.out.print(f"watch {summary['reason']}: {summary['frames']} frames, {summary['tracks']} tracks, "
                  f"{summary['alerts']} alert(s), {summary['alerts_pending_delivery']} awaiting delivery")
