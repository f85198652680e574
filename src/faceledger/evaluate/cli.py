"""`faceledger evaluate ...`: the commands, their options and help.

This module is imported by every `faceledger` command, so it stays light: the evaluation itself
(evaluate/run.py: datasets, protocols, metrics, plots) is imported only when an evaluate command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import settings

evaluate_app = typer.Typer(help="Measure accuracy on a dataset and write a report (metrics.json, report.html).",
                           no_args_is_help=True)

DatasetOpt = Annotated[str, typer.Option(
    "--dataset", help="folder with one sub-folder per identity (DIR/Name/*.jpg), or 'synthetic[:N[xK]]'")]
OutOpt = Annotated[Path, typer.Option("--out", help="folder for metrics.json, report.html and the plots")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache", help="embedding cache folder [default: <home>/eval-cache]")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="processes computing embeddings")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the generated protocol (and synthetic data)")]
GroupsOpt = Annotated[Path | None, typer.Option(
    "--groups", help="CSV with a column 'identity' and label columns: error rates per group")]
FlagOpt = Annotated[float, typer.Option(
    "--flag-factor", help="flag groups whose error rate exceeds the best group's by more than this factor")]


@evaluate_app.command("verification")
def verification(
    dataset: DatasetOpt,
    out_dir: OutOpt,
    pairs: Annotated[Path | None, typer.Option(
        "--pairs", help="LFW-format pairs file (pairs.txt); without it a seeded pair set is generated")] = None,
    folds: Annotated[int, typer.Option(help="folds of the generated pair set")] = 10,
    pairs_per_fold: Annotated[int, typer.Option(help="genuine pairs per generated fold (as many impostors)")] = 300,
    seed: SeedOpt = 0,
    groups: GroupsOpt = None,
    flag_factor: FlagOpt = 2.0,
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
) -> None:
    """1:1 verification: k-fold accuracy (LFW protocol), ROC AUC, EER, TAR@FAR, DET, score histograms."""
    from . import run

    run.verification(dataset, out_dir, settings=settings(), pairs=pairs, folds=folds, pairs_per_fold=pairs_per_fold,
                     seed=seed, groups=groups, flag_factor=flag_factor, cache=cache, workers=workers)


@evaluate_app.command("identification")
def identification(
    dataset: DatasetOpt,
    out_dir: OutOpt,
    gallery_sizes: Annotated[str, typer.Option(help="gallery sizes in identities, comma-separated")] = "1000,5000",
    seed: SeedOpt = 0,
    nonmated_per_identity: Annotated[int, typer.Option(help="non-mated searches per set-aside identity")] = 3,
    groups: GroupsOpt = None,
    flag_factor: FlagOpt = 2.0,
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
) -> None:
    """1:N open-set identification through the engine: rank-1/10, FNIR@FPIR, engine thresholds, DET."""
    from . import run

    run.identification(dataset, out_dir, settings=settings(), gallery_sizes=gallery_sizes, seed=seed,
                       nonmated_per_identity=nonmated_per_identity, groups=groups, flag_factor=flag_factor,
                       cache=cache, workers=workers)
