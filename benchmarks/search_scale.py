"""1:N search at 100k, 1M and 10M faces: index types against numpy and FAISS Flat, real LFW mates.

    .venv/bin/python benchmarks/search_scale.py                       # ~25 min on 2 cores, ~16 GB RAM
    .venv/bin/python benchmarks/search_scale.py --sizes 100000 --no-write   # quick look
    # 10M, exact peers and the engine only, previous setting beside auto (~7 min on a quiet 2-core box,
    # < 1.5 GB anonymous memory + 5 GB page cache for the gallery + the 5 GB re-rank file):
    .venv/bin/python benchmarks/search_scale.py --sizes 10000000 --kinds gmm --no-faiss-rows --no-numpy \
        --gallery-on-disk --tmp DIR --before 'IVF4096,PQ64x4fs;nprobe=1536;rerank=300' --out search_scale_10m

Gallery = M real LFW embeddings ("mates": the first image of every LFW person with >= 2 usable
images, from the cached faceledger pipeline embeddings: benchmarks/lfw_common.py, cache folder
benchmarks/results/cache or FACELEDGER_BENCH_CACHE) + N synthetic distractors of one of two kinds:

* `iso`: isotropic random unit vectors (the worst case for IVF: no structure).
* `gmm`: draws from a Gaussian mixture fitted to the LFW embeddings (k-means, 32 components, full
  covariance shrunk 10% to its trace), L2-normalised: distractors that look like real faces. The JSON
  records how alike their impostor scores are to real LFW impostor scores.

The 100k and 1M galleries are prefixes of the 10M one. Probes: the second image of P (default 1000)
of those people. For every index: build (train + add) time, bytes per face of the serialised index,
p50/p99 single-query latency (1 thread, k=10), batch throughput (one call, 2 threads), recall@10 vs
the exact top-10 (FAISS Flat) over the probes, and mate rank-1: the share of probes whose top
result is their mate, exact and under the index; retention = index rank-1 / exact rank-1 on the
probes where exact search ranks the mate first.

`engine auto` is faceledger's own FaissIndex with FACELEDGER_INDEX=auto: Flat below the cut-over
(200k), else IVF1024,PQ64x4fs codes in RAM (nprobe 512) + exact re-rank of 300 rows read from a
memory-mapped float32 file.
Prints a markdown table and writes benchmarks/results/search_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from faceledger.index import faiss_index  # noqa: E402
from faceledger.index.faiss_index import FaissIndex  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DIM = 128


def log(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f} {memory()}]", *args, file=sys.stderr,
          flush=True)


def memory() -> str:
    """This process's resident memory: anonymous (heap, arrays) and peak (incl. mapped file pages)."""
    try:
        with open("/proc/self/status") as fh:
            status = dict(line.split(":", 1) for line in fh)
        return f"anon {int(status['RssAnon'].split()[0]) / 2**20:.1f} GB, peak {int(status['VmHWM'].split()[0]) / 2**20:.1f} GB"
    except (OSError, KeyError, ValueError):
        return ""


# -- data ------------------------------------------------------------------------------------------

def lfw_mates(n_probes: int, seed: int):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from lfw_common import DEFAULT_LFW, load_embeddings  # the shared, cached pipeline embeddings

    e = load_embeddings(Path(os.environ.get("FACELEDGER_LFW", DEFAULT_LFW)))
    paths, emb, ok = np.asarray(e.paths), e.embeddings, ~e.failed & e.usable
    people: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        if ok[i]:
            people.setdefault(str(p).split("/")[0], []).append(i)
    pairs = [(rows[0], rows[1]) for _, rows in sorted(people.items()) if len(rows) >= 2]
    mates = np.stack([emb[a] for a, _ in pairs]).astype(np.float32)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(pairs), size=min(n_probes, len(pairs)), replace=False))
    probes = np.stack([emb[pairs[i][1]] for i in chosen]).astype(np.float32)
    probe_rows = {pairs[i][1] for i in chosen}
    fit = np.stack([emb[i] for i in range(len(paths)) if ok[i] and i not in probe_rows]).astype(np.float32)
    labels = np.array([str(p).split("/")[0] for p in paths])[ok]
    return mates, probes, chosen.astype(np.int64), fit, labels, emb[ok].astype(np.float32)


