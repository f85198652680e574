"""Open-set calibration (v2) on LFW: does a search threshold keep its FPIR promise, and what does it cost?

    FACELEDGER_BENCH_CACHE=/path/to/cache .venv/bin/python benchmarks/openset_calibration.py

Protocol (as docs/accuracy.md "Open-set calibration (v2)" and the reference analysis), seed 0:
- 1,000 people with >= 2 usable images: after a seeded shuffle of their images, the first is enrolled
  and the second searched (mated searches);
- 1,000 people with exactly one image: never enrolled, each searched once (non-mated searches);
- distractors: every image of the remaining people, in order, until the gallery holds N faces
  (a subject's several images are separate faces; LFW runs out at ~8k).
FNIR counts a mated search as a miss unless its mate is ranked first at or above the threshold.

Methods, at target FPIR 0.1 / 0.01 / 0.001 and N faces:
- packaged-old: the landed v1 histogram (label noise included), empirical threshold (Calibration);
- packaged-clean: OpenSetCalibration(clean packaged sample) - histogram + GPD tail bound;
- gallery-only: OpenSetCalibration(None, gallery_sample(gallery faces, subject ids));
- combined: OpenSetCalibration(clean packaged, gallery sample);
- oracle: the empirical (1 - FPIR) quantile of the non-mated top scores (perfect calibration).
Note: the packaged sample holds the first image of every LFW person, so the non-mated searches are not
held out from it; the held-out section fits on half the identities and checks FMR on the other half.

Scale: LFW gallery + face-like synthetic distractors (Gaussian mixture fitted to LFW, as
benchmarks/search_scale.py) to 100k and 1M faces: thresholds, whether supported, and observed FPIR / FNIR.

Prints markdown tables and writes benchmarks/results/openset_calibration.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

import openset_protocol as op
from openset_common import MODEL, REPO, bc, common, log

from faceledger.calibration import (
    Calibration,
    OpenSetCalibration,
    gallery_sample,
    packaged_calibration,
    score_histogram,
    wilson_interval,
)

FPIRS = (0.1, 0.01, 0.001)


def old_packaged() -> Calibration:
    """The landed v1 histogram: the clean one with the removed label-noise pairs put back."""
    clean = packaged_calibration(MODEL)
    counts = clean.counts.copy()
    with open(REPO / "src" / "faceledger" / "data" / f"calibration-{MODEL}.removed.csv") as fh:
        for row in csv.DictReader(fh):
            counts += score_histogram(np.array([float(row["score"])]))
    return Calibration(calibration_id="lfw-1perid-sface-2021dec-v1", model_id=MODEL, bin_width=clean.bin_width,
                       counts=counts)


def split(e, seed: int):
    """openset_protocol.split's rows as this script uses them."""
    s = op.split(e, seed)
    return s["people"], s["mated"], s["enrol"], s["probe"], s["nonmated_rows"], s["distractors"]


