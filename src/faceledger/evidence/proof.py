"""The proof inside an evidence package: a segment of the ledger's hash chain, and its check.

A search's ledger entry is shown to be part of the chain by the consecutive entries from it up to the
first signed anchor at or after it (`faceledger audit anchor`), or up to the ledger's head when no anchor
covers it yet. Each entry carries what its hash covers (seq, id, time, actor, action, the payload exactly
as stored, the previous hash), so anyone can recompute every hash and link without the database, and
compare the last one with an anchor signed by a key the server does not hold.

An entry that names a person erased since is carried with its content withheld: its hash is pinned by
the next entry's link, but cannot be recomputed from the package. The check says so.

Nothing here touches the store; the service (services/evidence.py) reads the rows, this builds and
checks the data, evidence/render.py embeds it as a JSON block in the HTML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..errors import FaceledgerError
from ..ledger import entry_hash

KIND = "faceledger.evidence-proof"
VERSION = 1
MAX_SEGMENT = 5000
"""The most chain entries one package carries; past it the segment stops short of the anchor and says so."""
BLOCK_ID = "faceledger-proof"
ERASED = "names a person erased since"
"""Why an entry's content is withheld when it names a person erased after it was written."""
FIELDS = ("seq", "entry_id", "created_at", "actor", "action", "payload", "prev_hash", "hash")
_BLOCK = re.compile(r'<script type="application/json" id="' + BLOCK_ID + r'">(.*?)</script>', re.DOTALL)
MAX_FILE_BYTES = 200 * 1024 * 1024
"""A package larger than this is refused by the checker before it is read (bounded memory)."""


class EvidenceInvalid(FaceledgerError):
    """The evidence package failed its check: its chain segment or its anchor does not hold."""


def segment_end(search_seq: int, anchor_seqs: list[int], head_seq: int) -> tuple[int, str]:
    """(last seq of the segment, why it ends there): the first anchor at or after the search ("anchor"),
    else the ledger's head ("head"); never more than MAX_SEGMENT entries ("limit")."""
    later = [seq for seq in anchor_seqs if seq >= search_seq]
    end, reason = (min(later), "anchor") if later else (head_seq, "head")
    if end - search_seq + 1 > MAX_SEGMENT:
        return search_seq + MAX_SEGMENT - 1, "limit"
    return end, reason


def entry_record(row, *, withheld: str | None = None) -> dict:
    """One ledger row as the proof carries it (the payload as the stored canonical JSON text)."""
    record = {name: getattr(row, name) for name in FIELDS}
    if withheld:
        record.update(actor=None, payload=None, created_at=None, withheld=withheld)
    return record


def build_proof(search_entry_id: str, rows: list, *, reason: str, withheld: dict[int, str],
                exported_at: str) -> dict:
    """The proof block: the chain segment `rows` (oldest first, starting with the search's entry), ending
    where `segment_end` said and why."""
    return {"v": VERSION, "kind": KIND, "search_entry": search_entry_id, "exported_at": exported_at,
            "ends_at": {"seq": rows[-1].seq, "reason": reason},
            "entries": [entry_record(row, withheld=withheld.get(row.seq)) for row in rows]}