def fit_gmm(x: np.ndarray, k: int, seed: int):
    km = faiss.Kmeans(DIM, k, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    weights, means, chols = [], [], []
    for c in range(k):
        members = x[assign[:, 0] == c]
        if len(members) < 20:
            continue
        cov = np.cov(members, rowvar=False)
        cov = 0.9 * cov + 0.1 * np.trace(cov) / DIM * np.eye(DIM)
        weights.append(len(members))
        means.append(members.mean(axis=0))
        chols.append(np.linalg.cholesky(cov))
    w = np.array(weights, float)
    return w / w.sum(), np.array(means, np.float32), np.array(chols, np.float32)


def fill_distractors(out: np.ndarray, kind: str, gmm, seed: int) -> None:
    chunk = 500_000
    for start in range(0, len(out), chunk):
        rng = np.random.default_rng([seed, start])
        n = min(chunk, len(out) - start)
        if kind == "iso":
            v = rng.standard_normal((n, DIM), dtype=np.float32)
        else:
            weights, means, chols = gmm
            comp = rng.choice(len(weights), size=n, p=weights)
            z = rng.standard_normal((n, DIM), dtype=np.float32)
            v = np.empty((n, DIM), np.float32)
            for c in np.unique(comp):
                sel = comp == c
                v[sel] = means[c] + z[sel] @ chols[c].T
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start:start + n] = v


# -- measuring -------------------------------------------------------------------------------------

def timed(fn, queries: np.ndarray, n: int) -> tuple[float, float, float]:
    """p50 and p99 wall-clock ms of one query on 1 thread, and p50 of the CPU time that thread used.

    On a shared machine the wall clock includes time spent waiting for a core; the thread's CPU time
    does not (it still includes cache and memory-bandwidth contention)."""
    with threadpool_limits(1):
        faiss.omp_set_num_threads(1)
        fn(queries[:3])  # warm-up
        times, cpu = [], []
        for q in queries[:n]:
            t, c = time.perf_counter(), time.thread_time()
            fn(q[None, :])
            times.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
    return (float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3),
            float(np.percentile(cpu, 50) * 1e3))


def throughput(fn, queries: np.ndarray) -> float:
    with threadpool_limits(2):
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        fn(queries)
        return len(queries) / (time.perf_counter() - t)


def numpy_search(gallery: np.ndarray, k: int):
    def one_block(q: np.ndarray):
        scores = q @ gallery.T if len(q) > 1 else (gallery @ q[0])[None, :]
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1)
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)

    def search(q: np.ndarray):
        block = max(1, 2**27 // len(gallery))  # keep the score matrix near 512 MB
        parts = [one_block(q[i:i + block]) for i in range(0, len(q), block)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return search


def reranked(index, gallery: np.ndarray, depth: int, k: int = 10):
    """ANN shortlist of `depth`, rescored with the exact float32 rows (in RAM here; mmap in the engine)."""
    def search(q: np.ndarray):
        _, rows = index.search(q, depth)
        safe = np.maximum(rows, 0)
        scores = np.einsum("qkd,qd->qk", gallery[safe], q)
        scores[rows < 0] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, top, axis=1), np.take_along_axis(rows, top, axis=1)
    return search


def quality(found: np.ndarray, exact_ids: np.ndarray, mate_ids: np.ndarray) -> dict:
    r10 = float(np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact_ids)]))
    exact_r1 = exact_ids[:, 0] == mate_ids
    index_r1 = found[:, 0] == mate_ids
    retained = float(index_r1[exact_r1].mean()) if exact_r1.any() else float("nan")
    return {"recall_at_10": r10, "mate_rank1_exact": float(exact_r1.mean()),
            "mate_rank1_index": float(index_r1.mean()), "mate_retention": retained}


# -- the run ---------------------------------------------------------------------------------------

