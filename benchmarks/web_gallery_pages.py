"""Latency of the gallery's people pages in the web app at 1k and 100k subjects.

    .venv/bin/python benchmarks/web_gallery_pages.py                 # about a minute on 2 cores
    .venv/bin/python benchmarks/web_gallery_pages.py --sizes 1000 --no-write   # quick look

For each size, a fresh temporary data directory (SQLite) holds one gallery of N subjects, each with two
images of one face (synthetic, random unit vectors), inserted straight into the store's tables in bulk
(what enrolment would store, without ledger entries: the pages read only subjects, images and faces).
The pages are requested in this process through FastAPI's TestClient, signed in as an admin (who sees
the face thumbnails' links), --repeat times each after one warm-up:

- first page:   /galleries/g                      (48 people, ordered by name, with the total)
- deep page:    /galleries/g?offset=N-48          (the last page)
- name search:  /galleries/g?q=...                (a substring matching about 1 subject in 1,000)
- no match:     /galleries/g?q=nobody-like-this
- person page:  /galleries/g/people/ID            (one subject's images, provenance once per image)
- enrol, no face: POST /galleries/g/enrol, 10 small noise PNGs in 10 folders (one folder per subject),
                  all refused "no face found": the route's cost around the models
- enrol, 1 face:  POST /galleries/g/enrol, one portrait (tests/data/open-faces, a pixel changed each time
                  so it is never a duplicate), enrolled: store, ledger, index update and index file

The 1k gallery is the peer: the ratio column says how much slower the same page is at N subjects.
Prints a markdown table, writes benchmarks/results/web_gallery_pages.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CHUNK = 5000


def fill(engine, n: int, seed: int) -> None:
    """N subjects "Person 000000 <word>" with two images and one face each, in bulk."""
    from sqlalchemy import insert, select

    from faceledger.store import FaceRecord, Gallery, ImageRecord, Subject

    rng = np.random.default_rng(seed)
    words = ["alder", "birch", "cedar", "elm", "hazel", "larch", "maple", "oak", "rowan", "yew"]
    now = datetime.now(UTC)
    with engine.ctx.writing() as session:
        gallery = session.execute(select(Gallery).where(Gallery.name == "g")).scalar_one()
        gid = gallery.id
        for start in range(0, n, CHUNK):
            count = min(CHUNK, n - start)
            session.execute(insert(Subject), [
                {"gallery_id": gid, "name": f"Person {i:06d} {words[i % len(words)]}", "created_at": now}
                for i in range(start, start + count)])
        ids = session.execute(select(Subject.id).where(Subject.gallery_id == gid).order_by(Subject.id)
                              ).scalars().all()
        for start in range(0, len(ids), CHUNK):
            block = ids[start:start + CHUNK]
            session.execute(insert(ImageRecord), [
                {"gallery_id": gid, "subject_id": sid, "sha256": f"{sid:032x}{k:032x}",
                 "name": f"/data/photos/{sid}/{k}.jpg", "width": 250, "height": 250, "source": "benchmark",
                 "legal_basis": "synthetic", "enrolled_by": "bench", "enrolled_at": now, "retain_until": None}
                for sid in block for k in range(2)])
        image_rows = session.execute(select(ImageRecord.id, ImageRecord.subject_id).where(
            ImageRecord.gallery_id == gid)).all()
        for start in range(0, len(image_rows), CHUNK):
            vectors = rng.standard_normal((len(image_rows[start:start + CHUNK]), 128)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            session.execute(insert(FaceRecord), [
                {"image_id": iid, "subject_id": sid, "gallery_id": gid, "box": [60, 60, 190, 190],
                 "landmarks": [], "detector_score": 0.9, "quality": {}, "embedding": vec.tobytes(),
                 "model_id": engine.model_id, "template_id": "arcface-5pt-112-v1"}
                for (iid, sid), vec in zip(image_rows[start:start + CHUNK], vectors, strict=True)])
        gallery.generation += 1
        session.commit()


def noise_png(seed: int, side: int = 32) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def portrait(seed: int) -> bytes:
    import io

    from PIL import Image

    image = np.array(Image.open(REPO / "tests" / "data" / "open-faces" / "ardern_2018.jpg").convert("RGB"))
    image[0, 0] = [seed % 256, (seed // 256) % 256, 7]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def timed_posts(client, url: str, bodies: list[list[tuple[str, bytes]]], mode: str) -> dict:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/galleries").text).group(1)
    times = []
    for i, files in enumerate(bodies):
        data = {"csrf": csrf, "source": "benchmark", "legal_basis": "synthetic", "mode": mode,
                "subject": "Portrait", "paths": [path for path, _ in files]}
        t0 = time.perf_counter()
        response = client.post(url, data=data, files=[("images", (Path(p).name, b, "image/png")) for p, b in files],
                               headers={"Accept": "application/json"})
        if i:  # the first is the warm-up
            times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2), "people_shown": 0}


def signed_in(engine):
    from fastapi.testclient import TestClient

    from faceledger.api import create_app

    token = engine.add_user("bench-admin", role="admin")[1]
    client = TestClient(create_app(engine=engine), headers={"Accept": "text/html"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    return client


def timed(client, url: str, repeat: int) -> dict:
    response = client.get(url)  # warm-up (and the check that the page answers)
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2), "people_shown": response.text.count('class="card person"')}


def run_size(n: int, repeat: int, seed: int) -> dict:
    os.environ.setdefault("FACELEDGER_RATE_LIMIT_PER_MINUTE", "0")
    from tests.conftest import open_test_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_test_engine(Path(tmp) / "home", rate_limit_per_minute=0)
        engine.create_gallery("g")
        t0 = time.perf_counter()
        fill(engine, n, seed)
        fill_s = time.perf_counter() - t0
        client = signed_in(engine)
        last = engine.list_subjects("g", limit=1, offset=n - 1)["subjects"][0]
        word = f"{n // 2:06d}"[:3]  # "Person 050..." style: matches 1 in 1,000 names
        pages = {
            "first page": "/galleries/g",
            "deep page": f"/galleries/g?offset={max(0, n - 48)}",
            "name search": f"/galleries/g?q={word}",
            "no match": "/galleries/g?q=nobody-like-this",
            "person page": f"/galleries/g/people/{last['subject_id']}",
        }
        rows = {name: {"url": url, **timed(client, url, repeat)} for name, url in pages.items()}
        noise = [[(f"batch/person-{r}-{i}/{i}.png", noise_png(r * 100 + i)) for i in range(10)]
                 for r in range(repeat + 1)]
        rows["enrol, no face"] = {"url": "/galleries/g/enrol", **timed_posts(client, "/galleries/g/enrol", noise,
                                                                             "folders")}
        faces = [[("portrait.png", portrait(r))] for r in range(repeat + 1)]
        rows["enrol, 1 face"] = {"url": "/galleries/g/enrol", **timed_posts(client, "/galleries/g/enrol", faces,
                                                                            "subject")}
        engine.close()
    return {"subjects": n, "fill_s": round(fill_s, 1), "pages": rows}


def markdown(result: dict) -> str:
    sizes = result["runs"]
    peer = sizes[0]
    head = "| page | " + " | ".join(f"{r['subjects']:,} subjects: median ms (min–max)" for r in sizes)
    head += " | ratio to " + f"{peer['subjects']:,} |\n|---|" + "---|" * (len(sizes) + 1) + "\n"
    lines = []
    for page in peer["pages"]:
        cells = [f"{r['pages'][page]['median_ms']} ({r['pages'][page]['min_ms']}–{r['pages'][page]['max_ms']})"
                 for r in sizes]
        ratio = sizes[-1]["pages"][page]["median_ms"] / max(0.01, peer["pages"][page]["median_ms"])
        lines.append(f"| {page} | " + " | ".join(cells) + f" | {ratio:.1f}× |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated subject counts (first: the peer)")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="web_gallery_pages")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"{n:,} subjects ...", file=sys.stderr, flush=True)
        runs.append(run_size(n, args.repeat, args.seed))
    result = {"benchmark": "web_gallery_pages", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_1m": round(os.getloadavg()[0], 2)},
              "repeat": args.repeat, "runs": runs}
    table = markdown(result)
    print(table)
    print(f"load average (1 min) at the end: {result['machine']['load_avg_1m']}")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1))
        (RESULTS / f"{args.out}.md").write_text(table)


if __name__ == "__main__":
    main()
