"""The SFace graph optimised for this CPU, kept in the cache folder (caches.py) with its weights prepacked.

One entry is a folder `<key>-<digest>` holding `graph.onnx` (the optimised graph, about 40 KB) and
`graph.data` (its weights, and ONNX Runtime's prepacked copy of the large fully connected layer's weights
in the layout its matrix multiply reads). A session made from it neither re-optimises the graph nor
repacks those weights (about 45 ms of a cold load, half the session's making); its outputs are the same
bit for bit (tests/test_cli_caches.py). The prepacked layout depends on the CPU and the ONNX Runtime
version, which the key covers (sface_ort._optimised_key).

Integrity: <digest> is the first 32 hex digits of the sha256 over the graph file's size (8 bytes,
little-endian), the graph file and the weights file. It is computed on a second thread while ONNX Runtime
builds the session from the same open folder (its /proc/self/fd name, where there is one, so a folder
put in the entry's place meanwhile is neither hashed nor loaded): both release the GIL, so the check
costs the wall time of the longer of the two, not their sum. The session is handed out only once the
digest matched; an entry that does not match, or that cannot be read, is deleted and the caller makes the
graph again from the verified shipped model. ONNX Runtime maps the weights file into memory rather than
copying it: the file is never rewritten in place (entries are made in a temporary folder and renamed),
and a deleted entry stays readable to the sessions that use it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import threading
from pathlib import Path

from .. import caches

GRAPH = "graph.onnx"
WEIGHTS = "graph.data"
KEEP = 4
"""Entries kept (other keys: other thread counts, model folders, versions)."""


def load(ort, folder: Path, key: str, options):
    """A session on the entry saved before under this key, or None (none saved, or not intact)."""
    for entry in sorted(folder.glob(f"{key}-*")):
        if not entry.is_dir():
            continue
        try:
            session, digest = _session_and_sha256(ort, entry, options)
        except OSError:
            session, digest = None, ""
        if session is not None and digest[:32] == entry.name.rsplit("-", 1)[-1]:
            return session
        shutil.rmtree(entry, ignore_errors=True)  # damaged, altered or unreadable: remade by the caller
    return None


def start_saving(folder: Path, key: str, options) -> Path | None:
    """Point `options` at a new temporary entry, for the session made with them to save the optimised
    graph and its prepacked weights there (then `finish_saving`); None if the folder cannot be written."""
    tmp = caches.temporary_name(folder / key)
    try:
        tmp.mkdir(parents=True)
    except OSError:
        return None
    options.optimized_model_filepath = str(tmp / GRAPH)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS)
    options.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
    return tmp


def finish_saving(tmp: Path, folder: Path, key: str) -> None:
    """Name the saved entry by its digest, keep the KEEP newest, and remove files of the flat layout."""
    try:
        target = folder / f"{key}-{entry_sha256(tmp)[:32]}"
        if target.exists():  # another process saved the same entry meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(target)
        caches.prune(folder, "sface-*", KEEP)
        caches.prune(folder, "sface-*.onnx", 0)  # one file per entry, before the weights were prepacked
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache: the next process optimises again


def entry_sha256(entry: Path, *, dir_fd: int | None = None) -> str:
    """The sha256 over the graph file's size (8 bytes, little-endian), the graph file and the weights file
    (read through `dir_fd`, an open descriptor of the entry's folder, when given)."""
    digest = hashlib.sha256()

    def opener(path: str, flags: int) -> int:
        return os.open(path, flags, dir_fd=dir_fd)

    for name in (GRAPH, WEIGHTS):
        with open(name if dir_fd is not None else entry / name, "rb", opener=opener if dir_fd is not None else None) as fh:
            size = os.fstat(fh.fileno()).st_size
            if name == GRAPH:
                digest.update(size.to_bytes(8, "little"))
            if size:  # one update over a memory map: the GIL is released once for the whole file, not
                # taken back between chunks, which a thread importing modules meanwhile would delay each time
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    digest.update(view)
    return digest.hexdigest()


def _session_and_sha256(ort, entry: Path, options):
    """(a session built from the entry, or None if ONNX Runtime refuses it; the entry's digest), made at
    once on two threads from one open folder."""
    try:
        dir_fd = os.open(entry, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        dir_fd = None  # (a platform that cannot open a folder: by its path, as before)
    try:
        via = f"/proc/self/fd/{dir_fd}" if dir_fd is not None and os.path.isdir(f"/proc/self/fd/{dir_fd}") else None
        found: dict[str, object] = {}

        def digest() -> None:
            try:
                found["sha256"] = entry_sha256(entry, dir_fd=dir_fd if via else None)
            except (OSError, ValueError) as error:
                found["error"] = error

        hasher = threading.Thread(target=digest, name="faceledger-cache-sha256")
        hasher.start()
        try:
            session = ort.InferenceSession(f"{via}/{GRAPH}" if via else str(entry / GRAPH), options,
                                           providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types; the graph is remade
            session = None
        finally:
            hasher.join()
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    if "error" in found:
        raise OSError(f"could not read {entry}: {found['error']}")
    return session, str(found["sha256"])