def run(args) -> dict:
    t_run = time.time()
    faiss.omp_set_num_threads(2)
    mates, probes, probe_mate_rows, fit, labels, real = lfw_mates(args.probes, args.seed)
    M = len(mates)
    log(f"{M} mates, {len(probes)} probes; fitting GMM on {len(fit)} LFW embeddings")
    gmm = fit_gmm(fit, 32, args.seed)
    sizes = sorted(args.sizes)
    n_max = max(sizes)
    rows: list[dict] = []
    data_notes: dict = {}
    rng = np.random.default_rng(args.seed)
    # real impostor reference: cosine between embeddings of different LFW people
    a, b = rng.integers(0, len(real), 200_000), rng.integers(0, len(real), 200_000)
    diff = labels[a] != labels[b]
    real_imp = np.einsum("ij,ij->i", real[a[diff]], real[b[diff]])
    data_notes["real_lfw_impostor_cosine"] = {"mean": float(real_imp.mean()), "sd": float(real_imp.std()),
                                              "p99.9": float(np.percentile(real_imp, 99.9))}
    genuine = np.einsum("ij,ij->i", probes, mates[probe_mate_rows])
    data_notes["genuine_cosine_probe_vs_mate"] = {"p5": float(np.percentile(genuine, 5)),
                                                  "p50": float(np.median(genuine)),
                                                  "min": float(genuine.min())}
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="faceledger-scale-"))
    for kind in args.kinds:
        if args.gallery_on_disk:  # page cache instead of anonymous memory: the OS may drop and re-read it
            gallery_all = np.lib.format.open_memmap(tmp / f"gallery-{kind}.npy", mode="w+", dtype=np.float32,
                                                    shape=(M + n_max, DIM))
        else:
            gallery_all = np.empty((M + n_max, DIM), np.float32)
        gallery_all[:M] = mates
        t = time.time()
        fill_distractors(gallery_all[M:], kind, gmm, args.seed)
        sample = gallery_all[M:M + 100_000]
        imp = (probes[:200] @ sample.T).ravel()
        data_notes[f"{kind}_impostor_cosine_vs_real_probes"] = {
            "mean": float(imp.mean()), "sd": float(imp.std()), "p99.9": float(np.percentile(imp, 99.9))}
        log(f"{kind}: {n_max:,} distractors in {time.time() - t:.0f}s; impostor cos vs probes "
            f"mean {imp.mean():.3f} sd {imp.std():.3f} (real LFW {real_imp.mean():.3f} / {real_imp.std():.3f})")
        ivf_trained = {}
        for n in sizes:
            gallery = gallery_all[:M + n]
            ntot = len(gallery)
            big = n >= 5_000_000
            nlat_exact = 20 if big else (60 if n >= 1_000_000 else 200)
            nlat = 200
            base = {"distractors": kind, "N": n, "gallery": ntot}

            def add_row(method, params, build_s, bpf, fn, found, extra_bpf="", lat_n=nlat, qps_q=probes, **kw):
                p50, p99, p50_cpu = timed(fn, probes, lat_n)
                qps = throughput(fn, qps_q)
                row = {**base, "method": method, "params": params, "build_s": round(build_s, 2),
                       "bytes_per_face": round(bpf, 1), "bytes_extra": extra_bpf, "p50_ms": round(p50, 3),
                       "p50_cpu_ms": round(p50_cpu, 3),
                       "p99_ms": round(p99, 3), "lat_n": lat_n, "qps_2t": round(qps, 1),
                       **quality(found, exact_ids, probe_mate_rows), "load1": os.getloadavg()[0],
                       "memory": memory(), **kw}
                rows.append(row)
                log(f"{kind} N={n:,} {method} {params}: p50 {p50:.2f} ms (CPU {p50_cpu:.2f}), {bpf:.1f} B/face, "
                    f"ret {row['mate_retention']:.4f}, R@10 {row['recall_at_10']:.3f}, {qps:.0f} QPS")
                return row

            # exact: FAISS Flat (also the ground truth) and numpy. faiss.knn is the brute-force kernel of
            # IndexFlatIP.search, run on the gallery array itself (an IndexFlatIP would copy 512 B/face).
            def flat(q):
                return faiss.knn(q, gallery, 10, metric=faiss.METRIC_INNER_PRODUCT)
            _, exact_ids = flat(probes)
            add_row("faiss Flat (exact)", "", 0.0, 512, flat, exact_ids, lat_n=nlat_exact)
            if args.numpy:
                np_fn = numpy_search(gallery, 10)
                np_found = np.concatenate([np_fn(probes[i:i + 100])[1] for i in range(0, len(probes), 100)])
                add_row("numpy fp32 scan (G@q + argpartition)", "", 0.0, 512, np_fn, np_found, lat_n=nlat_exact,
                        qps_q=probes[:200] if big else probes)
            # compressed indexes, each re-ranked exactly from float32 rows (IndexRefineFlat-like)
            configs = [("PQ32x4fs", ["exhaustive"], 100), ("PQ64x4fs", ["exhaustive"], 300)]
            if n >= 1_000_000:
                configs.append(("IVF1024,PQ64x4fs", ["nprobe=256", "nprobe=512"], 300))
            if kind == "gmm" and n == n_max:
                configs.insert(1, ("PQ32x4fs", ["exhaustive"], 1000))
            if not args.faiss_rows:
                configs = []
            for factory, param_list, rerank in configs:
                t = time.time()
                if factory.startswith("IVF"):
                    if factory not in ivf_trained:
                        ivf = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
                        ivf.train(gallery_all[:100_000])
                        ivf_trained[factory] = (faiss.serialize_index(ivf), time.time() - t)
                    index = faiss.deserialize_index(ivf_trained[factory][0])
                    train_s = ivf_trained[factory][1]
                    t = time.time()
                else:
                    index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
                    index.train(gallery_all[:100_000])
                    train_s = time.time() - t
                    t = time.time()
                for s in range(0, ntot, 1_000_000):
                    index.add(gallery[s:s + 1_000_000])
                build = train_s + time.time() - t
                bpf = faiss.serialize_index(index).size / ntot
                for params in param_list:
                    if params.startswith("nprobe"):
                        faiss.ParameterSpace().set_index_parameters(index, params)
                    fn = reranked(index, gallery, rerank) if rerank else (lambda ix: (lambda q: ix.search(q, 10)))(index)
                    label = f"{factory} + exact re-rank {rerank}" if rerank else factory
                    _, found = fn(probes)
                    add_row(label, params, build, bpf, fn, found,
                            extra_bpf="+512 (re-rank rows)" if rerank else "")
                del index
                gc.collect()
            # faceledger's own index through the same harness: FACELEDGER_INDEX=auto, and any other
            # settings asked for (e.g. the previous auto's explicit string, for a before/after row)
            for description in args.engine:
                if description == args.before and ntot < faiss_index.AUTO_FLAT_MAX:
                    continue  # below the cut-over the previous auto was Flat too: the auto row says it
                t = time.time()
                engine_index = FaissIndex(DIM, description, count_hint=ntot, vectors_path=tmp / f"{kind}-{n}.f32")
                ids = np.arange(ntot, dtype=np.int64)
                with engine_index:
                    for s in range(0, ntot, 1_000_000):
                        engine_index.add(ids[s:s + 1_000_000], gallery[s:s + 1_000_000])
                build = time.time() - t
                fn = (lambda ix: (lambda q: ix.search(q, 10)))(engine_index)
                _, found = fn(probes)
                extra = "" if engine_index.vectors is None else "+512 on disk (mmap)"
                name = "auto" if description == "auto" else args.engine_names.get(description, "explicit")
                add_row(f"faceledger engine index ({name})", engine_index.kind, build,
                        engine_index.bytes_in_ram / ntot, fn, found, extra_bpf=extra)
                if description == "auto" and "nprobe" in engine_index.kind:
                    inner = faiss.downcast_index(engine_index._index.index)
                    for nprobe in args.auto_nprobe:  # same built index, other search-time nprobe
                        faiss.ParameterSpace().set_index_parameters(inner, f"nprobe={nprobe}")
                        _, found = fn(probes)
                        add_row("faceledger engine index (auto, other nprobe)",
                                re.sub(r"nprobe=\d+", f"nprobe={nprobe}", engine_index.kind), build,
                                engine_index.bytes_in_ram / ntot, fn, found, extra_bpf=extra)
                if engine_index.vectors is not None:
                    engine_index.vectors._fh.close()
                    engine_index.vectors.path.unlink(missing_ok=True)
                del engine_index, fn
                gc.collect()
        del gallery_all
        gc.collect()
        (tmp / f"gallery-{kind}.npy").unlink(missing_ok=True)
    return {
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "faiss": faiss.__version__},
        "config": {"sizes": sizes, "kinds": args.kinds, "mates": M, "probes": len(probes), "seed": args.seed,
                   "auto_flat_max": faiss_index.AUTO_FLAT_MAX, "auto_compressed": faiss_index.AUTO_COMPRESSED,
                   "engine": args.engine, "faiss_rows": args.faiss_rows},
        "data": data_notes, "rows": rows, "wall_s": round(time.time() - t_run, 1),
        "loadavg_end": os.getloadavg(),
    }


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(result: dict) -> str:
    head = ("| distractors | N | method | params | build s | B/face | p50 ms | p50 CPU ms | p99 ms | QPS 2T | R@10 | "
            "mate r1 exact | mate r1 index | retention | load |\n|" + "---|" * 15)
    lines = [head]
    for r in result["rows"]:
        bpf = f"{r['bytes_per_face']:g}" + (f" {r['bytes_extra']}" if r["bytes_extra"] else "")
        lines.append(f"| {r['distractors']} | {r['N']:,} | {r['method']} | {r['params']} | {r['build_s']:.1f} | "
                     f"{bpf} | {r['p50_ms']:.2f} | {r.get('p50_cpu_ms', float('nan')):.2f} | {r['p99_ms']:.2f} | {r['qps_2t']:,.0f} | {r['recall_at_10']:.3f} | "
                     f"{r['mate_rank1_exact']:.4f} | {r['mate_rank1_index']:.4f} | {r['mate_retention']:.4f} | "
                     f"{r['load1']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--kinds", nargs="+", default=["gmm", "iso"], choices=["gmm", "iso"])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tmp", help="folder for the engine index's re-rank file (default: a temp dir)")
    parser.add_argument("--engine", nargs="+", default=["auto"], metavar="SETTING",
                        help="engine index settings to measure (default: auto); e.g. the previous auto's string")
    parser.add_argument("--before", default=None, metavar="SETTING",
                        help="also measure this explicit engine setting, labelled 'auto before' (e.g. "
                             "'IVF1024,PQ64x4fs;nprobe=512;rerank=300')")
    parser.add_argument("--no-faiss-rows", dest="faiss_rows", action="store_false",
                        help="skip the plain FAISS PQ/IVF rows (exact peers and engine rows only)")
    parser.add_argument("--gallery-on-disk", action="store_true",
                        help="hold the synthetic gallery in a memory-mapped file in --tmp (10M: 5 GB of page "
                             "cache instead of anonymous memory)")
    parser.add_argument("--auto-nprobe", type=int, nargs="*", default=[],
                        help="also measure the engine's auto index at these nprobe values (no rebuild)")
    parser.add_argument("--no-numpy", dest="numpy", action="store_false", help="skip the numpy peer row")
    parser.add_argument("--out", default="search_scale", help="results name: benchmarks/results/OUT.{json,md}")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.engine_names = {}
    if args.before:
        args.engine = [args.before, *args.engine]
        args.engine_names[args.before] = "auto before"
    log(f"start; loadavg {os.getloadavg()}")
    result = run(args)
    table = markdown(result)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1))
        (RESULTS / f"{args.out}.md").write_text(table)
        log(f"wrote {RESULTS / (args.out + '.json')}")


if __name__ == "__main__":
    main()
