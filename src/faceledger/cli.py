"""The `faceledger` command: a thin shell over the engine. Errors are one red line and exit code 2."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_calibration import calibration_app, gallery_duplicates
from .cli_common import (
    JsonFlag,
    Rows,
    engine,
    err,
    fmt_rate,
    imported_quietly,
    me,
    out,
    parse_date,
    pipeline,
    print_json,
    set_home,
    settings,
)
from .cli_common import run as run_app
from .cli_galleries import gallery_app
from .cli_governance import audit_app, erase, purge, report_app, user_app
from .cli_evidence import evidence_app
from .db_cli import db_app
from .errors import FaceledgerError
from .evaluate.cli import (
    evaluate_app,  # the commands only; evaluation code is imported when one runs
)
from .policy import DECISIONS
from .video_cli import video_app, watch

app = typer.Typer(help="Accountable face search and verification.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(gallery_app, name="gallery")
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.add_typer(report_app, name="report")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(db_app, name="db")
app.add_typer(calibration_app, name="calibration")
app.add_typer(evidence_app, name="evidence")
gallery_app.command("duplicates")(gallery_duplicates)
app.add_typer(video_app, name="video")
app.command()(watch)

PurposeOpt = Annotated[str | None, typer.Option("--purpose", help="why this search is made (required)")]
CaseOpt = Annotated[str | None, typer.Option("--case", help="case or ticket reference (required)")]


@app.callback()
def main_options(
    home: Annotated[Path | None, typer.Option("--home", envvar="FACELEDGER_HOME",
                                                 help="data directory [default: ./faceledger-data]")] = None,
) -> None:
    """faceledger: enrol galleries, search and verify faces, and keep a tamper-evident ledger of it all."""
    set_home(home)


# -- enrolment -------------------------------------------------------------------------------------

@app.command()
def enroll(
    paths: Annotated[list[Path], typer.Argument(help="image files or folders")],
    gallery: Annotated[str, typer.Option(help="gallery to enrol into")],
    source: Annotated[str | None, typer.Option(help="where the images come from (provenance)")] = None,
    legal_basis: Annotated[str | None, typer.Option(
        help="why you may hold them: consent, court order, public record, ...")] = None,
    subject: Annotated[str | None, typer.Option(help="the person in every image")] = None,
    subject_from_folder: Annotated[bool, typer.Option("--subject-from-folder", help="name each subject after the image's folder")] = False,
    retain_until: Annotated[str | None, typer.Option(help="delete on this date (YYYY-MM-DD)")] = None,
    workers: Annotated[int, typer.Option(help="processes for detection and embedding")] = 1,
    largest_face: Annotated[bool, typer.Option("--largest-face", help="in a photo with several faces, take the largest")] = False,
    allow_multiple: Annotated[bool, typer.Option("--allow-multiple",
        help="enrol every face of a group photo, each as its own subject (NAME, NAME-face2, ...)")] = False,
    failures_csv: Annotated[Path | None, typer.Option("--failures-csv", help="write failed files here")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol images with their provenance. Re-enrolling an image is a no-op, so a killed run resumes."""
    if largest_face and allow_multiple:
        raise FaceledgerError("choose one of --largest-face and --allow-multiple")
    on_multiple = "largest" if largest_face else "all" if allow_multiple else "refuse"
    kwargs = dict(gallery=gallery, subject=subject, subject_from_folder=subject_from_folder, source=source,
                  legal_basis=legal_basis, retain_until=parse_date(retain_until), on_multiple=on_multiple,
                  workers=workers, by=me())
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


def _progress_bar():
    """A rich progress bar on stderr (rich.progress is imported here: only long commands draw one)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Images per second."""

        def render(self, task) -> Text:
            unit = task.fields.get("unit", "img")
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "")

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

