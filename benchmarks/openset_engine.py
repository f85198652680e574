"""Open-set search through the engine: does the threshold a search uses keep its FPIR promise?

    PYTHONPATH=src FACELEDGER_BENCH_CACHE=/path/to/cache .venv/bin/python benchmarks/openset_engine.py

Every gallery is built in a temporary data directory with `Engine.create_gallery` and
`Engine.enroll_embeddings` (cached LFW embeddings, det 0.7, sface-2021dec); every search is answered by
`Searching.match` (the threshold from `Calibrations.for_gallery`: packaged calibration combined with the
gallery's own cross-subject sample, at the gallery's size and target FPIR; candidates above it, top 1).
The oracle beside it is the empirical threshold at which the observed FPIR equals the target on the
same non-mated searches (top-1 scores from `Engine.rank`): what perfect calibration would give.

Protocol: benchmarks/openset_protocol.py (seed 0; 1,000 mated people, 1,000 never-enrolled people with
one image; distractors from the remaining people). Rows:
- real: 1k, 5k and 7,585 faces (one enrolled image per mated person; LFW runs out at 7,585), and 10k faces
  where the mated people are enrolled with every image but the probe (max-score fusion, N = faces);
- scale: the 7,585 real faces + face-like synthetic distractors (32-component Gaussian mixture fitted to
  LFW, as benchmarks/search_scale.py) to 100k faces through the engine; 1M faces through the same
  calibration objects (see --engine-max), searches by exact inner product;
- shifts: the 5k gallery with gallery and probes shifted, and with the probes only shifted;
- templates: mated people with >= 3 images enrolled with 1 vs 2-3 images; (a) max-score fusion over
  faces, N = faces (the engine today) and (b) one mean-embedding template per subject, N = subjects.
Non-mated searches whose top hit is the same person under another name (LFW label noise, the rules of
scripts/build_calibration.py) are left out of the FPIR and counted. A shifted probe with no face found is
a miss (mated) and a "no candidate" (non-mated), counted in the denominators.

Prints markdown tables and writes benchmarks/results/openset_engine.json (+ .md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from openset_common import MODEL, bc, common, log
import openset_protocol as op

from faceledger.calibration import wilson_interval
from faceledger.config import Settings
from faceledger.enrollment import PrecomputedFace

FPIRS = (0.1, 0.01, 0.001)
CHECK = 100  # searches (mated and non-mated each) answered through Searching.match per target
SECTIONS = ("real", "scale", "templates", "shifts")
NEAR = 0.005  # ... and every search whose top-1 score is this close to the threshold


# -- the engine -------------------------------------------------------------------------------------

class Bench:
    """One temporary data directory holding every gallery of the run."""

    def __init__(self, tmp: Path) -> None:
        from faceledger.engine import open_engine

        self.eng = open_engine(Settings(home=tmp / "home", db=None, enroll_batch=2000,
                                        operator="openset-engine-benchmark"))
        if self.eng.model_id != MODEL:
            raise SystemExit(f"engine model {self.eng.model_id}, embeddings {MODEL}")

    def enrol(self, name: str, subjects: list[str], keys: list[str], vectors: np.ndarray) -> dict:
        """A gallery of these faces (one PrecomputedFace each); returns timings."""
        eng = self.eng
        eng.create_gallery(name, target_fpir=0.01)
        t = time.time()
        chunk = 20_000
        for s in range(0, len(keys), chunk):
            entries = [PrecomputedFace(subject=subjects[i], sha256=hashlib.sha256(f"{name}\0{keys[i]}".encode()).hexdigest(),
                                       name=keys[i], embedding=vectors[i], model_id=MODEL)
                       for i in range(s, min(len(keys), s + chunk))]
            report = eng.enroll_embeddings(entries, gallery=name, source="LFW (evaluation, temporary data directory)",
                                           legal_basis="accuracy evaluation")
            if report.failures:
                raise SystemExit(f"{name}: {len(report.failures)} embeddings not enrolled")
        enrol_s = time.time() - t
        t = time.time()
        self.eng.rank(name, vectors[:1], top_k=1)  # builds the index
        index_s = time.time() - t
        return {"enrol_seconds": round(enrol_s, 1), "index_seconds": round(index_s, 1)}

    def top1(self, name: str, vectors: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Engine.rank top-1 (score, subject) per probe; -inf / None for a probe with no face."""
        scores = np.full(len(vectors), -np.inf)
        subjects: list[str | None] = [None] * len(vectors)
        ok = np.nonzero(np.isfinite(vectors).all(axis=1))[0]
        for s in range(0, len(ok), 500):
            rows = ok[s:s + 500]
            for k, hits in zip(rows, self.eng.rank(name, vectors[rows], top_k=1)):
                if hits:
                    scores[k], subjects[k] = hits[0].score, hits[0].subject
        return scores, subjects

    def matches(self, name: str, vectors: np.ndarray, target: float) -> tuple[dict, list[str | None]]:
        """Searching.match for every probe at this target: (threshold facts, top candidate subject or None)."""
        eng = self.eng
        eng.update_gallery(name, target_fpir=target)
        out: list[str | None] = [None] * len(vectors)
        thresholds = set()
        th = None
        with eng.sessions() as session:
            g = eng.ctx.gallery(session, name)
            for k, v in enumerate(vectors):
                if not np.isfinite(v).all():
                    continue  # no face in the probe: no search, no candidate
                m = eng.searching.match(session, g, v, top_k=1)
                th = m.threshold
                thresholds.add(round(float(th.score), 9))
                if m.candidates:
                    out[k] = m.candidates[0].subject
            size = m.gallery_size
        if len(thresholds) != 1:
            raise SystemExit(f"{name}: the threshold changed between searches: {sorted(thresholds)}")
        return facts(th, size), out

    def calibration(self, name: str):
        """The OpenSetCalibration the engine's searches of this gallery use."""
        with self.eng.sessions() as session:
            return self.eng.calibrations.for_gallery(session, self.eng.ctx.gallery(session, name))

    def close(self) -> None:
        self.eng.close()


