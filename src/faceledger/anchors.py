"""Signed anchors: the ledger's head, signed with a key the data directory does not hold.

The hash chain and the head file detect an edit by someone who cannot rewrite the whole data
directory. Someone who can (root on the server, a database administrator) can cut the tail and
rewrite the head file, delete everything, or edit an entry and recompute every hash after it. An
anchor fixes the chain from outside: it states "entry SEQ had hash H at TIME", signed with an Ed25519
private key kept away from the server. Whoever holds the anchors and the public key can then check
that every anchored entry is still there with exactly that hash, which fails after truncation below
an anchor, deletion of everything, and any re-chaining that touches an anchored entry or one before it.

Each anchor covers an "audit.anchor" ledger entry appended for it, so the chain itself records when
it was anchored and with which key. Anchors are canonical JSON lines: ``{"v":1,"kind":...,"seq":...,
"hash":...,"time":...,"key_id":...,"signature":...}``; the signature covers every other field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import FaceledgerError
from .ledger import Ledger, canonical_json

KIND = "faceledger.ledger-anchor"
VERSION = 1
ANCHOR_ACTION = "audit.anchor"
PRIVATE_NAME, PUBLIC_NAME = "anchor-private.pem", "anchor-public.pem"


class AnchorError(FaceledgerError):
    """A signing key or an anchors file cannot be used (wrong place, wrong kind, unreadable)."""


# -- keys ------------------------------------------------------------------------------------------

def _inside(path: Path, directory: Path) -> bool:
    path, directory = Path(path).resolve(), Path(directory).resolve()
    return path == directory or directory in path.parents


def refuse_inside_data_dir(path: Path, data_dir: Path | None, what: str) -> None:
    """An anchor key or anchors file in the data directory protects nothing: whoever can rewrite the
    ledger could rewrite it too."""
    if data_dir is not None and _inside(path, data_dir):
        raise AnchorError(f"{what} {path} is inside the data directory {Path(data_dir).resolve()}; keep it "
                          "elsewhere (another machine, offline storage): whoever can change the data directory "
                          "could change it too")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keys(out_dir: Path, *, data_dir: Path | None) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair (private key readable by the owner only); never overwrites."""
    out_dir = Path(out_dir)
    refuse_inside_data_dir(out_dir, data_dir, "the key directory")
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise AnchorError(f"{path} already exists; choose another --out directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def load_private_key(path: Path, *, data_dir: Path | None) -> Ed25519PrivateKey:
    refuse_inside_data_dir(Path(path), data_dir, "the private key")
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AnchorError(f"cannot read the private key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorError(f"{path} is not an Ed25519 private key (make one with `faceledger audit keygen`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise AnchorError(f"cannot read the public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AnchorError(f"{path} is not an Ed25519 public key")
    return key


# -- anchors ---------------------------------------------------------------------------------------

def make_anchor(seq: int, digest: str, private_key: Ed25519PrivateKey, *, time: str | None = None) -> dict:
    """A signed statement that ledger entry `seq` has hash `digest`."""
    body = {"v": VERSION, "kind": KIND, "seq": int(seq), "hash": digest, "entries": int(seq),
            "time": time or datetime.now(UTC).isoformat(timespec="seconds"),
            "key_id": key_id(private_key.public_key())}
    signature = private_key.sign(canonical_json(body).encode())
    return {**body, "signature": base64.b64encode(signature).decode()}


def anchor_ledger(ledger: Ledger, private_key: Ed25519PrivateKey, *, actor: str) -> dict:
    """Append an "audit.anchor" entry, then sign an anchor over that entry (and so over the whole chain
    before it). The caller keeps the returned anchor away from the data directory."""
    entry = ledger.record(actor=actor, action=ANCHOR_ACTION, payload={
        "key_id": key_id(private_key.public_key()),
        "note": "a signed anchor over this entry was issued; keep it outside the data directory"})
    return make_anchor(entry.seq, entry.hash, private_key)


def anchor_line(anchor: dict) -> str:
    return canonical_json(anchor) + "\n"


def append_anchor(path: Path, anchor: dict, *, data_dir: Path | None) -> None:
    refuse_inside_data_dir(Path(path), data_dir, "the anchors file")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(anchor_line(anchor))


def read_anchors(path: Path) -> list[dict]:
    """The anchors in a JSON-lines file, in file order; a malformed line is an error, not skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AnchorError(f"cannot read the anchors file {path}: {exc}") from None
    anchors = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            anchor = json.loads(line)
        except json.JSONDecodeError:
            raise AnchorError(f"{path}, line {number}: not a JSON anchor") from None
        if not isinstance(anchor, dict):
            raise AnchorError(f"{path}, line {number}: not a JSON anchor")
        anchors.append(anchor)
    return anchors


def signature_problem(anchor: dict, public_key: Ed25519PublicKey) -> str | None:
    """None when the anchor is well formed and signed by this key; else what is wrong."""
    body = {k: v for k, v in anchor.items() if k != "signature"}
    if anchor.get("kind") != KIND or anchor.get("v") != VERSION:
        return "is not a faceledger ledger anchor (version 1)"
    if not isinstance(anchor.get("seq"), int) or anchor["seq"] < 1 or not isinstance(anchor.get("hash"), str):
        return "has no valid seq and hash"
    if anchor.get("key_id") != key_id(public_key):
        return f"was signed with another key (key id {anchor.get('key_id')}, this public key is {key_id(public_key)})"
    try:
        public_key.verify(base64.b64decode(str(anchor.get("signature", "")), validate=True),
                          canonical_json(body).encode())
    except (InvalidSignature, ValueError):
        return "has a signature that does not verify with this public key (forged or altered)"
    return None


def verify_against_anchors(ledger: Ledger, anchors: list[dict], public_key: Ed25519PublicKey) -> list[str]:
    """Every problem found by checking the ledger against signed anchors (an empty list: consistent).

    Each anchor must be signed by `public_key`; the ledger must still hold entry `seq` with exactly the
    anchored hash (this fails after truncation below the anchor, deletion, and re-chaining); and the
    anchors must not go backwards (seq and time non-decreasing, one hash per seq)."""
    if not anchors:
        return ["no anchors given: nothing to check the ledger against"]
    problems: list[str] = []
    trusted: list[tuple[int, dict]] = []
    for number, anchor in enumerate(anchors, 1):
        problem = signature_problem(anchor, public_key)
        if problem:
            problems.append(f"anchor {number} {problem}; it was not used")
        else:
            trusted.append((number, anchor))
    stored = ledger.hashes_at(anchor["seq"] for _, anchor in trusted)
    last = ledger.last()
    newest = last[0] if last else 0
    previous: dict | None = None
    for number, anchor in trusted:
        seq, digest, when = anchor["seq"], anchor["hash"], anchor["time"]
        if seq not in stored:
            problems.append(f"anchor {number}: entry {seq} (anchored {when}) is missing; the ledger "
                            f"{'ends at entry ' + str(newest) if newest else 'is empty'}: entries were removed")
        elif stored[seq] != digest:
            problems.append(f"anchor {number}: entry {seq} (anchored {when}) has a different hash now: it or an "
                            "entry before it was rewritten and the chain recomputed")
        if previous is not None:
            if seq < previous["seq"] or when < previous["time"]:
                problems.append(f"anchor {number}: goes backwards (entry {seq} at {when} after entry "
                                f"{previous['seq']} at {previous['time']})")
            elif seq == previous["seq"] and digest != previous["hash"]:
                problems.append(f"anchor {number}: entry {seq} anchored twice with different hashes")
        previous = anchor
    return problems