def embed(proof: dict) -> str:
    """The proof as an inert JSON block for the HTML (`</` escaped so the text cannot end the element)."""
    text = json.dumps(proof, sort_keys=True, ensure_ascii=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{BLOCK_ID}">{text}</script>'


def extract(html: str) -> dict:
    """The proof block of a package's HTML."""
    found = _BLOCK.findall(html)
    if len(found) != 1:
        raise EvidenceInvalid("this file holds no faceledger proof block (or more than one): it is not an "
                              "evidence package, or it was altered")
    try:
        proof = json.loads(found[0])
    except json.JSONDecodeError:
        raise EvidenceInvalid("the proof block is not valid JSON: the file was altered") from None
    if not isinstance(proof, dict) or proof.get("kind") != KIND or proof.get("v") != VERSION:
        raise EvidenceInvalid("the proof block is not a faceledger evidence proof (version 1)")
    entries = proof.get("entries")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise EvidenceInvalid("the proof block holds no chain entries")
    return proof


@dataclass
class EvidenceCheck:
    ok: bool
    search_entry: str | None = None
    segment: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sha256: str = ""


def check_chain(proof: dict) -> tuple[list[str], list[str]]:
    """(problems, notes) of the segment: consecutive seqs, every prev link, every hash recomputed."""
    problems: list[str] = []
    notes: list[str] = []
    previous: dict | None = None
    for entry in proof["entries"]:
        seq = entry.get("seq")
        if not isinstance(seq, int) or not all(isinstance(entry.get(k), str) for k in ("prev_hash", "hash")):
            problems.append(f"an entry after {previous['seq'] if previous else 'the start'} is malformed")
            break
        if previous is not None:
            if seq != previous["seq"] + 1:
                problems.append(f"entry {seq}: expected entry {previous['seq'] + 1} here (an entry was removed "
                                "or moved)")
            if entry["prev_hash"] != previous["hash"]:
                problems.append(f"entry {seq}: does not link to the entry before it")
        if entry.get("withheld"):
            notes.append(f"entry {seq}: content withheld ({entry['withheld']}); its hash is pinned by the "
                         "next entry's link but not recomputed")
        elif not all(isinstance(entry.get(k), str) for k in ("entry_id", "created_at", "actor", "action",
                                                              "payload")):
            problems.append(f"entry {seq}: fields are missing")
        elif entry_hash(seq, entry["entry_id"], entry["created_at"], entry["actor"], entry["action"],
                        entry["payload"], entry["prev_hash"]) != entry["hash"]:
            problems.append(f"entry {seq}: content does not match its hash (edited)")
        previous = entry
    ends_at = proof.get("ends_at") if isinstance(proof.get("ends_at"), dict) else {}
    if proof["entries"][-1].get("seq") != ends_at.get("seq"):
        problems.append(f"the segment should end at entry {ends_at.get('seq')} ({ends_at.get('reason')}) but ends "
                        f"at entry {proof['entries'][-1].get('seq')}: entries were cut off")
    first = proof["entries"][0]
    if first.get("entry_id") != proof.get("search_entry"):
        problems.append("the segment does not start with the search's own entry")
    elif first.get("withheld"):
        notes.append("the search's own entry is withheld, so its content is not checked here")
    return problems, notes


def check_anchors(proof: dict, anchors: list[dict], public_key) -> tuple[list[str], list[str]]:
    """(problems, notes): some anchor (signed by `public_key`, when given) fixes an entry of the segment at
    or after the search with exactly the hash the segment holds."""
    from ..anchors import signature_problem

    entries = {e["seq"]: e["hash"] for e in proof["entries"] if isinstance(e.get("seq"), int)}
    withheld = sorted(e["seq"] for e in proof["entries"] if e.get("withheld") and isinstance(e.get("seq"), int))
    first, last = min(entries), max(entries)
    problems: list[str] = []
    notes: list[str] = []
    if public_key is None:
        notes.append("anchor signatures not checked: give --public-key to check them")
    covering = []
    for number, anchor in enumerate(anchors, 1):
        if public_key is not None:
            problem = signature_problem(anchor, public_key)
            if problem:
                problems.append(f"anchor {number} {problem}")
                continue
        seq = anchor.get("seq")
        if not isinstance(seq, int):
            problems.append(f"anchor {number} has no entry number")
        elif seq < first:
            notes.append(f"anchor {number} (entry {seq}) is older than the search; it does not cover it")
        elif seq > last:
            notes.append(f"anchor {number} (entry {seq}) is past this package's segment (entries {first}-{last}); "
                         "export the package again to reach it")
        elif anchor.get("hash") != entries[seq]:
            problems.append(f"anchor {number}: entry {seq} has another hash in this package than the anchor "
                            "states: the package or the ledger was rewritten")
        else:
            covering.append(seq)
    if not covering and not problems:
        problems.append(f"no anchor given fixes an entry of this package's segment (entries {first}-{last})")
    elif covering:
        anchored = min(covering)
        between = [seq for seq in withheld if first < seq <= anchored]
        if between:
            # a withheld entry's own hash is not recomputed, so nothing binds the entries before it to it
            problems.append(f"the search (entry {first}) is not tied to anchored entry {anchored}: the content of "
                            f"entr{'y' if len(between) == 1 else 'ies'} {', '.join(map(str, between))} is withheld "
                            "in this package, and the chain cannot be recomputed across it (a package exported by "
                            "an auditor or admin carries every entry in full)")
        else:
            notes.append(f"the chain from the search (entry {first}) reaches anchored entry {anchored}")
    return problems, notes