def before_rule(cal, f: float, size: int, ms, rank1, non_clean) -> dict:
    """The same gallery sample under the combination rule before this change (COMBINE "max-bound")."""
    from faceledger.calibration import OpenSetCalibration

    old = OpenSetCalibration(cal.packaged.cal, cal.gallery_sample, combine="max-bound")
    th = old.threshold_for_fpir(f, size)
    return {"threshold": float(th.score), "predicted_fpir": float(th.predicted_fpir), "supported": bool(th.supported),
            "extrapolation_factor": float(th.extrapolation_factor), "fp": int((non_clean >= th.score).sum()),
            "fnir": 1 - float(np.mean(rank1 & (ms >= th.score)))}


def facts(th, size: int) -> dict:
    return {"threshold": float(th.score), "predicted_fpir": float(th.predicted_fpir), "supported": bool(th.supported),
            "extrapolated": bool(th.extrapolated), "extrapolation_factor": float(th.extrapolation_factor),
            "source": str(getattr(th, "source", "")), "binding": str(getattr(th, "binding", "")),
            "gallery_size": int(size), "explanation": str(getattr(th, "explanation", ""))}


# -- one measured gallery -----------------------------------------------------------------------------

def oracle_threshold(non: np.ndarray, f: float) -> float:
    """Smallest threshold with at most floor(f * n) non-mated top scores at or above it."""
    s = np.sort(non[np.isfinite(non)])[::-1]
    k = math.floor(f * len(non) + 1e-9)
    if k >= len(s):
        return -1.0
    return float(s[k]) + 1e-6


def noise_mask(non_names: list[str], subj: list[str | None], scores: np.ndarray) -> np.ndarray:
    return np.array([s is not None and not s.startswith("synthetic-") and bc.removal_reason(float(sc), n, s) is not None
                     for n, s, sc in zip(non_names, subj, scores)], dtype=bool)


