"""How many real mates an IVF coarse quantizer keeps against the share of codes a query scans.

    PYTHONPATH=src .venv/bin/python benchmarks/ivf_coarse_recall.py 1000000 "1024:uniform100000|4096:uniform400000"

Same gallery as search_scale.py (LFW mates + `gmm` distractors, N given). Each config is
NLIST:SAMPLE[:sph], SAMPLE = first100k (the first 100k gallery rows, which hold the real faces) or
uniformN (a uniform random sample of N rows, as the engine trains). For the probes whose exact top-1 is
their mate, it reports, per nprobe, the share whose mate sits in a probed list (coarse recall: an upper
bound on IVF retention, before any code error) and the mean share of the gallery those lists hold
(what a query scans). One JSON line per config on stdout.
"""
import os
import sys
import time
import json
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import faiss
import search_scale as ss
faiss.omp_set_num_threads(2)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
configs = sys.argv[2].split("|") if len(sys.argv) > 2 else ["1024:first100k"]
mates, probes, pm, fit, labels, real = ss.lfw_mates(1000, 7)
gmm = ss.fit_gmm(fit, 32, 7)
M = len(mates)
G = np.empty((M + N, 128), np.float32)
G[:M] = mates
ss.fill_distractors(G[M:], "gmm", gmm, 7)
_, nearest = faiss.knn(probes, G, 1, metric=faiss.METRIC_INNER_PRODUCT)
rel = nearest[:, 0] == pm
print(f"N={N:,} exact r1 {rel.mean():.3f} ({rel.sum()})", flush=True)
out = []
for cfg in configs:
    parts = cfg.split(":")
    nlist, sample = int(parts[0]), parts[1]
    rng = np.random.default_rng(1)
    if sample == "first100k":
        tr = G[:100_000]
    elif sample.startswith("uniform"):
        n = int(sample[7:] or 100_000)
        tr = G[np.sort(rng.choice(len(G), min(n, len(G)), replace=False))]
    t = time.time()
    q = faiss.IndexFlatIP(128)
    ivf = faiss.IndexIVFFlat(q, 128, nlist, faiss.METRIC_INNER_PRODUCT)
    if "sph" in parts[2:]:
        ivf.cp.spherical = True
    ivf.cp.max_points_per_centroid = 10_000
    ivf.train(tr)
    tt = time.time() - t
    _, a = ivf.quantizer.search(G, 1)
    sizes = np.bincount(a[:, 0], minlength=nlist)
    mate_list = a[pm, 0]
    _, order = ivf.quantizer.search(probes, nlist)
    rank = np.argmax(order == mate_list[:, None], axis=1)
    cum = np.cumsum(sizes[order], axis=1) / len(G)
    res = {"nlist": nlist, "sample": sample, "opts": parts[2:], "train_s": round(tt, 1), "rows": []}
    for frac in (1/16, 1/8, 3/16, 1/4, 5/16, 3/8, 1/2):
        npb = int(nlist * frac)
        rec = float((rank[rel] < npb).mean())
        scanned = float(cum[:, npb - 1].mean())
        res["rows"].append((npb, round(rec, 4), round(scanned, 3)))
    # nprobe needed per probe for mate; scanned share needed for 0.995 / 0.997
    need = cum[np.arange(len(rank)), rank][rel]
    res["scan_for_0.995"] = round(float(np.quantile(need, 0.995)), 3)
    res["scan_for_0.997"] = round(float(np.quantile(need, 0.997)), 3)
    print(json.dumps(res), flush=True)