@app.command()
def search(
    image: Path,
    gallery: Annotated[list[str], typer.Option(help="gallery to search; repeat to search several as one")],
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    top_k: Annotated[int, typer.Option(help="at most this many candidates")] = 10,
    largest_face: Annotated[bool, typer.Option("--largest-face", help="probe with the largest face if there are several")] = False,
    face: Annotated[int | None, typer.Option(
        min=1, help="probe with face N of the photo (1 is the largest; `faceledger faces IMAGE` numbers them)")] = None,
    investigative: Annotated[bool, typer.Option("--investigative",
        help="return the top-k as leads even below the threshold (only where the gallery allows it)")] = False,
    authorisation: Annotated[str | None, typer.Option(help="warrant or authorisation id, if any")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search one or more galleries for the face in IMAGE. Answers "no match" when nobody clears the threshold."""
    if face is not None and largest_face:
        raise FaceledgerError("choose one of --face and --largest-face")
    on_multiple = f"index:{face}" if face is not None else "largest" if largest_face else "refuse"
    asked = {"gallery": gallery if len(gallery) > 1 else gallery[0], "purpose": purpose, "case": case, "top_k": top_k,
             "investigative": investigative, "authorisation": authorisation, "on_multiple": on_multiple}
    result = _direct_search(image, asked)
    if result is None:
        result = engine().search(image, **asked, by=me())
    if as_json:
        print_json(result.as_json())
        return
    out.print(f"searched [bold]{result.gallery}[/] ({result.gallery_size:,} faces) at threshold "
              f"{result.threshold:.3f} ({result.calibration_source} calibration"
              f"{f', extrapolated x{result.extrapolation_factor:g}' if result.threshold_extrapolated else ''}"
              f"{'' if result.threshold_supported else ', NOT SUPPORTED by the data'})")
    for refused in result.refused:
        out.print(f"[yellow]not searched[/]: {refused['gallery']}: {refused['reason']}")
    if result.mode == "investigative":
        out.print("[bold yellow]investigative search[/]: every row is a LEAD, NOT AN IDENTIFICATION; a reviewer "
                  "must record a decision (`faceledger review`) before anyone acts on it")
    if not result.candidates:
        out.print(f"[bold]no match[/]. {result.meaning}")
    else:
        table = Rows("rank", "subject", "score", "false-match rate", "chance of a non-mate this high",
                     "above threshold", "image", optional=("image",))
        for c in result.candidates:
            subject = f"{c.subject} ({c.gallery})" if c.gallery else c.subject
            table.add_row(str(c.rank), subject, f"{c.score:.3f}", fmt_rate(c.false_match_rate),
                          fmt_rate(c.gallery_false_positive_chance), "yes" if c.above_threshold else "no",
                          Path(c.image).name)
        out.print(table)
        if result.mode == "open-set":
            out.print(result.meaning)
    out.print(f"ledger entry {result.ledger_entry}")


def _direct_search(image: Path, asked: dict):
    """The search through direct_search.py (no SQLAlchemy), or None where it stands aside and the engine
    answers. FACELEDGER_DIRECT_SEARCH: `auto` (default), `off` (always the engine), `require` (direct or an
    error saying why not: tests, benchmarks, diagnosis)."""
    mode = settings().direct_search.strip().lower()
    if mode not in ("auto", "off", "require"):
        raise FaceledgerError(f"FACELEDGER_DIRECT_SEARCH must be auto, off or require, not {mode!r}")
    new_home = not settings().home.is_dir()
    if not new_home:
        pipeline()  # the models load on their own thread from here, whichever path answers
    if mode == "off":
        return None
    direct = imported_quietly("faceledger.direct_search")
    try:
        if new_home:
            raise direct.StandAside("a new data directory (the engine makes it, and says so)")
        return direct.search(settings(), pipeline(), image, token=os.environ.get("FACELEDGER_TOKEN"), **asked)
    except direct.StandAside as exc:
        if mode == "require":
            raise FaceledgerError(f"the direct search stood aside (FACELEDGER_DIRECT_SEARCH=require): {exc}") from None
        return None


@app.command()
def verify(
    image_a: Path,
    image_b: Path,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    authorisation: Annotated[str | None, typer.Option(help="warrant or authorisation id, if any")] = None,
    as_json: JsonFlag = False,
) -> None:
    """1:1 verification: is the face in IMAGE_A the same person as the face in IMAGE_B?"""
    if settings().home.is_dir():
        pipeline()  # the models load on their own thread while the engine opens
    result = engine().verify(image_a, image_b, purpose=purpose, case=case, authorisation=authorisation, by=me())
    if as_json:
        print_json(result.as_json())
        return
    verdict = "[green]same person[/]" if result.decision == "same" else "[yellow]different people[/]"
    out.print(f"{verdict}: score {result.score:.3f} (threshold {result.threshold:.3f}, set for a "
              f"{fmt_rate(result.target_fmr)} false-match rate); a different person scores this high "
              f"{fmt_rate(result.false_match_rate)} of the time")
    out.print(f"ledger entry {result.ledger_entry}")


@app.command()
def faces(image: Path, as_json: JsonFlag = False) -> None:
    """Show every face found in IMAGE and whether it is usable (and why not)."""
    loaded, found = engine().faces(image, by=me())
    if as_json:
        print_json({"image": loaded.name, "sha256": loaded.sha256, "width": loaded.width,
                    "height": loaded.height, "faces": [f.as_dict() for f in found]})
        return
    out.print(f"{loaded.name}: {loaded.width}x{loaded.height} {loaded.format}, {len(found)} face(s)")
    table = Rows("#", "box (x0, y0, x1, y1)", "score", "size", "sharpness", "yaw", "usable")
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
    gallery: Annotated[str | None, typer.Option(help="only this gallery")] = None,
    index: Annotated[str | None, typer.Option(
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

            rows = engine().reindex(gallery, index=index, progress=report, by=me())
    else:
        rows = engine().reindex(gallery, index=index, by=me())
    for row in rows:
        out.print(f"rebuilt {row['gallery']}: {row['faces']} faces ({row['index']} -> {row['kind']})")


@app.command()
def migrate(
    to_db: Annotated[str, typer.Option("--to-db", help="SQLAlchemy URL of the new, empty database "
                                       "(e.g. postgresql+psycopg://user:pw@host/db)")],
    to_index: Annotated[str | None, typer.Option(
        "--to-index", help="index for the new store: auto, a FAISS string, milvus://HOST:PORT or "
                           "milvus-lite:///path.db [default: FACELEDGER_INDEX]")] = None,
    to_home: Annotated[Path | None, typer.Option(
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

            summary = run_migration(engine(), to_db=to_db, to_index=to_index, to_home=to_home, progress=report,
                                    by=me())
    else:
        summary = run_migration(engine(), to_db=to_db, to_index=to_index, to_home=to_home, by=me())
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
    values = engine().stats(by=me())
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        out.print(f"{key:>15}: {value}")


# -- review -----------------------------------------------------------------------------------------

@app.command()
def review(
    entry: Annotated[str, typer.Argument(help="the search's ledger entry id")],
    decision: Annotated[str, typer.Option(help=" | ".join(DECISIONS))],
    candidate: Annotated[int | None, typer.Option(help="candidate rank (1 = best)")] = None,
    key: Annotated[str | None, typer.Option(help="the candidate's key (blind review shows no rank)")] = None,
    note: Annotated[str | None, typer.Option(help="why")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a reviewer's decision on a search candidate (reviewer role; never your own search)."""
    result = engine().review(entry, candidate=candidate, key=key, decision=decision, note=note, by=me())
    if as_json:
        print_json(result)
        return
    out.print(f"recorded: candidate {result['candidate'] or result['key']} ({result['subject']}) of search {entry}: "
              f"{decision}; ledger entry {result['ledger_entry']}")


@app.command()
def result(entry: Annotated[str, typer.Argument(help="the search's ledger entry id")], as_json: JsonFlag = False) -> None:
    """Show a search's candidates with every reviewer decision and the resulting status."""
    rows = engine().review_status(entry, by=me())
    if as_json:
        print_json(rows)
        return
    table = Rows("rank", "subject", "score", "false-match rate", "label", "status", "reviews", optional=("label",))
    for c in rows:
        reviews = "; ".join(f"{r['reviewer']}: {r['decision']}" for r in c["reviews"]) or "-"
        if "score" not in c:  # blind review: rank and score come after your decision on every candidate
            table.add_row(f"key {c['key']}", c["subject"], "hidden", "hidden", c.get("label", ""), "-", reviews)
            continue
        table.add_row(str(c["rank"]), c["subject"], f"{c['score']:.3f}", fmt_rate(c["false_match_rate"]),
                      c.get("label", ""), c["status"], reviews)
    out.print(table if rows else "this search returned no candidates")


app.command()(purge)  # defined in cli_governance.py, listed here in --help
app.command()(erase)


@app.command()
def calibrate(
    dataset: Annotated[Path, typer.Option(help="folder with one sub-folder of images per identity")],
    workers: Annotated[int, typer.Option(help="processes for detection and embedding")] = 2,
    max_identities: Annotated[int | None, typer.Option(help="use at most this many identities")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fit the active model's false-match calibration on your own data (one image per identity)."""
    summary = engine().calibrate(dataset, workers=workers, max_identities=max_identities, by=me())
    if as_json:
        print_json(summary)
        return
    out.print(f"calibration {summary['calibration_id']}: {summary['identities']} identities "
              f"({summary['failed']} without a usable face), {summary['impostor_pairs']:,} impostor pairs")
    for fmr, threshold in summary["thresholds"].items():
        out.print(f"  FMR {fmr}: threshold {threshold:.3f}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (keep 127.0.0.1 behind a TLS proxy)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run the HTTP API (/api/v1, /docs) and the web app (/) on this data directory."""
    import uvicorn

    from .api import create_app

    current = settings()
    err.print(f"faceledger serving {current.home.resolve()} on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(create_app(current), host=host, port=port, log_level="info", access_log=False)


def main() -> None:
    """The `faceledger` console script."""
    run_app(app)


if __name__ == "__main__":
    main()
