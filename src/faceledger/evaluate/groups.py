"""Demographic differentials: labels supplied by the user in a CSV, never inferred by faceledger.

groups.csv has a column `identity` (the dataset's folder names) and any number of label columns
(e.g. `sex`, `age_band`, `skin_type`): each label column is analysed separately. Empty cells mean
"no label" and that identity is left out of that column's analysis.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FaceledgerError
from . import metrics


@dataclass
class GroupLabels:
    columns: dict[str, dict[str, str]]  # column -> identity -> label
    warnings: list[str] = field(default_factory=list)
    unknown_identities: int = 0
    rows: int = 0


def load_groups(path: Path | str, known_identities: set[str]) -> GroupLabels:
    path = Path(path)
    if not path.is_file():
        raise FaceledgerError(f"{path}: no such groups file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fieldnames = [f.strip() for f in (reader.fieldnames or [])]
        if "identity" not in fieldnames:
            raise FaceledgerError(f"{path}: needs a column named 'identity' (found: {', '.join(fieldnames) or 'none'})")
        label_columns = [f for f in fieldnames if f != "identity"]
        if not label_columns:
            raise FaceledgerError(f"{path}: no label columns besides 'identity' (add e.g. a column 'group')")
        reader.fieldnames = fieldnames
        rows = list(reader)
    columns: dict[str, dict[str, str]] = {c: {} for c in label_columns}
    unknown: list[str] = []
    for row in rows:
        identity = (row.get("identity") or "").strip()
        if not identity:
            continue
        if identity not in known_identities:
            unknown.append(identity)
            continue
        for column in label_columns:
            label = (row.get(column) or "").strip()
            if label:
                columns[column][identity] = label
    result = GroupLabels(columns=columns, unknown_identities=len(unknown), rows=len(rows))
    if unknown:
        result.warnings.append(
            f"{path.name}: {len(unknown)} of {len(rows)} row(s) name identities that are not in the dataset "
            f"and were ignored (e.g. {', '.join(sorted(unknown)[:3])})")
    for column, labels in columns.items():
        if not labels:
            result.warnings.append(f"{path.name}: column {column!r} labels no identity of the dataset")
    if all(not labels for labels in columns.values()):
        raise FaceledgerError(f"{path}: no row names an identity of the dataset ({len(unknown)} unknown)")
    return result


def verification_groups(labels: GroupLabels, *, threshold: float, genuine_identity: np.ndarray,
                        genuine_error: np.ndarray, ref_identities: list[str], ref_vectors: np.ndarray,
                        flag_factor: float, max_per_group: int = 3000, seed: int = 0) -> dict:
    """FNMR per group (genuine pairs), FMR per group and across groups (impostor comparisons).

    Impostor comparisons: every cross-identity pair among one reference image per identity (at most
    `max_per_group` identities per group, seeded sample), accepted when score >= threshold.
    """
    out = {}
    rng = np.random.default_rng(seed)
    ref_index = {identity: i for i, identity in enumerate(ref_identities)}
    for column, mapping in labels.columns.items():
        if not mapping:
            continue
        g_labels = np.array([mapping.get(i, "") for i in genuine_identity])
        has = g_labels != ""
        fnmr = metrics.group_rates(g_labels[has], genuine_error[has])
        members: dict[str, list[int]] = {}
        for identity, label in mapping.items():
            if identity in ref_index:
                members.setdefault(label, []).append(ref_index[identity])
        for label, rows in members.items():
            if len(rows) > max_per_group:
                members[label] = sorted(rng.choice(rows, max_per_group, replace=False).tolist())
        names = sorted(members)
        fmr: dict[str, dict] = {}
        cross: dict[str, dict[str, dict]] = {a: {} for a in names}
        for ai, a in enumerate(names):
            xa = ref_vectors[members[a]].astype(np.float32)
            for b in names[ai:]:
                xb = ref_vectors[members[b]].astype(np.float32)
                scores = xa @ xb.T
                if a == b:
                    scores = scores[np.triu_indices(len(xa), k=1)]
                k, n = int((scores >= threshold).sum()), int(scores.size)
                lo, hi = metrics.wilson_interval(k, n)
                cell = {"errors": k, "trials": n, "rate": k / n if n else float("nan"), "wilson95": [lo, hi]}
                cross[a][b] = cell
                cross.setdefault(b, {})[a] = cell
                if a == b:
                    fmr[a] = cell
        for label in set(fnmr) | set(fmr):
            fnmr.setdefault(label, {"errors": 0, "trials": 0, "rate": float("nan"), "wilson95": [0.0, 1.0]})
            fmr.setdefault(label, {"errors": 0, "trials": 0, "rate": float("nan"), "wilson95": [0.0, 1.0]})
        out[column] = {
            "identities_labelled": len(mapping),
            "groups": {label: {"identities": sum(1 for v in mapping.values() if v == label),
                               "fnmr": fnmr[label], "fmr": fmr[label]} for label in sorted(fnmr)},
            "cross_group_fmr": cross,
            "flags": {"fnmr": metrics.flag_groups(fnmr, flag_factor), "fmr": metrics.flag_groups(fmr, flag_factor)},
        }
    return out


def identification_groups(labels: GroupLabels, *, mated_identity: list[str], mated_error: np.ndarray,
                          nonmated_identity: list[str], nonmated_error: np.ndarray, flag_factor: float) -> dict:
    """FNIR (mated searches) and FPIR (non-mated searches) per group at one operating threshold."""
    out = {}
    for column, mapping in labels.columns.items():
        if not mapping:
            continue
        m = np.array([mapping.get(i, "") for i in mated_identity])
        n = np.array([mapping.get(i, "") for i in nonmated_identity])
        fnir = metrics.group_rates(m[m != ""], np.asarray(mated_error)[m != ""])
        fpir = metrics.group_rates(n[n != ""], np.asarray(nonmated_error)[n != ""])
        empty = {"errors": 0, "trials": 0, "rate": float("nan"), "wilson95": [0.0, 1.0]}
        names = sorted(set(fnir) | set(fpir))
        out[column] = {
            "identities_labelled": len(mapping),
            "groups": {g: {"identities": sum(1 for v in mapping.values() if v == g),
                           "fnir": fnir.get(g, dict(empty)), "fpir": fpir.get(g, dict(empty))} for g in names},
            "flags": {"fnir": metrics.flag_groups(fnir, flag_factor), "fpir": metrics.flag_groups(fpir, flag_factor)},
        }
    return out
