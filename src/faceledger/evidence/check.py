"""`faceledger evidence verify`: an evidence package checked without the database.

The chain segment (proof.check_chain), the facts the page shows against the search's own entry
(render.facts_problems), the embedded probe photo against the hash the search ledgered, and with
anchors, that the segment reaches an anchored entry (proof.check_anchors).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from ..errors import FaceledgerError
from .proof import (
    MAX_FILE_BYTES,
    EvidenceCheck,
    EvidenceInvalid,
    check_anchors,
    check_chain,
    extract,
)
from .render import facts_problems


def verify_file(path: Path, *, anchors_path: Path | None = None, public_key_path: Path | None = None) -> EvidenceCheck:
    """Check an evidence package file: its chain segment, the ledgered facts the page shows against the
    search's entry, the probe's hash, and optionally its anchors."""
    from ..anchors import load_public_key, read_anchors

    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise EvidenceInvalid(f"{path} is over {MAX_FILE_BYTES // 2**20} MiB: not an evidence package")
        data = path.read_bytes()
    except OSError as exc:
        raise FaceledgerError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        html = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvidenceInvalid(f"{path} is not UTF-8 text: not an evidence package") from None
    proof = extract(html)
    problems, notes = check_chain(proof)
    problems += probe_problems(html, proof)
    search = proof["entries"][0]
    if search.get("withheld"):
        notes.append("the facts shown are not compared with the search's entry: its content is withheld")
    else:
        try:
            entry = {**search, "payload": json.loads(search["payload"])}
        except (TypeError, ValueError):
            entry = None
        problems += facts_problems(html, entry) if entry else ["the search entry's payload is not JSON"]
    if anchors_path is not None:
        public_key = load_public_key(public_key_path) if public_key_path is not None else None
        more, extra = check_anchors(proof, read_anchors(anchors_path), public_key)
        problems += more
        notes += extra
    elif (proof.get("ends_at") or {}).get("reason") != "anchor":
        notes.append("the segment does not end at an anchor: no anchor covered the search when it was exported")
    seqs = [e.get("seq") for e in proof["entries"] if isinstance(e.get("seq"), int)]
    return EvidenceCheck(ok=not problems, search_entry=proof.get("search_entry"),
                         segment=(min(seqs), max(seqs)) if seqs else None, problems=problems, notes=notes,
                         sha256=hashlib.sha256(data).hexdigest())


def probe_problems(html: str, proof: dict) -> list[str]:
    """A probe image embedded in the package must be the one the search ledgered (its sha256)."""
    found = re.search(r'<img class="probe" data-sha256="([0-9a-f]{64})" alt="[^"]*" src="data:[^;"]+;base64,'
                      r'([A-Za-z0-9+/=]+)"', html)
    if found is None:
        return []
    first = proof["entries"][0]
    if first.get("withheld"):
        return []
    try:
        ledgered = json.loads(first["payload"]).get("probe_sha256")
    except (TypeError, ValueError, AttributeError):
        return ["the search entry's payload is not JSON"]
    actual = hashlib.sha256(base64.b64decode(found.group(2))).hexdigest()
    if actual != ledgered:
        return ["the probe image embedded is not the one the search ledgered (its sha256 differs)"]
    return []