def measure(b: Bench, name: str, mated_v: np.ndarray, mated_subj: list[str], non_v: np.ndarray,
            non_names: list[str], targets=FPIRS) -> dict:
    t = time.time()
    ms, msubj = b.top1(name, mated_v)
    ns, nsubj = b.top1(name, non_v)
    noisy = noise_mask(non_names, nsubj, ns)
    clean = ~noisy
    rank1 = np.array([s == m for s, m in zip(msubj, mated_subj)])
    non_clean = ns[clean]
    impostor = {f"p{q:g}": float(np.quantile(non_clean[np.isfinite(non_clean)], q / 100)) for q in (50, 90, 99)}
    rows = []
    cal = b.calibration(name)
    for f in targets:
        # The threshold is Searching.match's (one value for every search of the gallery, checked). Each
        # search through match costs ~0.1 s of CPU (the calibration's threshold and tail bound are
        # recomputed per search), so match answers a seeded sample of CHECK mated + CHECK non-mated
        # searches per target, plus every search near the threshold; the counts are the engine threshold
        # applied to Engine.rank's top-1 (the ranking match uses), and must agree with match exactly.
        rng = np.random.default_rng(7)
        mi = np.sort(rng.choice(len(mated_v), min(CHECK, len(mated_v)), replace=False))
        ni = np.sort(rng.choice(len(non_v), min(CHECK, len(non_v)), replace=False))
        th, _ = b.matches(name, mated_v[mi[:1]], f)
        t_ = th["threshold"]
        mi = np.union1d(mi, np.nonzero(np.abs(ms - t_) < NEAR)[0])
        ni = np.union1d(ni, np.nonzero(np.abs(ns - t_) < NEAR)[0])
        _, mcand = b.matches(name, mated_v[mi], f)
        _, ncand = b.matches(name, non_v[ni], f)
        hit_rank = rank1 & (ms >= t_)
        fp_rank = ns >= t_
        agree = (all((c is not None and c == mated_subj[k]) == bool(hit_rank[k]) for c, k in zip(mcand, mi))
                 and all((c is not None) == bool(fp_rank[k]) for c, k in zip(ncand, ni)))
        if not agree:
            log(f"{name} @ {f:g}: Searching.match disagrees with the threshold applied to Engine.rank")
        k, n = int(fp_rank[clean].sum()), int(clean.sum())
        lo, hi = wilson_interval(k, n)
        ot = oracle_threshold(non_clean, f)
        rows.append({"target_fpir": f, **th, "observed_fpir": k / n, "fp": k, "nonmated": n,
                     "fpir_wilson95": [lo, hi], "fp_with_label_noise": int(fp_rank.sum()),
                     "fnir": 1 - float(hit_rank.mean()), "fn": int((~hit_rank).sum()), "mated": len(hit_rank),
                     "searched_with_match": [len(mi), len(ni)], "match_agrees_with_rank": bool(agree),
                     "oracle_threshold": ot, "oracle_fnir": 1 - float(np.mean(rank1 & (ms >= ot))),
                     "oracle_fp": int((non_clean >= ot).sum()),
                     "oracle_resolved": f * n >= 5,
                     "before": before_rule(cal, f, th["gallery_size"], ms, rank1, non_clean)})
    described = cal.describe()
    return {"gallery": name, "combine": {k: described.get(k) for k in ("combine", "gallery_shift", "gallery_shape_check")}, "mated": len(mated_subj), "mated_probe_no_face": int((~np.isfinite(ms)).sum()),
            "nonmated": len(non_names), "nonmated_probe_no_face": int((~np.isfinite(ns)).sum()),
            "label_noise_searches": int(noisy.sum()), "rank1": float(rank1.mean()),
            "nonmated_top1_quantiles": impostor, "search_seconds": round(time.time() - t, 1), "rows": rows}


# -- the experiments -----------------------------------------------------------------------------------

