"""Helpers for the fault tests (tests/test_faults_*.py) and their long versions (benchmarks/faults_*.py).

Images: the committed LFW sample, re-encoded with a small seeded change (brightness, a mirror, a JPEG
quality), so every copy hashes differently and still holds one usable face. Processes: psutil looks for
whatever a killed command left running.
"""

from __future__ import annotations

import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
from PIL import Image, ImageEnhance

from .servers import free_port

DATA_DIR = Path(__file__).parent / "data"
LFW_DIR = DATA_DIR / "lfw"
CLI = [sys.executable, "-c", "from faceledger.cli import main; main()"]


def varied_images(target: Path, count: int, *, seed: int = 0) -> list[Path]:
    """`count` distinct JPEGs under target/<person>/ (subject from folder), each one face of that person."""
    sources = sorted(LFW_DIR.rglob("*.jpg"))
    rng = random.Random(seed)
    made: list[Path] = []
    for n in range(count):
        source = sources[n % len(sources)]
        round_ = n // len(sources)
        with Image.open(source) as img:
            img = img.convert("RGB")
            if round_ % 2:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = ImageEnhance.Brightness(img).enhance(0.85 + 0.3 * rng.random())
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=80 + rng.randrange(15))
        folder = target / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{source.stem}-v{round_}-{n}.jpg"
        path.write_bytes(buffer.getvalue())
        made.append(path)
    return made


def cli_env(home: Path, **extra: str) -> dict:
    env = {**os.environ, "FACELEDGER_HOME": str(home), "FACELEDGER_OPERATOR": "fault-tester", **extra}
    env.pop("FACELEDGER_TOKEN", None)
    return env


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def survivors(pids: list[int], marker: str, *, wait_s: float = 20.0) -> list[str]:
    """Processes among `pids` (or any whose command line holds `marker`) still alive after at most wait_s.

    A bounded wait, not a timed assertion: a worker polls for its parent's death, so it may take a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                cmdline = " ".join(proc.info["cmdline"] or [])
                if proc.pid in pids or (marker and marker in cmdline and proc.pid != os.getpid()):
                    alive.append(f"{proc.pid}: {cmdline[:200]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def reap(lines: list[str]) -> None:
    """Kill what a failed check found (by pid), so one failing test does not leave processes behind."""
    for line in lines:
        try:
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


def sqlite_count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()


# --- kill anywhere: one seeded cycle of killed commands and reruns (tests/test_faults_kill.py) ----------

GALLERY = "g"
ENROLL_ARGS = ["--gallery", GALLERY, "--subject-from-folder", "--source", "fault test", "--legal-basis", "research"]


def _ledger_count(db: Path, action: str | None = None) -> int:
    where = f" where action = '{action}'" if action else ""
    return sqlite_count(db, f"select count(*) from ledger{where}")


def _home_processes(home: Path) -> list[int]:
    """Every live process whose environment names this data directory (the CLI and anything it spawned)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.environ().get("FACELEDGER_HOME") == str(home):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def orphans(home: Path, pids: list[int], *, wait_s: float = 20.0) -> list[str]:
    """Processes left by killed commands: their descendants, or anything still running on `home`."""
    deadline = time.monotonic() + wait_s
    while True:
        left = survivors(pids, "", wait_s=0) + [f"{pid}: FACELEDGER_HOME={home}" for pid in _home_processes(home)
                                                  if pid not in pids]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def kill_when(process: subprocess.Popen, *, ready, rng: random.Random, guard_s: float) -> dict:
    """SIGKILL `process` once ready() (plus a seeded extra delay), or at a seeded time; returns what happened."""
    start_t = time.monotonic()
    deadline = start_t + guard_s
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    kids = [p.pid for p in descendants(process.pid)]
    finished = process.poll() is not None
    if not finished:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return {"killed": not finished, "after_s": round(time.monotonic() - start_t, 2), "children": kids}