def top1(probes: np.ndarray, gallery: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    best_s = np.empty(len(probes), np.float32)
    best_i = np.empty(len(probes), np.int64)
    for s in range(0, len(probes), block):
        best_s[s:s + block] = -2
        best_i[s:s + block] = -1
        for g in range(0, len(gallery), 200_000):
            sc = probes[s:s + block] @ gallery[g:g + 200_000].T
            i = sc.argmax(axis=1)
            v = sc[np.arange(len(i)), i]
            better = v > best_s[s:s + block]
            best_s[s:s + block][better] = v[better]
            best_i[s:s + block][better] = i[better] + g
    return best_s, best_i


def rates(threshold, mated_s, mated_ok, non_s, non_raw=None) -> dict:
    """FPIR on the non-mated searches (label-noise searches removed), FNIR on the mated ones."""
    k = int((non_s >= threshold).sum())
    lo, hi = wilson_interval(k, len(non_s))
    fnir = 1 - float(np.mean(mated_ok & (mated_s >= threshold)))
    out = {"threshold": round(float(threshold), 4), "observed_fpir": k / len(non_s), "fp": k,
           "nonmated": len(non_s), "fpir_wilson95": [lo, hi], "fnir": fnir}
    if non_raw is not None:
        out["fp_raw"] = int((non_raw >= threshold).sum())
        out["observed_fpir_raw"] = out["fp_raw"] / len(non_raw)
    return out


def label_noise(e, probe_rows, hit_rows, scores) -> np.ndarray:
    """Non-mated searches whose top hit is the same person under another name (the build's rules)."""
    return np.array([bc.removal_reason(float(s), e.paths[a].split("/")[0], e.paths[b].split("/")[0]) is not None
                     for a, b, s in zip(probe_rows, hit_rows, scores)], dtype=bool)


def open_set(e, args) -> dict:
    _, _, enrol, probe, nonmated_rows, distractors = split(e, args.seed)
    x = e.embeddings.astype(np.float32)
    ids = e.identities
    old = old_packaged()
    clean = packaged_calibration(MODEL)
    packaged = OpenSetCalibration(clean, None)
    out_rows = []
    max_n = len(enrol) + len(distractors)
    for n in [s for s in args.sizes if s <= max_n] + ([max_n] if max_n not in args.sizes else []):
        rows = np.array(enrol + distractors[:n - len(enrol)])
        g, gid = x[rows], ids[rows]
        mated_s, mated_i = top1(x[np.array(probe)], g)
        mated_ok = mated_i == np.arange(len(enrol))
        non_raw, non_i = top1(x[np.array(nonmated_rows)], g)
        noisy = label_noise(e, nonmated_rows, rows[non_i], non_raw)
        non_s = non_raw[~noisy]
        t = time.time()
        sample = gallery_sample(g, gid, model_id=MODEL, seed=args.seed)
        sample_s = time.time() - t
        gal = OpenSetCalibration(None, sample)
        comb = OpenSetCalibration(clean, sample)
        log(f"N={n}: gallery sample {sample.pairs:,} pairs of {sample.subjects} subjects in {sample_s:.1f}s; "
            f"duplicates excluded {sample.duplicates_excluded}")
        for f in FPIRS:
            oracle_t = float(np.quantile(non_s, 1 - f, method="higher")) + 1e-6
            row = {"N": n, "target_fpir": f, "gallery_pairs": sample.pairs, "gallery_subjects": sample.subjects,
                   "duplicates_excluded": sample.duplicates_excluded, "label_noise_searches": int(noisy.sum()),
                   "oracle": rates(oracle_t, mated_s, mated_ok, non_s, non_raw)}
            t_old = old.threshold_for_fpir(f, n)
            row["packaged-old"] = {**rates(t_old.score, mated_s, mated_ok, non_s, non_raw),
                                   "predicted_fpir": float(1 - (1 - t_old.predicted_fmr) ** n),
                                   "supported": t_old.supported, "extrapolation": 1.0}
            for name, cal in (("packaged-clean", packaged), ("gallery-only", gal), ("combined", comb)):
                th = cal.threshold_for_fpir(f, n)
                row[name] = {**rates(th.score, mated_s, mated_ok, non_s, non_raw),
                             "predicted_fpir": th.predicted_fpir,
                             "supported": th.supported, "extrapolation": th.extrapolation_factor,
                             "binding": th.binding, "explanation": th.explanation}
            out_rows.append(row)
    return {"mated": len(enrol), "nonmated": len(nonmated_rows), "max_faces": max_n, "rows": out_rows}


def held_out(e, args) -> dict:
    """Fit on half the identities (first image each, cleaned), check FMR on the other half."""
    _, x = bc.first_images(e)
    paths, _ = bc.first_images(e)
    rng = np.random.default_rng(args.seed + 1)
    perm = rng.permutation(len(x))
    halves = perm[: len(x) // 2], perm[len(x) // 2:]
    cals = []
    for h in halves:
        hp = [paths[i] for i in h]
        high: list = []
        raw, _, _ = bc.cross_pair_histogram(x[h], collect=high)
        counts, removed = bc.clean_pairs(raw, hp, high)
        cals.append((Calibration(calibration_id="half", model_id=MODEL, bin_width=0.0005, counts=counts),
                     Calibration(calibration_id="half-raw", model_id=MODEL, bin_width=0.0005, counts=raw),
                     len(removed)))
    fit_cal, _, fit_removed = cals[0]
    test_clean, test_raw, test_removed = cals[1]
    oc = OpenSetCalibration(fit_cal, None)
    rows = []
    for p in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        th = oc.threshold_for_fmr(p)
        r = {"target_fmr": p, "threshold": th.score, "predicted_fmr": th.predicted_fmr,
             "extrapolation": th.extrapolation_factor, "supported": th.supported}
        for name, test in (("test_clean", test_clean), ("test_raw", test_raw)):
            k = test.fmr(th.score).impostors_at_or_above
            lo, hi = wilson_interval(k, test.total)
            r[name] = {"count": k, "pairs": test.total, "fmr": k / test.total, "wilson95": [lo, hi]}
        rows.append(r)
    return {"fit_people": len(halves[0]), "fit_pairs": fit_cal.total, "fit_removed": fit_removed,
            "test_people": len(halves[1]), "test_pairs": test_clean.total, "test_removed": test_removed,
            "rows": rows}


def shifted(e, args, k: int = 16) -> dict:
    """A look-alike sub-population of LFW: the k-means cluster (first images, spherical k-means) whose
    own impostor tail sits highest. Its people are split in half; the gallery sample is made from every
    image of one half, thresholds from packaged v2 alone and combined, FMR observed on the other half."""
    import faiss

    paths, first = bc.first_images(e)
    km = faiss.Kmeans(first.shape[1], k, niter=25, seed=args.seed, spherical=True, verbose=False)
    km.train(first)
    assign = km.index.search(first, 1)[1][:, 0]
    clean = packaged_calibration(MODEL)
    t4 = clean.threshold_for_fmr(1e-4).score
    ratio = []
    for c in range(k):
        v = first[assign == c]
        sc = (v @ v.T)[np.triu_indices(len(v), 1)]
        ratio.append(float(np.mean(sc >= t4)) / 1e-4)
    c = int(np.argmax(ratio))
    names = sorted(p.split("/")[0] for p, a in zip(paths, assign) if a == c)
    rng = np.random.default_rng(args.seed + 2)
    rng.shuffle(names)
    halves = names[: len(names) // 2], names[len(names) // 2:]
    ok = ~e.failed
    ids = e.identities

    def faces(group):
        rows = np.array([i for i in range(len(e.paths)) if ok[i] and ids[i] in set(group)])
        return e.embeddings[rows].astype(np.float32), ids[rows]

    ga, ia = faces(halves[0])
    gb, ib = faces(halves[1])
    sample = gallery_sample(ga, ia, model_id=MODEL, max_pairs=10**8)
    test = gallery_sample(gb, ib, model_id=MODEL, max_pairs=10**8)
    test_cal = test.calibration()
    packaged = OpenSetCalibration(clean, None)
    comb = OpenSetCalibration(clean, sample)
    rows = []
    for p in (1e-3, 1e-4, 1e-5):
        row = {"target_fmr": p}
        for name, cal in (("packaged-clean", packaged), ("combined", comb)):
            th = cal.threshold_for_fmr(p)
            kk = test_cal.fmr(th.score).impostors_at_or_above
            lo, hi = wilson_interval(kk, test_cal.total)
            row[name] = {"threshold": th.score, "observed_fmr": kk / test_cal.total, "count": kk,
                         "wilson95": [lo, hi], "binding": th.binding, "extrapolation": th.extrapolation_factor}
        rows.append(row)
    return {"clusters": k, "cluster": c, "cluster_fmr_at_packaged_1e-4_over_target": round(ratio[c], 2),
            "people": len(names), "fit_faces": len(ga), "fit_pairs": sample.pairs, "test_faces": len(gb),
            "test_pairs": test.pairs, "rows": rows}


def scale(e, args) -> dict:
    import search_scale as ss  # faiss k-means for the mixture

    _, _, enrol, probe, nonmated_rows, distractors = split(e, args.seed)
    x = e.embeddings.astype(np.float32)
    ids = e.identities
    real_rows = np.array(enrol + distractors)
    fit = x[~e.failed]
    gmm = ss.fit_gmm(fit, 32, args.seed)
    clean = packaged_calibration(MODEL)
    packaged = OpenSetCalibration(clean, None)
    out = []
    biggest = max(args.scale_sizes)
    synth = np.empty((biggest - len(real_rows), x.shape[1]), np.float32)
    ss.fill_distractors(synth, "gmm", gmm, args.seed)
    mated_p = x[np.array(probe)]
    non_p = x[np.array(nonmated_rows)]
    for n in args.scale_sizes:
        g = np.concatenate([x[real_rows], synth[: n - len(real_rows)]])
        gid = np.concatenate([ids[real_rows], np.array([f"synthetic-{i}" for i in range(n - len(real_rows))])])
        t = time.time()
        mated_s, mated_i = top1(mated_p, g)
        non_raw, non_i = top1(non_p, g)
        real_hit = non_i < len(real_rows)
        noisy = np.zeros(len(non_raw), bool)
        noisy[real_hit] = label_noise(e, [nonmated_rows[k] for k in np.nonzero(real_hit)[0]],
                                      real_rows[non_i[real_hit]], non_raw[real_hit])
        non_s = non_raw[~noisy]
        mated_ok = mated_i == np.arange(len(enrol))
        search_s = time.time() - t
        t = time.time()
        sample = gallery_sample(g, gid, model_id=MODEL, seed=args.seed)
        sample_s = time.time() - t
        comb = OpenSetCalibration(clean, sample)
        log(f"scale N={n}: search {search_s:.0f}s, gallery sample {sample_s:.1f}s")
        for f in FPIRS:
            row = {"N": n, "target_fpir": f, "gallery_sample_seconds": round(sample_s, 2)}
            for name, cal in (("packaged-clean", packaged), ("combined", comb)):
                th = cal.threshold_for_fpir(f, n)
                row[name] = {**rates(th.score, mated_s, mated_ok, non_s, non_raw),
                             "predicted_fpir": th.predicted_fpir,
                             "supported": th.supported, "extrapolated": th.extrapolated,
                             "extrapolation": th.extrapolation_factor, "binding": th.binding,
                             "explanation": th.explanation}
            out.append(row)
    return {"distractors": "gmm (32 components fitted to LFW, as search_scale.py)", "rows": out}


def pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def markdown(result: dict) -> str:
    lines = [("| N faces | target FPIR | method | threshold | predicted FPIR | observed FPIR (95 % Wilson) | "
             "with label noise | FNIR | oracle FNIR (thr) | note |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["open_set"]["rows"]:
        o = r["oracle"]
        for m in ("packaged-old", "packaged-clean", "gallery-only", "combined"):
            v = r[m]
            lo, hi = v["fpir_wilson95"]
            note = [] if v.get("supported", True) else ["not supported"]
            if v.get("extrapolation", 1) > 1:
                note.append(f"×{v['extrapolation']:.0f} extrapolated")
            lines.append(f"| {r['N']:,} | {r['target_fpir']:g} | {m} | {v['threshold']:.4f} | "
                         f"{pct(v['predicted_fpir'])} | {pct(v['observed_fpir'])} ({v['fp']}/{v['nonmated']}; "
                         f"{pct(lo)} – {pct(hi)}) | {v['fp_raw']} | {pct(v['fnir'])} | {pct(o['fnir'])} ({o['threshold']:.3f}) | {', '.join(note)} |")
    lines += ["", ("| fit on half the people: target FMR | threshold | predicted FMR | extrapolation | "
              "observed FMR, other half (count) | observed, other half with its label noise |"),
              "|---|---|---|---|---|---|"]
    h = result["held_out"]
    for r in h["rows"]:
        c, w = r["test_clean"], r["test_raw"]
        lines.append(f"| {r['target_fmr']:g} | {r['threshold']:.4f} | {r['predicted_fmr']:.2g} | "
                     f"×{r['extrapolation']:.0f} | {c['fmr']:.2g} ({c['count']}) | {w['fmr']:.2g} ({w['count']}) |")
    if "shifted" in result:
        sh = result["shifted"]
        lines += ["", (f"Look-alike sub-population (cluster {sh['cluster']} of {sh['clusters']}, {sh['people']} people; "
                  f"gallery sample {sh['fit_pairs']:,} pairs, test {sh['test_pairs']:,} pairs)"), "",
                  "| target FMR | packaged v2: threshold, observed FMR (count) | combined: threshold, observed FMR (count) |",
                  "|---|---|---|"]
        for r in sh["rows"]:
            a, b = r["packaged-clean"], r["combined"]
            lines.append(f"| {r['target_fmr']:g} | {a['threshold']:.4f}, {a['observed_fmr']:.2g} ({a['count']}) | "
                         f"{b['threshold']:.4f}, {b['observed_fmr']:.2g} ({b['count']}) |")
    if "scale" in result:
        lines += ["", ("| N faces (LFW + synthetic) | target FPIR | method | threshold | supported | extrapolated | "
                  "predicted FPIR | observed FPIR | with label noise | FNIR |"), "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["scale"]["rows"]:
            for m in ("packaged-clean", "combined"):
                v = r[m]
                lines.append(f"| {r['N']:,} | {r['target_fpir']:g} | {m} | {v['threshold']:.4f} | {v['supported']} | "
                             f"×{v['extrapolation']:.0f} | {pct(v['predicted_fpir'])} | {pct(v['observed_fpir'])} "
                             f"({v['fp']}/{v['nonmated']}) | {v['fp_raw']} | {pct(v['fnir'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_lfw_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--scale-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "openset_calibration.json")
    args = parser.parse_args()
    e = common.load_embeddings(args.lfw, det_threshold=0.7, workers=args.workers)
    result = {"model_id": MODEL, "seed": args.seed, "open_set": open_set(e, args)}
    log("held-out check")
    result["held_out"] = held_out(e, args)
    log("look-alike sub-population")
    result["shifted"] = shifted(e, args)
    if not args.no_scale:
        result["scale"] = scale(e, args)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