def real_and_scale(b: Bench, e, s: dict, args) -> list[dict]:
    """LFW galleries of real faces only."""
    x = e.embeddings.astype(np.float32)
    paths = e.paths
    mated_v, mated_subj = x[s["probe"]], list(s["mated"])
    non_v, non_names = x[s["nonmated_rows"]], list(s["nonmated"])
    who = lambda i: paths[i].split("/", 1)[0]
    out = []
    single = s["enrol"] + s["distractors"]
    allimg = s["enrol"] + [i for ex in s["extras"] for i in ex] + s["distractors"]
    plans = [(n, "single", single[:n]) for n in args.sizes if n <= len(single)]
    plans += [(n, "all-images", allimg[:n]) for n in args.all_sizes if n <= len(allimg)]
    for n, mode, rows in plans:
        name = f"real-{mode}-{n}"
        log(f"{name}: enrolling {len(rows):,} faces")
        timing = b.enrol(name, [who(i) for i in rows], [paths[i] for i in rows], x[rows])
        r = measure(b, name, mated_v, mated_subj, non_v, non_names)
        out.append({"kind": "real", "template": mode, "faces": len(rows), **timing, **r})
        log(f"{name}: {timing}, search {r['search_seconds']} s")
    return out


def scale(b: Bench, e, s: dict, args) -> list[dict]:
    x = e.embeddings.astype(np.float32)
    paths = e.paths
    mated_v, mated_subj = x[s["probe"]], list(s["mated"])
    non_v, non_names = x[s["nonmated_rows"]], list(s["nonmated"])
    who = lambda i: paths[i].split("/", 1)[0]
    out = []
    single = s["enrol"] + s["distractors"]
    if args.scale_sizes:
        import search_scale as ss

        gmm = ss.fit_gmm(x[distractor_fit_rows(e, args.distractors)], 32, args.seed)
        args.lfw_impostor = pair_quantiles(x[distractor_fit_rows(e, "one-per-person")])
        biggest = max(args.scale_sizes)
        synth = np.empty((biggest - len(single), x.shape[1]), np.float32)
        ss.fill_distractors(synth, "gmm", gmm, args.seed)
        real_subj = [who(i) for i in single]
        for n in args.scale_sizes:
            m = n - len(single)
            vecs = np.concatenate([x[single], synth[:m]])
            subj = real_subj + [f"synthetic-{i}" for i in range(m)]
            if n <= args.engine_max:
                name = f"scale-{n}"
                log(f"{name}: enrolling {n:,} faces")
                timing = b.enrol(name, subj, [paths[i] for i in single] + [f"synthetic/{i}" for i in range(m)], vecs)
                r = measure(b, name, mated_v, mated_subj, non_v, non_names)
                out.append({"kind": "scale", "template": "single", "faces": n, "through": "engine", **timing, **r})
                log(f"{name}: {timing}, search {r['search_seconds']} s")
            else:
                out.append(calibration_only(b, n, vecs, subj, mated_v, mated_subj, non_v, non_names, args))
    return out


def distractor_fit_rows(e, kind: str) -> np.ndarray:
    """The LFW embeddings the distractor GMM is fitted to: every usable image ("all-images", the construction
    before: people with hundreds of photographs own whole components, whose draws then score like one person
    among themselves) or the first usable image of each person ("one-per-person": the draws' pairwise scores
    follow LFW's impostor distribution, see pair_tails in the JSON)."""
    ok = np.nonzero(~e.failed)[0]
    if kind == "all-images":
        return ok
    seen: set[str] = set()
    rows = []
    for i in ok:
        person = e.paths[i].split("/", 1)[0]
        if person not in seen:
            seen.add(person)
            rows.append(i)
    return np.array(rows)


