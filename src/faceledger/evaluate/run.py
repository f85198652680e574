"""What `faceledger evaluate ...` runs: accuracy evaluation written to metrics.json + report.html.

The commands (options, help) are in evaluate/cli.py, which imports this module only when one runs."""

from __future__ import annotations

import html
import math
import platform
import sys
import time
from pathlib import Path

from rich.console import Console

from ..calibration import packaged_calibration
from ..config import Settings
from ..errors import FaceledgerError
from . import groups as groups_mod
from . import protocols, report
from .datasets import (
    EmbeddingSet,
    FolderDataset,
    SyntheticDataset,
    check_pairs_exist,
    embed_folder,
    identity_of,
    model_id_for,
    parse_pairs,
)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _load(spec: str, *, settings: Settings, cache: Path | None, workers: int, seed: int,
          paths_for=None) -> tuple[EmbeddingSet, dict, dict[str, list[str]] | None, object]:
    """(embeddings, cache info, identities of a folder dataset or None, dataset object)."""
    if spec.strip().startswith("synthetic"):
        dataset = SyntheticDataset.from_spec(spec, seed=seed)
        e = dataset.embeddings(model_id_for(settings))
        return e, {"file": None, "from_cache": 0, "embedded": 0, "embed_seconds": 0.0}, None, dataset
    dataset = FolderDataset(spec)
    paths = paths_for(dataset) if paths_for else None
    cache_dir = cache or settings.home / "eval-cache"
    todo_note: dict = {}

    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress("embedding", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("embedding", total=None)
            e, info = embed_folder(dataset, settings, cache_dir=cache_dir, paths=paths, workers=workers,
                                   progress=lambda d, t: bar.update(task, completed=d, total=t))
    else:
        def progress(done: int, total: int) -> None:
            step = max(total // 10, 1)
            if done == total or done % step < 50 and done // step != todo_note.get("last"):
                todo_note["last"] = done // step
                err.print(f"embedding {done:,}/{total:,} images", highlight=False)

        e, info = embed_folder(dataset, settings, cache_dir=cache_dir, paths=paths, workers=workers,
                               progress=progress)
    return e, info, dataset.identities(), dataset


def _prepare(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    if not out_dir.is_dir():
        raise FaceledgerError(f"{out_dir}: cannot write the report there")
    return out_dir


def _warn(warnings: list[str], text: str) -> None:
    warnings.append(text)
    err.print(f"[yellow]warning:[/] {text}", highlight=False)


def _detector(p: dict) -> str:
    t = p["detector_score_threshold"]
    return "no detector: synthetic vectors" if t is None else f"detector threshold {t:g}"


def _fte_sentence(enrol: dict) -> str:
    reasons = ", ".join(f"{v:,} {k}" for k, v in enrol["failures_by_reason"].items())
    return (f"{enrol['failed_to_enrol']:,} of {enrol['images']:,} images failed to enrol "
            f"({100 * enrol['fte_rate']:.2f} %{': ' + reasons if reasons else ''}); "
            f"{enrol['multi_face_images']:,} held more than one face (the central one was used) and "
            f"{enrol['chosen_face_fails_quality_gate']:,} chosen faces would fail faceledger's quality gate "
            "(embedded anyway, as benchmark protocols expect).")


def verification(
    dataset: str,
    out_dir: Path,
    *,
    settings: Settings,
    pairs: Path | None = None,
    folds: int = 10,
    pairs_per_fold: int = 300,
    seed: int = 0,
    groups: Path | None = None,
    flag_factor: float = 2.0,
    cache: Path | None = None,
    workers: int = 2,
) -> None:
    """1:1 verification: k-fold accuracy (LFW protocol), ROC AUC, EER, TAR@FAR, DET, score histograms."""
    started = time.perf_counter()
    _prepare(out_dir)
    warnings: list[str] = []
    synthetic = dataset.strip().startswith("synthetic")
    if pairs is not None and synthetic:
        raise FaceledgerError("--pairs needs an image folder dataset, not a synthetic one")
    chosen: dict = {}

    def pair_images(ds: FolderDataset) -> list[str]:
        """Choose the pairs for a folder dataset (official or generated); embed only their images."""
        if pairs is not None:
            chosen["folds"], chosen["notes"] = parse_pairs(pairs), []
            check_pairs_exist(chosen["folds"], ds, pairs)
        else:
            chosen["folds"], chosen["notes"] = protocols.generate_pairs(
                ds.identities(), folds=folds, per_fold=pairs_per_fold, seed=seed)
        return sorted({p for fold in chosen["folds"] for pair in fold for p in (pair.a, pair.b)})

    e, cache_info, _, _ = _load(dataset, settings=settings, cache=cache, workers=workers, seed=seed,
                                paths_for=pair_images)
    if synthetic:
        ids: dict[str, list[str]] = {}
        for p in e.paths:
            ids.setdefault(identity_of(p), []).append(p)
        chosen["folds"], chosen["notes"] = protocols.generate_pairs(ids, folds=folds, per_fold=pairs_per_fold,
                                                                    seed=seed)
    folds_list, notes = chosen["folds"], chosen["notes"]
    for note in notes:
        _warn(warnings, note)
    calibration = packaged_calibration(e.model_id)
    op = calibration.threshold_for_fmr(settings.verify_target_fmr)
    result, curves = protocols.evaluate_verification(e, folds_list, operating_threshold=op.score)
    result["at_operating_threshold"].update({"target_fmr": settings.verify_target_fmr,
                                             "predicted_fmr": op.predicted_fmr,
                                             "calibration_id": calibration.calibration_id})
    enrol = e.enrolment_summary()
    protocol = ("LFW pairs file " + str(pairs) if pairs else
                f"{protocols.PAIRS_PROTOCOL} (seed {seed}, {len(folds_list)} identity-disjoint folds, "
                f"up to {pairs_per_fold} genuine + as many impostor pairs each)")
    group_result = None
    if groups is not None:
        labels = groups_mod.load_groups(groups, {identity_of(p) for p in e.paths})
        for w in labels.warnings:
            _warn(warnings, w)
        pair_list = [p for fold in folds_list for p in fold]
        scores, labels_arr, failed = protocols.pair_scores(e, pair_list)
        genuine = labels_arr
        ref_ids, ref_vec = protocols.reference_images(e)
        group_result = groups_mod.verification_groups(
            labels, threshold=op.score, genuine_identity=[identity_of(p.a) for p, g in zip(pair_list, genuine) if g],
            genuine_error=(failed | ~(scores >= op.score))[genuine], ref_identities=ref_ids, ref_vectors=ref_vec,
            flag_factor=flag_factor, seed=seed)
    wall = time.perf_counter() - started
    payload = {
        "command": "evaluate verification", "model_id": e.model_id, "detector_score_threshold": e.det_threshold,
        "dataset": e.dataset, "protocol": protocol, "enrolment": enrol, "cache": cache_info,
        "verification": result, "groups": group_result, "warnings": warnings, "wall_seconds": round(wall, 2),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    plots = report.verification_plots(curves, result, out_dir)
    group_plots = report.group_plots(group_result, ("fnmr", "fmr"), out_dir, "verification") if group_result else {}
    report.write_json(out_dir, payload)
    _verification_html(out_dir, payload, plots, group_plots, flag_factor)
    _print_verification(payload, out_dir)


def _verification_html(out_dir: Path, p: dict, plots: dict, group_plots: dict, factor: float) -> None:
    v = p["verification"]
    op = v["at_operating_threshold"]
    summary = [
        f"Model <b>{html.escape(p['model_id'])}</b> ({_detector(p)}) on "
        f"<b>{html.escape(p['dataset'])}</b>.",
        f"Protocol: {html.escape(p['protocol'])}: {v['pairs']:,} pairs ({v['genuine_pairs']:,} genuine, "
        f"{v['impostor_pairs']:,} impostor) in {v['folds']} folds.",
        "Failures: " + _fte_sentence(p["enrolment"]) + f" {v['pairs_with_failure']:,} pairs contain a failure; "
        "they count as wrong answers, never dropped.",
        f"<b>Accuracy {100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} %</b> (threshold chosen on the "
        f"other folds), AUC {v['auc']:.4f}, EER {report.pct(v['eer'])}.",
    ]
    tar_rows = [[far, report.pct(t["tar"]), f"{t['threshold']:.4f}" if t["threshold"] is not None and abs(t["threshold"]) != float("inf") else "–",
                 "yes" if t["resolved"] else "no: fewer than 1/FAR impostor pairs"] for far, t in v["tar_at_far"].items()]
    sections = [
        ("Verification", report._table(["metric", "value"], [
            ["accuracy (mean ± std over folds)", f"{100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} %"],
            ["accuracy, pairs where both faces were found", f"{100 * v['accuracy_both_found_mean']:.2f} ± "
                                                            f"{100 * v['accuracy_both_found_std']:.2f} %"],
            ["ROC AUC", f"{v['auc']:.4f}"], ["EER", report.pct(v["eer"])],
            ["per-fold thresholds", f"{min(v['fold_thresholds']):.3f} – {max(v['fold_thresholds']):.3f}"],
        ]) + report._table(["FAR", "TAR", "threshold (accept above)", "resolved by the sample"], tar_rows)
            + f"<p>At the engine's 1:1 operating threshold <b>{op['threshold']:.4f}</b> (calibration "
              f"<code>{html.escape(op['calibration_id'])}</code>, target FMR {op['target_fmr']:g}, predicted "
              f"{report.rate(op['predicted_fmr'])}): observed FMR <b>{report.rate(op['fmr'])}</b> ({op['fmr_count']:,} of "
              f"{v['impostor_pairs']:,}; 95 % {report.rate(op['fmr_wilson95'][0])} – {report.rate(op['fmr_wilson95'][1])}), "
              f"FNMR <b>{report.pct(op['fnmr'])}</b> ({op['fnmr_count']:,} of {v['genuine_pairs']:,}).</p>"),
        ("Plots", "".join(report._img(out_dir, plots[k], t) for k, t in
                          (("roc", "ROC"), ("det", "DET"), ("scores", "genuine vs impostor scores")))),
    ]
    if p["groups"]:
        thr = op["threshold"]
        sections.append(("Demographic differentials", report.groups_html(p["groups"], ("fnmr", "fmr"), group_plots,
                                                                         out_dir, factor, thr, cross=True)))
    report.write_html(out_dir, title="faceledger: verification accuracy", summary=summary, warnings=p["warnings"],
                      sections=sections)


def _print_verification(p: dict, out_dir: Path) -> None:
    v = p["verification"]
    out.print(f"{p['model_id']} on {p['dataset']}")
    out.print(f"  {v['pairs']:,} pairs, {v['folds']} folds; {p['enrolment']['failed_to_enrol']:,} images failed to enrol, "
              f"{v['pairs_with_failure']:,} pairs with a failure")
    out.print(f"  accuracy {100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} %, AUC {v['auc']:.4f}, "
              f"EER {report.pct(v['eer'])}; TAR@FAR " + ", ".join(
                  f"{far}: {report.pct(t['tar'])}" for far, t in v["tar_at_far"].items()))
    if p["groups"]:
        for column, data in p["groups"].items():
            for key in ("fnmr", "fmr"):
                if data["flags"][key]["flagged"]:
                    out.print(f"  [red]flagged[/] {column} {key.upper()}: {', '.join(data['flags'][key]['flagged'])}")
    out.print(f"  {p['wall_seconds']:.1f} s; wrote {out_dir / 'report.html'} and {out_dir / 'metrics.json'}")


def identification(
    dataset: str,
    out_dir: Path,
    *,
    settings: Settings,
    gallery_sizes: str = "1000,5000",
    seed: int = 0,
    nonmated_per_identity: int = 3,
    groups: Path | None = None,
    flag_factor: float = 2.0,
    cache: Path | None = None,
    workers: int = 2,
) -> None:
    """1:N open-set identification through the engine: rank-1/10, FNIR@FPIR, engine thresholds, DET."""
    started = time.perf_counter()
    _prepare(out_dir)
    try:
        sizes = sorted({int(s) for s in gallery_sizes.split(",") if s.strip()})
    except ValueError:
        raise FaceledgerError(f"--gallery-sizes {gallery_sizes!r}: give whole numbers, e.g. 1000,5000") from None
    if not sizes or sizes[0] < 2:
        raise FaceledgerError("--gallery-sizes: each gallery needs at least 2 identities")
    warnings: list[str] = []
    e, cache_info, _, _ = _load(dataset, settings=settings, cache=cache, workers=workers, seed=seed)
    ids: dict[str, list[str]] = {}
    for path in e.paths:
        ids.setdefault(identity_of(path), []).append(path)
    splits, nonmated, facts = protocols.identification_splits(ids, sizes, seed=seed,
                                                               nonmated_per_identity=nonmated_per_identity)
    runs = protocols.run_identification(
        e, splits, nonmated, settings=settings,
        progress=lambda text: err.print(f"searching: {text}", highlight=False))
    group_result = None
    if groups is not None:
        labels = groups_mod.load_groups(groups, set(ids))
        for w in labels.warnings:
            _warn(warnings, w)
        chosen = next(r for r in runs if r["gallery_identities"] == sizes[-1] and r["template"] == "single")
        errs = chosen["_errors_at_default"]
        group_result = groups_mod.identification_groups(
            labels, mated_identity=errs["mated_identity"], mated_error=errs["mated_error"],
            nonmated_identity=errs["nonmated_identity"], nonmated_error=errs["nonmated_error"],
            flag_factor=flag_factor)
        group_result = {"gallery_identities": sizes[-1], "template": "single", "threshold": errs["threshold"],
                        "columns": group_result}
    wall = time.perf_counter() - started
    payload = {
        "command": "evaluate identification", "model_id": e.model_id, "detector_score_threshold": e.det_threshold,
        "dataset": e.dataset, "enrolment": e.enrolment_summary(), "cache": cache_info,
        "protocol": {"name": protocols.OPEN_SET_PROTOCOL, **facts, "gallery_sizes": sizes,
                     "templates": {"single": 1, "multi": 3}, "fnir_rank": 1,
                     "engine_path": "temporary data directory; Engine.enroll_embeddings, Engine.rank (store + FAISS)"},
        "runs": runs, "groups": group_result, "warnings": warnings, "wall_seconds": round(wall, 2),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    plots = report.identification_plots(runs, out_dir)
    group_plots = (report.group_plots(group_result["columns"], ("fnir", "fpir"), out_dir, "identification")
                   if group_result else {})
    report.write_json(out_dir, payload)
    _identification_html(out_dir, payload, plots, group_plots, flag_factor)
    _print_identification(payload, out_dir)


def _identification_html(out_dir: Path, p: dict, plots: dict, group_plots: dict, factor: float) -> None:
    proto = p["protocol"]
    summary = [
        f"Model <b>{html.escape(p['model_id'])}</b> ({_detector(p)}) on "
        f"<b>{html.escape(p['dataset'])}</b>.",
        f"Protocol {proto['name']} (seed {proto['seed']}): galleries of {', '.join(f'{s:,}' for s in proto['gallery_sizes'])} "
        f"identities, half of them (at most) searched for with a held-out image (mated searches), the rest distractors; "
        f"{proto['nonmated_identities']:,} identities never enrolled give {proto['nonmated_searches']:,} non-mated searches. "
        "Every search runs through the engine's store and FAISS index.",
        "Failures: " + _fte_sentence(p["enrolment"]) + " A mated search whose probe failed is a miss; a non-mated one "
        "is a correct 'no match'.",
    ]
    rows = []
    for r in p["runs"]:
        fn = {f["target_fpir"]: f for f in r["fnir_at_fpir"]}
        rows.append([f"{r['gallery_identities']:,}", r["template"], f"{r['gallery_faces']:,}",
                     f"{r['mated_searches']:,} / {r['nonmated_searches']:,}",
                     report.pct(r["rank1"]), report.pct(r["rank10"])]
                    + [report.pct(fn[f]["fnir"]) + ("" if fn[f]["resolved"] else " *") for f in protocols.FPIRS])
    table = report._table(["gallery (identities)", "template", "faces", "mated / non-mated searches", "rank-1",
                           "rank-10"] + [f"FNIR @ FPIR {f:g}" for f in protocols.FPIRS], rows)
    if any(not f["resolved"] for r in p["runs"] for f in r["fnir_at_fpir"]):
        table += "<p>* the non-mated sample is too small to resolve that FPIR.</p>"
    table += ("<p>Templates: <i>single</i> = one image per enrolled identity, <i>multi</i> = up to three "
              "(the best face per subject ranks, as in <code>faceledger search</code>).</p>")
    eng_rows = []
    for r in p["runs"]:
        for t in r["engine_thresholds"]:
            eng_rows.append([f"{r['gallery_identities']:,}", r["template"], f"{t['target_fpir']:g}",
                             f"{t['threshold']:.4f}" + ("" if t["threshold_supported"] else " (capped)"),
                             report.rate(t["predicted_fpir"]),
                             f"{report.rate(t['fpir'])} ({t['fpir_count']:,} / {t['nonmated_searches']:,}; "
                             f"{report.rate(t['fpir_wilson95'][0])} – {report.rate(t['fpir_wilson95'][1])})",
                             f"{report.pct(t['fnir'])} ({t['fnir_count']:,} / {t['mated_searches']:,})"])
    engine_table = ("<p>The threshold the engine itself would use for a target FPIR at this gallery's size in faces "
                    "(<code>calibration.threshold_for_fpir</code>), the FPIR its calibration predicts, and what was observed:</p>"
                    + report._table(["gallery", "template", "target FPIR", "engine threshold", "predicted FPIR",
                                     "observed FPIR (95 % Wilson)", "observed FNIR"], eng_rows))
    sections = [("Open-set identification", table), ("The engine's operating thresholds", engine_table),
                ("DET", report._img(out_dir, plots["det"], "open-set DET: FNIR (rank 1) vs FPIR", wide=True))]
    if p["groups"]:
        g = p["groups"]
        sections.append((f"Demographic differentials (gallery {g['gallery_identities']:,}, single-image templates)",
                         report.groups_html(g["columns"], ("fnir", "fpir"), group_plots, out_dir, factor,
                                            g["threshold"], cross=False)))
    report.write_html(out_dir, title="faceledger: open-set identification accuracy", summary=summary,
                      warnings=p["warnings"], sections=sections)


def _print_identification(p: dict, out_dir: Path) -> None:
    out.print(f"{p['model_id']} on {p['dataset']}; {p['enrolment']['failed_to_enrol']:,} images failed to enrol")
    for r in p["runs"]:
        fn = ", ".join(f"{f['target_fpir']:g}: {report.pct(f['fnir'])}" for f in r["fnir_at_fpir"])
        t = min(r["engine_thresholds"], key=lambda t: abs(math.log(t["target_fpir"] / r["default_target_fpir"])))
        out.print(f"  N={r['gallery_identities']:,} {r['template']}: rank-1 {report.pct(r['rank1'])}, rank-10 "
                  f"{report.pct(r['rank10'])}; FNIR@FPIR {fn}; engine threshold {t['threshold']:.3f} for FPIR "
                  f"{t['target_fpir']:g}: predicted {report.rate(t['predicted_fpir'])}, observed {report.rate(t['fpir'])}")
    if p["groups"]:
        for column, data in p["groups"]["columns"].items():
            for key in ("fnir", "fpir"):
                if data["flags"][key]["flagged"]:
                    out.print(f"  [red]flagged[/] {column} {key.upper()}: {', '.join(data['flags'][key]['flagged'])}")
    out.print(f"  {p['wall_seconds']:.1f} s; wrote {out_dir / 'report.html'} and {out_dir / 'metrics.json'}")
