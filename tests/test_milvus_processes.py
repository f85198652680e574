"""milvus-lite across real processes: one process per file, as milvus-lite allows.

* Processes one after another (CLI commands) each get the file in turn and see what the others wrote.
* A process next to one that holds the file (a running `faceledger serve`) is refused with one clear
  line that says to use a Milvus server, never a traceback; what it committed to the store is not lost,
  and the holder never searches a stale collection: it catches up from the store.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

import faceledger

from .conftest import gallery_files, held_out_probes

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed here")

WORKER = Path(__file__).with_name("milvus_worker.py")
SRC = str(Path(faceledger.__file__).resolve().parents[1])  # the code under test, also in the children
CLI = ("import sys; from faceledger.index import milvus_lite_lock as lock; lock.WAIT_S = 0.5; "
       "from faceledger.cli import main; sys.argv[0] = 'faceledger'; main()")
ANSWER_GUARD_S = 600  # a hang guard for a broken child, not a timing assertion


def child_env(home: Path, index: str) -> dict:
    env = {**os.environ, "FACELEDGER_HOME": str(home), "FACELEDGER_INDEX": index,
           "FACELEDGER_OPERATOR": "tester", "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    env.pop("FACELEDGER_TOKEN", None)
    return env


class Worker:
    """One faceledger engine in its own process (tests/milvus_worker.py)."""

    def __init__(self, home: Path, index: str, *, wait_s: float = 0.5) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(wait_s)], env=child_env(home, index),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def send(self, **request) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_GUARD_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise AssertionError(f"worker gave no answer; stderr:\n{self.proc.stderr.read()[-3000:]}")
        answer = json.loads(line)
        assert "traceback" not in answer, answer["traceback"]
        return answer

    def ask(self, **request) -> dict:
        self.send(**request)
        return self.answer()

    def ok(self, **request) -> dict:
        answer = self.ask(**request)
        assert answer["ok"], answer
        return answer

    def close(self) -> str:
        if self.proc.poll() is None:
            self.send(op="exit")
            self.answer()
        _, err = self.proc.communicate(timeout=ANSWER_GUARD_S)
        return err


def cli(home: Path, index: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], env=child_env(home, index), capture_output=True, check=False,
                          text=True, timeout=ANSWER_GUARD_S)


def names(paths) -> list[str]:
    return [str(p) for p in paths]


def test_processes_one_after_another_share_a_milvus_lite_file(tmp_path):
    home, index = tmp_path / "home", str(tmp_path / "home" / "vectors.db")
    first = Worker(home, index)
    first.ok(op="create")
    assert first.ok(op="enroll", images=names(gallery_files()[:6]))["enrolled"] == 6
    assert "Traceback" not in first.close()

    second = Worker(home, index)  # a new process opens the collection the first one created
    probe = held_out_probes()[0]
    found = second.ok(op="search", image=str(probe))
    assert found["size"] == 6 and found["subjects"][:1] == [probe.parent.name]
    assert second.ok(op="enroll", images=names(gallery_files()[6:9]))["enrolled"] == 3
    assert second.ok(op="erase", subject=probe.parent.name)["faces"] == 3
    counts = second.ok(op="count")
    assert counts["index"] == counts["store"] and len(counts["store"]) == 6
    assert second.ok(op="reindex")["faces"] == 6
    assert "Traceback" not in second.close()


def test_a_command_next_to_a_running_process_is_refused_clearly_and_nothing_goes_stale(tmp_path):
    home, index = tmp_path / "home", str(tmp_path / "home" / "vectors.db")
    holder = Worker(home, index)  # stands for `faceledger serve`: it holds the file while it runs
    holder.ok(op="create")
    holder.ok(op="enroll", images=names(gallery_files()[:6]))
    probe = held_out_probes()[0]
    assert holder.ok(op="search", image=str(probe))["size"] == 6
    try:
        newcomer = gallery_files()[6]
        commands = {
            "search": ["search", str(probe), "--gallery", "g", "--purpose", "p", "--case", "c"],
            "enroll": ["enroll", str(newcomer), "--subject", newcomer.parent.name, "--gallery", "g",
                       "--source", "s", "--legal-basis", "b"],
            "erase": ["erase", "--subject", probe.parent.name, "--gallery", "g", "--reason", "request"],
            "reindex": ["reindex"],
        }
        for name, args in commands.items():
            done = cli(home, index, *args)
            assert done.returncode == 2, (name, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr + done.stdout, (name, done.stderr)
            assert "in use by another process" in done.stderr and "milvus://HOST:PORT" in done.stderr, name
        # The enrolment and the erasure were committed to the store (the truth) before the index was
        # needed; the holder must not search its old collection: it catches up from the store.
        after = holder.ok(op="search", image=str(probe))
        assert after["size"] == 6 + 1 - 3 and probe.parent.name not in after["subjects"]
        counts = holder.ok(op="count")
        assert counts["index"] == counts["store"]
    finally:
        assert "Traceback" not in holder.close()
    done = cli(home, index, "search", str(probe), "--gallery", "g", "--purpose", "p", "--case", "c", "--json")
    assert done.returncode == 0, done.stderr  # the holder has exited: the file is free again
    assert json.loads(done.stdout)["gallery_size"] == 4


# -- a real Milvus server: several processes at once --------------------------------------------------

def people() -> dict[str, list[Path]]:
    """The enrolled LFW people of the demo gallery, three images each."""
    groups: dict[str, list[Path]] = {}
    for path in gallery_files():
        groups.setdefault(path.parent.name, []).append(path)
    return groups


@pytest.mark.skipif(not os.environ.get("FACELEDGER_MILVUS_FULL"),
                    reason="several processes on a Milvus server take ~1 min: `make test-milvus` runs it")
def test_many_writers_on_a_milvus_server_see_each_other_and_the_store(tmp_path, milvus_server):
    home, index = tmp_path / "home", milvus_server.url
    workers = [Worker(home, index) for _ in range(3)]
    try:
        workers[0].ok(op="create")
        groups = list(people().items())
        for worker, (_, images) in zip(workers, groups[:3]):  # three processes enrol at once
            worker.send(op="enroll", images=names(images))
        assert [w.answer()["enrolled"] for w in workers] == [3, 3, 3]
        probes = {p.parent.name: p for p in held_out_probes()}
        for i, worker in enumerate(workers):  # each finds the person another process enrolled
            worker.send(op="search", image=str(probes[groups[(i + 1) % 3][0]]))
        for i, worker in enumerate(workers):
            found = worker.answer()
            assert found["ok"] and found["size"] == 9, found
            assert found["subjects"][:1] == [groups[(i + 1) % 3][0]]
        # at once: one process erases a person, one enrols two more people, one searches
        workers[0].send(op="erase", subject=groups[0][0])
        workers[1].send(op="enroll", images=names(groups[3][1] + groups[4][1]))
        workers[2].send(op="search", image=str(probes[groups[1][0]]))
        erased, enrolled, searched = (w.answer() for w in workers)
        assert erased["ok"] and erased["faces"] == 3, erased
        assert enrolled["ok"] and enrolled["enrolled"] == 6, enrolled
        assert searched["ok"] and searched["subjects"][:1] == [groups[1][0]], searched
        for worker in workers:  # afterwards every process's index holds exactly the store's faces
            counts = worker.ok(op="count")
            assert counts["index"] == counts["store"] and len(counts["store"]) == 12
            after = worker.ok(op="search", image=str(probes[groups[0][0]]))
            assert groups[0][0] not in after["subjects"] and after["size"] == 12
        assert workers[2].ok(op="reindex")["faces"] == 12
        assert workers[0].ok(op="count")["index"] == workers[0].ok(op="count")["store"]
    finally:
        errors = [w.close() for w in workers]
    assert not any("Traceback" in e for e in errors), errors
