"""The `faceledger` command: a thin shell over the engine. Errors are one red line and exit code 2."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .config import Settings
from .engine import Engine
from .errors import FaceledgerError

app = typer.Typer(help="Accountable face search and verification.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
gallery_app = typer.Typer(help="Create and list galleries.", no_args_is_help=True)
audit_app = typer.Typer(help="Check and read the ledger.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")
app.add_typer(audit_app, name="audit")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state: dict = {}

JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
PurposeOpt = Annotated[Optional[str], typer.Option("--purpose", help="why this search is made (required)")]
CaseOpt = Annotated[Optional[str], typer.Option("--case", help="case or ticket reference (required)")]


@app.callback()
def main_options(
    home: Annotated[Optional[Path], typer.Option("--home", envvar="FACELEDGER_HOME",
                                                 help="data directory [default: ./faceledger-data]")] = None,
) -> None:
    """faceledger: enrol galleries, search and verify faces, and keep a tamper-evident ledger of it all."""
    _state["settings"] = Settings(home=home) if home else Settings()


def engine() -> Engine:
    if "engine" not in _state:
        _state["engine"] = Engine(_state.get("settings") or Settings())
    return _state["engine"]


def print_json(value) -> None:
    out.print_json(json.dumps(value, default=str))


# -- galleries -------------------------------------------------------------------------------------

@gallery_app.command("create")
def gallery_create(
    name: str,
    retain_days: Annotated[Optional[int], typer.Option(help="keep enrolled records this many days")] = None,
    target_fpir: Annotated[Optional[float], typer.Option(
        help="target false-positive identification rate for open-set search [default: 0.01]")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a gallery (a named set of enrolled people)."""
    info = engine().create_gallery(name, retain_days=retain_days, target_fpir=target_fpir)
    if as_json:
        print_json(info)
    else:
        out.print(f"created gallery [bold]{info['name']}[/] (target FPIR {info['target_fpir']:g}, "
                  f"retention {info['retain_days'] or 'unlimited'} days)")


@gallery_app.command("list")
def gallery_list(as_json: JsonFlag = False) -> None:
    """List galleries with their sizes and policy."""
    galleries = engine().list_galleries()
    if as_json:
        print_json(galleries)
        return
    table = Table("gallery", "subjects", "images", "faces", "target FPIR", "retention (days)", "model")
    for g in galleries:
        table.add_row(g["name"], str(g["subjects"]), str(g["images"]), str(g["faces"]), f"{g['target_fpir']:g}",
                      str(g["retain_days"] or "-"), g["model_id"])
    out.print(table if galleries else "no galleries yet: faceledger gallery create NAME")


# -- enrolment -------------------------------------------------------------------------------------

def _parse_date(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FaceledgerError(f"--retain-until {value!r} is not a date (use YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@app.command()
def enroll(
    paths: Annotated[list[Path], typer.Argument(help="image files or folders")],
    gallery: Annotated[str, typer.Option(help="gallery to enrol into")],
    source: Annotated[Optional[str], typer.Option(help="where the images come from (provenance)")] = None,
    legal_basis: Annotated[Optional[str], typer.Option(
        help="why you may hold them: consent, court order, public record, ...")] = None,
    subject: Annotated[Optional[str], typer.Option(help="the person in every image")] = None,
    subject_from_folder: Annotated[bool, typer.Option(help="name each subject after the image's folder")] = False,
    retain_until: Annotated[Optional[str], typer.Option(help="delete on this date (YYYY-MM-DD)")] = None,
    workers: Annotated[int, typer.Option(help="processes for detection and embedding")] = 1,
    largest_face: Annotated[bool, typer.Option(help="in a photo with several faces, take the largest")] = False,
    allow_multiple: Annotated[bool, typer.Option(
        help="enrol every face of a group photo, each as its own subject (NAME, NAME-face2, ...)")] = False,
    failures_csv: Annotated[Optional[Path], typer.Option("--failures-csv", help="write failed files here")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol images with their provenance. Re-enrolling an image is a no-op, so a killed run resumes."""
    if largest_face and allow_multiple:
        raise FaceledgerError("choose one of --largest-face and --allow-multiple")
    on_multiple = "largest" if largest_face else "all" if allow_multiple else "refuse"
    kwargs = dict(gallery=gallery, subject=subject, subject_from_folder=subject_from_folder, source=source,
                  legal_basis=legal_basis, retain_until=_parse_date(retain_until), on_multiple=on_multiple,
                  workers=workers)
    if as_json or not sys.stderr.isatty():
        report = engine().enroll(paths, **kwargs)
    else:
        with _progress_bar() as bar:
            task = bar.add_task("enrolling", total=None)
            started: list[bool] = []

            def report_progress(done: int, total: int) -> None:
                if not started:  # files skipped as already enrolled must not count towards the rate and ETA
                    started.append(True)
                    bar.reset(task, total=total, completed=done)
                else:
                    bar.update(task, completed=done, total=total)

            report = engine().enroll(paths, progress=report_progress, **kwargs)
    if failures_csv:
        _write_failures(failures_csv, report.failures)
    _print_enroll_report(report, as_json)
    if report.failures:
        raise typer.Exit(2)


class RateColumn(ProgressColumn):
    """Images per second."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "img")
        return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "")


def _progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err)


def _write_failures(path: Path, failures) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "error"])
        writer.writerows([f.path, f.error] for f in failures)