def pair_quantiles(a: np.ndarray, b: np.ndarray | None = None, pairs: int = 2_000_000, seed: int = 5) -> dict:
    """Quantiles of the scores of random pairs (i != j within a, or a x b)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(a), pairs)
    j = rng.integers(0, len(a if b is None else b), pairs)
    keep = i != j if b is None else np.ones(pairs, bool)
    sc = np.einsum("ij,ij->i", a[i[keep]], (a if b is None else b)[j[keep]])
    return {f"p{q:g}": round(float(np.quantile(sc, q / 100)), 4) for q in (50, 99, 99.9, 99.99, 99.999)}


def calibration_only(b: Bench, n: int, vecs, subj, mated_v, mated_subj, non_v, non_names, args) -> dict:
    """A gallery too large to enrol here: the engine's calibration objects on it (the packaged calibration
    + gallery_sample over a seeded 20k-face subset, exactly as Calibrations._build_sample), searches by an
    exact inner product over all n faces."""
    from faceledger.calibration import OpenSetCalibration, gallery_sample
    from faceledger.services import calibrations as cal_mod

    t = time.time()
    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(n, cal_mod.SAMPLE_FACES, replace=False)) if n > cal_mod.SAMPLE_FACES else np.arange(n)
    mated_v, non_v = np.nan_to_num(mated_v), np.nan_to_num(non_v)  # a probe with no face: score 0, no candidate
    sid = {}
    ids = np.array([sid.setdefault(subj[i], len(sid)) for i in pick], np.int64)
    sample = gallery_sample(vecs[pick], ids, max_pairs=cal_mod.SAMPLE_PAIRS, seed=1, model_id=MODEL)
    cal = OpenSetCalibration(b.eng.calibrations.current, sample)
    sample_s = time.time() - t
    t = time.time()

    def top1(q):
        best = np.full(len(q), -np.inf)
        arg = np.full(len(q), -1)
        for g in range(0, n, 200_000):
            sc = q @ vecs[g:g + 200_000].T
            i = sc.argmax(axis=1)
            v = sc[np.arange(len(q)), i]
            better = v > best
            best[better], arg[better] = v[better], i[better] + g
        return best, [subj[i] for i in arg]

    ms, msubj = top1(mated_v)
    ns, nsubj = top1(non_v)
    noisy = noise_mask(non_names, nsubj, ns)
    clean = ~noisy
    rank1 = np.array([a == m for a, m in zip(msubj, mated_subj)])
    non_clean = ns[clean]
    packaged_only = OpenSetCalibration(b.eng.calibrations.current, None)
    rows = []
    for f in FPIRS:
        th = facts(cal.threshold_for_fpir(f, n), n)
        po = packaged_only.threshold_for_fpir(f, n)
        th["packaged_only"] = {"threshold": float(po.score), "supported": bool(po.supported),
                               "extrapolation_factor": float(po.extrapolation_factor),
                               "observed_fp": int((non_clean >= po.score).sum()),
                               "fnir": 1 - float(np.mean(rank1 & (ms >= po.score)))}
        k, nn = int((non_clean >= th["threshold"]).sum()), int(clean.sum())
        lo, hi = wilson_interval(k, nn)
        ot = oracle_threshold(non_clean, f)
        th["before"] = before_rule(cal, f, n, ms, rank1, non_clean)
        rows.append({"target_fpir": f, **th, "observed_fpir": k / nn, "fp": k, "nonmated": nn, "fpir_wilson95": [lo, hi],
                     "fp_with_label_noise": int((ns >= th["threshold"]).sum()),
                     "fnir": 1 - float(np.mean(rank1 & (ms >= th["threshold"]))),
                     "fn": int((~(rank1 & (ms >= th["threshold"]))).sum()), "mated": len(rank1),
                     "oracle_threshold": ot, "oracle_fnir": 1 - float(np.mean(rank1 & (ms >= ot))),
                     "oracle_fp": int((non_clean >= ot).sum()), "oracle_resolved": f * nn >= 5})
    synth = vecs[np.nonzero([x.startswith("synthetic-") for x in subj])[0][:200_000]]
    tail = {"synthetic_pairs": pair_quantiles(synth), "lfw_impostor_pairs_one_per_person": args.lfw_impostor,
            "nonmated_probe_vs_synthetic": pair_quantiles(non_v, synth)} if len(synth) else {}
    return {"kind": "scale", "template": "single", "faces": n, "through": "calibration objects (not enrolled)",
            "pair_tails": tail, "distractors": args.distractors,
            "combine": {k: cal.describe().get(k) for k in ("combine", "gallery_shift", "gallery_shape_check")},
            "gallery": f"scale-{n}", "sample_seconds": round(sample_s, 1), "search_seconds": round(time.time() - t, 1),
            "gallery_sample_pairs": int(sample.pairs), "mated": len(rank1), "nonmated": len(non_names),
            "label_noise_searches": int(noisy.sum()), "rank1": float(rank1.mean()),
            "nonmated_top1_quantiles": {f"p{q:g}": float(np.quantile(non_clean, q / 100)) for q in (50, 90, 99)},
            "rows": rows}


def shifts(b: Bench, e, s: dict, args) -> list[dict]:
    x = e.embeddings.astype(np.float32)
    paths = e.paths
    grows = (s["enrol"] + s["distractors"])[: args.shift_gallery]
    who = lambda i: paths[i].split("/", 1)[0]
    image_root = args.lfw / common.IMAGE_DIR_NAME
    out = []
    base_non = x[s["nonmated_rows"]]
    base_gal = x[grows]
    for shift in args.shifts:
        need = [paths[i] for i in s["probe"] + s["nonmated_rows"] + grows]
        have = op.load_shifted(common.CACHE_DIR, shift)
        missing = [p for p in need if p not in have]
        if missing:
            if not args.embed_missing:
                log(f"shift {shift}: {len(missing)} images not embedded yet; skipped")
                continue
            have = op.embed_shifted(image_root, common.CACHE_DIR, shift, need, workers=args.workers)

        def vec(i, have=have):
            return have[paths[i]][1].astype(np.float32)

        mv = np.stack([vec(i) for i in s["probe"]])
        nv = np.stack([vec(i) for i in s["nonmated_rows"]])
        gv = np.stack([vec(i) for i in grows])
        gok = np.isfinite(gv).all(axis=1)
        # impostor tail on all non-mated probe x gallery face pairs (no top-1 selection)
        tails = {}
        for cond, gal, probes in (("both", gv[gok], nv), ("probes", base_gal, nv), ("none", base_gal, base_non)):
            sc = (probes[np.isfinite(probes).all(axis=1)] @ gal.T).ravel()
            tails[cond] = {f"p{q:g}": float(np.quantile(sc, q / 100)) for q in (99, 99.9, 99.99)}
            tails[cond]["pairs"] = int(sc.size)
        for cond in ("both", "probes"):
            name = f"shift-{shift}-{cond}"
            if args.shifts_via == "calibration":  # the engine's calibration objects, exact search (no enrolment)
                gal, grs = (gv[gok], [i for i, ok in zip(grows, gok) if ok]) if cond == "both" else (base_gal, grows)
                r = calibration_only(b, len(grs), gal, [who(i) for i in grs], mv, list(s["mated"]), nv,
                                     list(s["nonmated"]), args)
                out.append({**r, "kind": "shift", "shift": shift, "shifted": cond, "faces": len(grs),
                            "gallery_images_no_face": int((~gok).sum()) if cond == "both" else 0,
                            "impostor_pair_quantiles": tails[cond], "impostor_pair_quantiles_unshifted": tails["none"],
                            "mated_probe_no_face": int((~np.isfinite(mv).all(axis=1)).sum()),
                            "nonmated_probe_no_face": int((~np.isfinite(nv).all(axis=1)).sum())})
                log(f"{name}: calibration objects, {r['search_seconds']} s")
                continue
            if cond == "both":
                rows = [i for i, ok in zip(grows, gok) if ok]
                timing = b.enrol(name, [who(i) for i in rows], [paths[i] for i in rows], gv[gok])
            else:
                timing = b.enrol(name, [who(i) for i in grows], [paths[i] for i in grows], base_gal)
            r = measure(b, name, mv, list(s["mated"]), nv, list(s["nonmated"]))
            out.append({"kind": "shift", "shift": shift, "shifted": cond, "faces": int(gok.sum()) if cond == "both" else len(grows),
                        "gallery_images_no_face": int((~gok).sum()) if cond == "both" else 0,
                        "impostor_pair_quantiles": tails[cond], "impostor_pair_quantiles_unshifted": tails["none"],
                        **timing, **r})
            log(f"{name}: search {r['search_seconds']} s")
    return out


def templates(b: Bench, e, s: dict, args) -> list[dict]:
    """Mated people with >= 3 images: 1 vs 2-3 enrolled images; max-score fusion (N faces) vs mean template
    (N subjects). The same distractor faces in every gallery."""
    x = e.embeddings.astype(np.float32)
    paths = e.paths
    who = lambda i: paths[i].split("/", 1)[0]
    keep = [k for k, ex in enumerate(s["extras"]) if ex]
    mated = [s["mated"][k] for k in keep]
    mated_v = x[[s["probe"][k] for k in keep]]
    dis = s["distractors"][: args.template_distractors]
    out = []
    for per in (1, 3):
        enrolled = [[s["enrol"][k]] + s["extras"][k][: per - 1] for k in keep]
        rows = [i for group in enrolled for i in group] + dis
        for fusion in ("max-score", "mean-template"):
            name = f"template-{per}-{fusion}"
            if fusion == "max-score":
                subj, keys, vecs = [who(i) for i in rows], [paths[i] for i in rows], x[rows]
            else:
                groups: dict[str, list[int]] = {}
                for i in rows:
                    groups.setdefault(who(i), []).append(i)
                subj = list(groups)
                keys = [f"template/{n}" for n in subj]
                vecs = np.stack([x[g].mean(axis=0) for g in groups.values()])
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            timing = b.enrol(name, subj, keys, vecs)
            r = measure(b, name, mated_v, mated, x[s["nonmated_rows"]], list(s["nonmated"]))
            out.append({"kind": "template", "images_per_mated": "1" if per == 1 else "2-3",
                        "mated_enrolled_images": sum(len(g) for g in enrolled), "fusion": fusion,
                        "faces": len(vecs), "subjects": len(set(subj)), **timing, **r})
            log(f"{name}: N={len(vecs)}, search {r['search_seconds']} s")
    return out


# -- tables ---------------------------------------------------------------------------------------------

def pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def row_cells(r: dict) -> str:
    lo, hi = r["fpir_wilson95"]
    note = []
    if not r["supported"]:
        note.append("**unsupported**")
    if r["extrapolated"]:
        note.append(f"×{r['extrapolation_factor']:.0f} extrap.")
    oracle = (f"{pct(r['oracle_fnir'])} ({r['oracle_threshold']:.3f})" if r["oracle_resolved"]
              else f"({pct(r['oracle_fnir'])}, {r['oracle_threshold']:.3f}: unresolved)")
    b = r.get("before")
    before = (f"{b['threshold']:.4f}{'' if b['supported'] else ' **unsupported**'}, {b['fp']}/{r['nonmated']}, "
              f"{pct(b['fnir'])}" if b else "–")
    return (f"{r['target_fpir']:g} | {r['threshold']:.4f} {' '.join(note)} | {pct(r['predicted_fpir'])} | "
            f"{pct(r['observed_fpir'])} ({r['fp']}/{r['nonmated']}; {pct(lo)}–{pct(hi)}) | {pct(r['fnir'])} | {oracle} | "
            f"{before}")


HEAD = ("target FPIR | engine threshold | predicted FPIR | observed FPIR (95 % Wilson) | engine FNIR | oracle FNIR (thr) | "
        "rule before (max-bound): thr, FP, FNIR")


def markdown(res: dict) -> str:
    lines = ["| gallery | faces | " + HEAD + " |", "|---|---:|---|---|---|---|---|---|---|"]
    for g in res.get("real", []) + res.get("scale", []):
        label = {"real": f"LFW, {g['template']}", "scale": "LFW + synthetic"}[g["kind"]]
        if g.get("through", "engine") != "engine":
            label += " (calibration objects)"
        for r in g["rows"]:
            lines.append(f"| {label} | {g['faces']:,} | {row_cells(r)} |")
    if res.get("shifts"):
        lines += ["", "| shift | shifted | faces | " + HEAD + " |", "|---|---|---:|---|---|---|---|---|---|---|"]
        for g in res["shifts"]:
            for r in g["rows"]:
                lines.append(f"| {g['shift']} | {g['shifted']} | {g['faces']:,} | {row_cells(r)} |")
        lines += ["", ("| shift | shifted | impostor pairs p99 / p99.9 / p99.99 | unshifted | non-mated top-1 p99 | "
                  "probes no face (mated / non-mated) | rank-1 |"), "|---|---|---|---|---|---|---|"]
        for g in res["shifts"]:
            q, u = g["impostor_pair_quantiles"], g["impostor_pair_quantiles_unshifted"]
            lines.append(f"| {g['shift']} | {g['shifted']} | {q['p99']:.3f} / {q['p99.9']:.3f} / {q['p99.99']:.3f} | "
                         f"{u['p99']:.3f} / {u['p99.9']:.3f} / {u['p99.99']:.3f} | {g['nonmated_top1_quantiles']['p99']:.3f} | "
                         f"{g['mated_probe_no_face']} / {g['nonmated_probe_no_face']} | {pct(g['rank1'])} |")
    if res.get("templates"):
        lines += ["", "| images per mated person | fusion | N (compared) | " + HEAD + " |",
                  "|---|---|---:|---|---|---|---|---|---|---|"]
        for g in res["templates"]:
            for r in g["rows"]:
                lines.append(f"| {g['images_per_mated']} | {g['fusion']} | {g['faces']:,} | {row_cells(r)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_lfw_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 5000, 7585])
    parser.add_argument("--all-sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--scale-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--engine-max", type=int, default=0, help="largest gallery enrolled through the engine")
    parser.add_argument("--distractors", choices=["one-per-person", "all-images"], default="one-per-person",
                        help="LFW embeddings the synthetic distractors' GMM is fitted to (see distractor_fit_rows)")
    parser.add_argument("--shifts", nargs="*", default=list(op.SHIFTS))
    parser.add_argument("--shift-gallery", type=int, default=5000)
    parser.add_argument("--shifts-via", choices=["engine", "calibration"], default="engine",
                        help="shifted galleries enrolled through the engine, or its calibration objects + exact search")
    parser.add_argument("--embed-missing", action="store_true", help="embed shifted images not in the cache")
    parser.add_argument("--template-distractors", type=int, default=4000)
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--combine", type=Path, nargs="*", default=[], help="JSON files of other runs to merge in")
    parser.add_argument("--merge", action="store_true", help="keep the other sections of an existing --out")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "openset_engine.json")
    args = parser.parse_args()
    e = common.load_embeddings(args.lfw, det_threshold=0.7, workers=args.workers)
    s = op.split(e, args.seed)
    res: dict = {"model_id": MODEL, "seed": args.seed, "protocol": "benchmarks/openset_protocol.py",
                 "mated": len(s["mated"]), "nonmated": len(s["nonmated"])}
    if args.merge and args.out.is_file():
        res = {**json.loads(args.out.read_text()), **res}
    for part in args.combine:  # sections measured by separate runs (--out elsewhere)
        res.update({k: v for k, v in json.loads(part.read_text()).items() if k in SECTIONS})
    with tempfile.TemporaryDirectory(prefix="faceledger-openset-") as tmp:
        b = Bench(Path(tmp))
        try:
            res["calibration_id"] = b.eng.calibrations.current.calibration_id
            for section, fn in (("real", real_and_scale), ("scale", scale), ("templates", templates),
                                ("shifts", shifts)):
                if section in args.sections:
                    res[section] = fn(b, e, s, args)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(res, indent=1) + "\n")
        finally:
            b.close()
    table = markdown(res)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