def _cli(args: list[str], env: dict, *, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=900, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"faceledger {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    return done


def kill_cycle(base: Path, seed: int, *, images: int, workers: int = 2, batch: int = 8) -> dict:
    """Enrol, purge, erase and reindex with a `kill -9` of each at a seeded moment, each killed command rerun.

    Returns the counts the fault suite reports: lost, duplicated, orphans, audit ok, and where each kill landed.
    """
    import hashlib
    import json

    rng = random.Random(seed)
    home = base / "home"
    folder = base / "images"
    files = varied_images(folder, images, seed=seed)
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in files}
    assert len(hashes) == len(files), "every image must hash differently"
    env = cli_env(home, FACELEDGER_ENROLL_BATCH=str(batch))
    db = home / "faceledger.db"
    _cli(["gallery", "create", GALLERY], env)
    kills: list[dict] = []
    children: list[int] = []

    def killed(name: str, args: list[str], ready, committed=None) -> dict:
        """Kill once ready(); with `committed` (a purge, an erase), half the seeds instead kill at a seeded
        0.3-5 s (mostly before the commit, during start-up and the work), and report whether it had committed."""
        process = start([*CLI, *args], env, base / f"{name}.log")
        if committed is not None:
            ready = committed
        if committed is not None and rng.random() < 0.5:
            pause, t0 = rng.uniform(0.3, 5.0), time.monotonic()
            ready = lambda: committed() or time.monotonic() - t0 > pause
        event = kill_when(process, ready=ready, rng=rng, guard_s=600)
        if committed is not None:
            event["after_commit"] = bool(committed())
        children.extend(event.pop("children"))
        event["command"] = name
        kills.append(event)
        return event

    # 1. enrolment, killed after a seeded number of stored images (0: before the first batch commits), at
    # most half of them: a target in the last batches let a fast enrolment finish within the seeded extra
    # delay (seed 2 drew 55 of 60), and a kill that never lands tests nothing
    target = min(rng.randrange(0, images), images // 2)
    event = killed("enroll", ["enroll", str(folder), *ENROLL_ARGS, "--workers", str(workers)],
                   lambda: (sqlite_count(db, "select count(*) from images") >= target) if target else
                   len(descendants_of_home(home)) >= workers)
    event["stored_at_kill"] = sqlite_count(db, "select count(*) from images")
    # exit code 2 when a file fails (a re-encoded copy may show two faces of similar size): counted, not an error
    done = _cli(["enroll", str(folder), *ENROLL_ARGS, "--workers", str(workers), "--json"], env, check=False)
    assert done.returncode in (0, 2) and done.stdout.strip().startswith("{"), done.stderr[-2000:]
    rerun = json.loads(done.stdout)
    failed = {o["path"] for o in rerun["failures"]}
    enrolled_now = rerun["enrolled"]
    # what should be held: every image but those that failed analysis, and every image an enrol entry
    # of the ledger reports as enrolled (by the killed run or the rerun)
    expected = {sha for sha, path in hashes.items() if str(path) not in failed} | ledgered_images(db)

    # 2. purge: some subjects' images expire (time passes), a purge is killed, the next one finishes it
    subjects = sorted({p.parent.name for p in files})
    expiring = rng.sample(subjects, 2)
    with sqlite3.connect(db) as con:
        con.execute("update images set retain_until = '2000-01-01 00:00:00.000000' where subject_id in "
                    f"(select id from subjects where name in ({','.join('?' * len(expiring))}))", expiring)
    purged = {sha for sha, path in hashes.items() if path.parent.name in expiring}
    purges = _ledger_count(db, "purge")
    killed("purge", ["purge"], None, lambda: _ledger_count(db, "purge") > purges)
    _cli(["purge"], env)

    # 3. erase one person by face, killed; rerun (which may find nothing left to erase: exit 2, "no match")
    person = rng.choice([s for s in subjects if s not in expiring])
    face = next(p for p in files if p.parent.name == person)
    erases = _ledger_count(db, "erase")
    killed("erase", ["erase", "--face", str(face), "--gallery", GALLERY, "--reason", "fault test"],
           None, lambda: _ledger_count(db, "erase") > erases)
    again = _cli(["erase", "--face", str(face), "--gallery", GALLERY, "--reason", "fault test"], env, check=False)
    assert again.returncode in (0, 2), again.stderr[-2000:]
    erased = {sha for sha, path in hashes.items() if path.parent.name == person}

    # 4. reindex, killed at a seeded moment of its run (it writes no ledger entry to wait for)
    pause = rng.uniform(0.5, 6.0)
    t0 = time.monotonic()
    killed("reindex", ["reindex"], lambda: time.monotonic() - t0 > pause)

    # 5. the checks
    audit = _cli(["audit", "verify", "--json"], env, check=False)
    audit_ok = audit.returncode == 0 and json.loads(audit.stdout)["ok"]
    left = orphans(home, children)
    reap(left)
    state = store_state(home)
    should_hold = expected - purged - erased
    lost = sorted(should_hold - state["searchable"])
    unexpected = sorted(state["stored"] - should_hold)  # purged or erased images still there
    return {"seed": seed, "images": images, "kills": kills, "enrolled_by_rerun": enrolled_now,
            "failed": len(failed), "stored": len(state["stored"]), "faces": state["faces"],
            "lost": len(lost), "lost_sha256": lost[:5], "not_removed": len(unexpected),
            "duplicated": state["duplicated"], "unsearchable_faces": state["unsearchable"],
            "orphans": len(left), "orphan_lines": left[:5], "audit_ok": bool(audit_ok),
            "ledger_gap_free": state["ledger_gap_free"],
            "audit": (audit.stdout + audit.stderr)[-800:] if not audit_ok else ""}


def ledgered_images(db: Path) -> set[str]:
    import json

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        payloads = [json.loads(p) for (p,) in con.execute("select payload from ledger where action = 'enroll'")]
    return {image["sha256"] for payload in payloads for image in payload.get("images", [])}


def descendants_of_home(home: Path) -> list[int]:
    return _home_processes(home)


def store_state(home: Path, *, db: str | None = None, index: str | None = None) -> dict:
    """What the store holds, and which images the index the next search uses can find: each face's own
    embedding must come back at rank 1 (ties with an identical score allowed)."""
    import numpy as np
    from sqlalchemy import func, select

    from faceledger.config import Settings
    from faceledger.engine import Engine
    from faceledger.store import FaceRecord, Gallery, ImageRecord, LedgerEntry

    engine = Engine(Settings(home=home, operator="fault-tester", db=db, **({"index": index} if index else {})))
    try:
        with engine.sessions() as session:
            gallery = session.execute(select(Gallery).where(Gallery.name == GALLERY)).scalar_one()
            rows = session.execute(select(FaceRecord.id, FaceRecord.embedding, ImageRecord.sha256).join(
                ImageRecord, FaceRecord.image_id == ImageRecord.id).where(FaceRecord.gallery_id == gallery.id)).all()
            stored = set(session.execute(select(ImageRecord.sha256).where(
                ImageRecord.gallery_id == gallery.id)).scalars())
            duplicated = session.execute(select(func.count()).select_from(
                select(ImageRecord.sha256).where(ImageRecord.gallery_id == gallery.id).group_by(
                    ImageRecord.sha256).having(func.count() > 1).subquery())).scalar_one()
            index = engine.indexes.get(session, gallery)
            searchable, unsearchable = set(), 0
            if rows:
                vectors = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                scores, ids = index.search(vectors, min(5, len(index)) or 1)
                for row, top_scores, top_ids in zip(rows, scores, ids):
                    found = [int(i) for s, i in zip(top_scores, top_ids) if s >= top_scores[0] - 1e-5]
                    if row[0] in found:
                        searchable.add(row[2])
                    else:
                        unsearchable += 1
            extra = len(index) - len(rows)
            seqs = list(session.execute(select(LedgerEntry.seq).order_by(LedgerEntry.seq)).scalars())
    finally:
        engine.close()
    return {"stored": stored, "searchable": searchable, "faces": len(rows), "duplicated": int(duplicated),
            "unsearchable": unsearchable + max(0, extra), "ledger_gap_free": seqs == list(range(1, len(seqs) + 1))}


# --- many writers: two `faceledger serve` on one PostgreSQL, clients over HTTP (tests/test_faults_writers.py) --


class Server:
    """`faceledger serve` in its own process on 127.0.0.1."""

    def __init__(self, env: dict, log: Path, guard_s: float = 240) -> None:
        import httpx

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = start([*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log)
        deadline = time.monotonic() + guard_s  # a hang guard, not a timing assertion
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("faceledger serve did not start: " + log.read_text()[-2000:])
            time.sleep(0.3)

    def kill(self) -> list[int]:
        kids = [p.pid for p in descendants(self.process.pid)]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return kids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def writers_run(base: Path, db_url: str, *, duration_s: float = 40.0, index: str | None = None, seed: int = 0,
                uploads: int = 400) -> dict:
    """Two servers on one PostgreSQL database (one data directory for their index files and ledger head),
    clients enrolling, searching, reviewing, erasing and purging through both for `duration_s`; server B
    is `kill -9`ed half-way, its clients move to A. Returns the counts; the caller asserts."""
    import hashlib
    import json
    import threading
    from collections import Counter

    import httpx
    from sqlalchemy import create_engine, text

    rng = random.Random(seed)
    home = base / "home"
    extra = {"FACELEDGER_DB": db_url, "FACELEDGER_RATE_LIMIT_PER_MINUTE": "0"}
    if index:
        extra["FACELEDGER_INDEX"] = index
    env = cli_env(home, **extra)
    _cli(["gallery", "create", GALLERY], env)
    tokens = {}
    for name, role in (("enr", "enroller"), ("ana", "analyst"), ("rev", "reviewer"), ("adm", "admin")):
        tokens[role] = json.loads(_cli(["user", "add", name, "--role", role, "--json"], env).stdout)["token"]
    # what the searches find: the LFW sample's first three images per person; victims (erased by subject)
    # and expiring images (purged) are their own subjects, so erasing or purging them touches nothing else
    setup = base / "setup"
    from .conftest import gallery_files, held_out_probes

    for path in gallery_files():
        (setup / path.parent.name).mkdir(parents=True, exist_ok=True)
        (setup / path.parent.name / path.name).write_bytes(path.read_bytes())
    victims = []
    for n, path in enumerate(varied_images(base / "victim-src", 8, seed=seed + 1000)):
        victims.append(f"victim-{n}")
        (setup / victims[-1]).mkdir()
        path.rename(setup / victims[-1] / path.name)
    for n, path in enumerate(varied_images(base / "expiring-src", 6, seed=seed + 2000)):
        (setup / f"expiring-{n}").mkdir()
        path.rename(setup / f"expiring-{n}" / path.name)
    _cli(["enroll", str(setup), *ENROLL_ARGS], env)
    pool = varied_images(base / "uploads", uploads, seed=seed)
    rng.shuffle(pool)
    probes = held_out_probes()

    servers = {"A": Server(env, base / "server-a.log"), "B": Server(env, base / "server-b.log")}
    for server in servers.values():  # each loads its models on its first search: both warm before the clock
        probe = probes[0]
        warm = httpx.post(server.base + "/api/v1/search", timeout=600, headers={"Authorization": f"Bearer {tokens['analyst']}"},
                          data={"gallery": GALLERY, "purpose": "fault test", "case": "warm-up"},
                          files={"image": (probe.name, probe.read_bytes(), "image/jpeg")})
        assert warm.status_code == 200, warm.text[-500:]
    database = create_engine(db_url)
    with database.begin() as con:  # time passes: the expiring images are now due for purging
        con.execute(text("update images set retain_until = '2000-01-01' where subject_id in "
                         "(select id from subjects where name like 'expiring-%')"))

    lock = threading.Lock()
    stop = threading.Event()
    b_dead = threading.Event()
    results: list[tuple[str, str, int | str]] = []  # (server, kind, status or "connection error")
    acknowledged: set[str] = set()
    searches: list[str] = []
    erased: set[str] = set()
    pending = list(pool)

    def call(kind: str, method: str, path: str, role: str, *, prefer: str, **kwargs):
        server = "A" if (prefer == "B" and b_dead.is_set()) else prefer
        try:
            response = httpx.request(method, servers[server].base + path, timeout=300,
                                     headers={"Authorization": f"Bearer {tokens[role]}"}, **kwargs)
        except httpx.TransportError:
            with lock:
                results.append((server, kind, "connection error"))
            return server, None
        with lock:
            results.append((server, kind, response.status_code))
        return server, response

    def enroller(me: str) -> None:
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                path = pending.pop()
            data = path.read_bytes()
            for _ in range(3):  # retried on the other server when the first one died under it
                _, response = call("enroll", "POST", f"/api/v1/galleries/{GALLERY}/enroll", "enroller", prefer=me,
                                   data={"subject": f"{path.parent.name}-api", "source": "fault test",
                                         "legal_basis": "research"},
                                   files={"images": (path.name, data, "image/jpeg")})
                if response is not None:
                    break
            if response is not None and response.status_code == 200:
                body = response.json()
                if body["enrolled"] or body["duplicates"]:
                    with lock:
                        acknowledged.add(hashlib.sha256(data).hexdigest())

    def analyst(me: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            probe = probes[n % len(probes)]
            _, response = call("search", "POST", "/api/v1/search", "analyst", prefer=me,
                               data={"gallery": GALLERY, "purpose": "fault test", "case": f"F-{me}-{n}"},
                               files={"image": (probe.name, probe.read_bytes(), "image/jpeg")})
            if response is not None and response.status_code == 200 and response.json().get("candidates"):
                with lock:
                    searches.append(response.json()["ledger_entry"])

    def reviewer(me: str) -> None:
        while not stop.is_set():
            with lock:
                entry = searches.pop() if searches else None
            if entry is None:
                time.sleep(0.2)
                continue
            call("review", "POST", "/api/v1/reviews", "reviewer", prefer=me,
                 json={"search": entry, "candidate": 1, "decision": rng.choice(["confirm", "reject"])})

    def admin(me: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2 and victims:
                victim = victims.pop()
                _, response = call("erase", "POST", "/api/v1/erase", "admin", prefer=me,
                                   data={"reason": "fault test", "subject": victim, "gallery": GALLERY})
                if response is not None and response.status_code == 200:
                    with lock:
                        erased.add(victim)
            else:
                call("purge", "POST", "/api/v1/purge", "admin", prefer=me)
            time.sleep(0.5)

    threads = [threading.Thread(target=fn, args=(me,), name=f"{fn.__name__}-{me}")
               for me in ("A", "B") for fn in (enroller, analyst, reviewer, admin)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    kill_at = duration_s * rng.uniform(0.35, 0.65)
    stop.wait(kill_at)
    killed_children = servers["B"].kill()
    b_dead.set()
    killed_at = time.monotonic() - t0
    stop.wait(max(0.0, duration_s - killed_at))
    stop.set()
    for thread in threads:
        thread.join(600)  # requests in flight finish (bounded by their own timeout)
    elapsed = time.monotonic() - t0
    servers["A"].stop()
    left = orphans(home, killed_children + [servers["A"].process.pid], wait_s=20)
    reap(left)

    # the checks, on the store itself
    audit = _cli(["audit", "verify", "--json"], env, check=False)
    audit_ok = audit.returncode == 0 and json.loads(audit.stdout)["ok"]
    with database.connect() as con:
        seqs = [r[0] for r in con.execute(text("select seq from ledger order by seq"))]
        duplicated = con.execute(text("select count(*) from (select gallery_id, sha256 from images group by "
                                      "gallery_id, sha256 having count(*) > 1) d")).scalar_one()
        held = {r[0] for r in con.execute(text("select sha256 from images"))}
        remaining_victims = {r[0] for r in con.execute(text("select name from subjects where name like 'victim-%'"))}
        expired_left = con.execute(text("select count(*) from images where retain_until < now()")).scalar_one()
    database.dispose()
    state = store_state(home, db=db_url, index=index)
    counts = Counter((server, status if isinstance(status, str) else f"{status // 100}xx")
                     for server, _, status in results)
    five_a = [r for r in results if r[0] == "A" and isinstance(r[2], int) and r[2] >= 500]
    five_b = [r for r in results if r[0] == "B" and isinstance(r[2], int) and r[2] >= 500]
    by_kind = Counter(kind for _, kind, status in results if isinstance(status, int) and status < 400)
    return {
        "seed": seed, "duration_s": round(elapsed, 1), "killed_b_at_s": round(killed_at, 1),
        "requests": len(results), "requests_per_s": round(len(results) / elapsed, 2),
        "answered": sum(isinstance(s, int) for _, _, s in results),
        "ok_by_kind": dict(by_kind), "status_by_server": {f"{k[0]} {k[1]}": v for k, v in sorted(counts.items())},
        "server_errors_a": len(five_a), "server_errors_b": len(five_b),
        "acknowledged_enrolments": len(acknowledged), "acknowledged_missing": len(acknowledged - held),
        "acknowledged_unsearchable": len(acknowledged - state["searchable"]),
        "duplicated": int(duplicated), "erased": len(erased), "erased_but_present": len(erased & remaining_victims),
        "expired_left": int(expired_left), "unsearchable_faces": state["unsearchable"],
        "ledger_entries": len(seqs), "ledger_gap_free": seqs == list(range(1, len(seqs) + 1)),
        "audit_ok": bool(audit_ok), "audit": (audit.stdout + audit.stderr)[-800:] if not audit_ok else "",
        "orphans": len(left), "orphan_lines": left[:5],
        "server_b_log_tail": servers["B"].log.read_text()[-1500:] if five_b else "",
        "server_a_log_tail": servers["A"].log.read_text()[-3000:] if five_a else "",
    }