def _print_enroll_report(report, as_json: bool) -> None:
    summary = report.as_json()
    if as_json:
        print_json(summary)
        return
    out.print(f"gallery [bold]{report.gallery}[/]: {summary['enrolled']} image(s) enrolled "
              f"({summary['faces_added']} face(s)), {summary['duplicates']} already enrolled, "
              f"{summary['failed']} failed")
    for failure in report.failures:
        err.print(f"[red]  failed:[/] {failure.error}")


# -- search and verify -----------------------------------------------------------------------------

def _fmt_rate(rate: float) -> str:
    return f"{rate:.1e}" if rate < 0.001 else f"{rate:.2%}"


@app.command()
def search(
    image: Path,
    gallery: Annotated[str, typer.Option(help="gallery to search")],
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    top_k: Annotated[int, typer.Option(help="at most this many candidates")] = 10,
    largest_face: Annotated[bool, typer.Option(help="probe with the largest face if there are several")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Search a gallery for the face in IMAGE. Answers "no match" when nobody clears the threshold."""
    result = engine().search(image, gallery=gallery, purpose=purpose, case=case, top_k=top_k,
                             on_multiple="largest" if largest_face else "refuse")
    if as_json:
        print_json(result.as_json())
        return
    out.print(f"searched [bold]{result.gallery}[/] ({result.gallery_size} faces) at threshold "
              f"{result.threshold:.3f}, which holds a {result.target_fpir:.1%} chance of any false candidate "
              f"for a person who is not enrolled")
    if not result.candidates:
        out.print("[bold]no match[/]: nobody in the gallery is similar enough. This is a normal answer.")
    else:
        table = Table("rank", "subject", "score", "false-match rate", "chance of a non-mate this high", "image")
        for c in result.candidates:
            table.add_row(str(c.rank), c.subject, f"{c.score:.3f}", _fmt_rate(c.false_match_rate),
                          _fmt_rate(c.gallery_false_positive_chance), Path(c.image).name)
        out.print(table)
    out.print(f"ledger entry {result.ledger_entry}")


@app.command()
def verify(
    image_a: Path,
    image_b: Path,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """1:1 verification: is the face in IMAGE_A the same person as the face in IMAGE_B?"""
    result = engine().verify(image_a, image_b, purpose=purpose, case=case)
    if as_json:
        print_json(result.as_json())
        return
    verdict = "[green]same person[/]" if result.decision == "same" else "[yellow]different people[/]"
    out.print(f"{verdict}: score {result.score:.3f} (threshold {result.threshold:.3f}, set for a "
              f"{_fmt_rate(result.target_fmr)} false-match rate); a different person scores this high "
              f"{_fmt_rate(result.false_match_rate)} of the time")
    out.print(f"ledger entry {result.ledger_entry}")


@app.command()
def faces(image: Path, as_json: JsonFlag = False) -> None:
    """Show every face found in IMAGE and whether it is usable (and why not)."""
    loaded, found = engine().faces(image)
    if as_json:
        print_json({"image": loaded.name, "sha256": loaded.sha256, "width": loaded.width,
                    "height": loaded.height, "faces": [f.as_dict() for f in found]})
        return
    out.print(f"{loaded.name}: {loaded.width}x{loaded.height} {loaded.format}, {len(found)} face(s)")
    table = Table("#", "box (x0, y0, x1, y1)", "score", "size", "sharpness", "yaw", "usable")
    for i, face in enumerate(found, start=1):
        q = face.quality
        table.add_row(str(i), ", ".join(f"{v:.0f}" for v in face.box), f"{face.detection.score:.2f}",
                      f"{q.face_size:.0f}", f"{q.sharpness:.0f}", f"{q.yaw:.0f}",
                      "yes" if q.usable else "no: " + "; ".join(q.reasons))
    if found:
        out.print(table)


# -- maintenance and audit -------------------------------------------------------------------------

@app.command()
def reindex(
    gallery: Annotated[Optional[str], typer.Option(help="only this gallery")] = None,
    index: Annotated[Optional[str], typer.Option(
        "--index", help="index to build: auto, a FAISS factory string (e.g. 'PQ32x4fs;rerank=100'), "
                        "milvus://HOST:PORT or milvus-lite:///path.db [default: FACELEDGER_INDEX]")] = None,
) -> None:
    """Rebuild the vector index from the store (the store is the source of truth), with a progress bar."""
    if sys.stderr.isatty():
        with _progress_bar() as bar:
            tasks: dict[str, int] = {}

            def report(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"indexing {name}", total=total, unit="faces")
                bar.update(tasks[name], completed=done, total=total)

            rows = engine().reindex(gallery, index=index, progress=report)
    else:
        rows = engine().reindex(gallery, index=index)
    for row in rows:
        out.print(f"rebuilt {row['gallery']}: {row['faces']} faces ({row['index']} -> {row['kind']})")


@app.command()
def migrate(
    to_db: Annotated[str, typer.Option("--to-db", help="SQLAlchemy URL of the new, empty database "
                                       "(e.g. postgresql+psycopg://user:pw@host/db)")],
    to_index: Annotated[Optional[str], typer.Option(
        "--to-index", help="index for the new store: auto, a FAISS string, milvus://HOST:PORT or "
                           "milvus-lite:///path.db [default: FACELEDGER_INDEX]")] = None,
    to_home: Annotated[Optional[Path], typer.Option(
        "--to-home", help="data directory for the new setup (index files, ledger head) [default: --home]")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy every gallery, embedding, provenance record and the ledger to another database and index, without
    re-embedding; both ledgers record the move. Then point FACELEDGER_DB / FACELEDGER_INDEX at the new ones."""
    from .migrate import migrate as run_migration

    if sys.stderr.isatty() and not as_json:
        with _progress_bar() as bar:
            tasks: dict[str, int] = {}

            def report(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total, unit="rows")
                bar.update(tasks[name], completed=done, total=total)

            summary = run_migration(engine(), to_db=to_db, to_index=to_index, to_home=to_home, progress=report)
    else:
        summary = run_migration(engine(), to_db=to_db, to_index=to_index, to_home=to_home)
    if as_json:
        print_json(summary)
        return
    counts = summary["counts"]
    out.print(f"migrated to {summary['to_db']} ({summary['to_index']}): {counts.get('galleries', 0)} galleries, "
              f"{counts.get('faces', 0)} faces, {counts.get('ledger', 0)} ledger entries copied, nothing re-embedded; "
              f"ledger intact ({summary['ledger_entries']} entries)")
    out.print(f"now use: FACELEDGER_DB='{summary['to_db']}' FACELEDGER_INDEX='{summary['to_index']}' "
              "(the password is not shown)")


@app.command()
def stats(as_json: JsonFlag = False) -> None:
    """Counts of galleries, subjects, images, faces and ledger entries."""
    values = engine().stats()
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        out.print(f"{key:>15}: {value}")


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check the ledger's hash chain; exit code 2 when any entry was edited, removed or reordered."""
    check = engine().audit_verify()
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


def main() -> None:
    try:
        app()
    except FaceledgerError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    finally:
        opened = _state.pop("engine", None)
        _state.clear()
        if opened is not None:
            opened.close()


if __name__ == "__main__":
    main()
