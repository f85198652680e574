"""An evidence package as one self-contained HTML file: inline CSS (with print rules, so it prints to PDF),
images as data: URIs, no script and no external reference; the chain proof as an inert JSON block.

`render(package)` is pure: the service (services/evidence.py) gathers `package`, this only formats it.
"""

from __future__ import annotations

import base64
import re
from html import escape

from .proof import ERASED, embed

PAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
"""Set inside the file, so even opened from disk it loads nothing and runs nothing."""

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:0 auto;max-width:60rem;overflow-wrap:anywhere;
padding:1rem}
h1{font-size:1.45rem;margin:.2rem 0}h2{font-size:1.15rem;border-bottom:2px solid #d0d7de;padding-bottom:.2rem;
margin-top:1.6rem}h3{font-size:1rem;margin:.2rem 0}
.muted{color:#57606a}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;
border-bottom:1px solid #d0d7de;overflow-wrap:anywhere}th{width:34%;font-weight:600;color:#424a53}
.card th{width:50%;font-weight:500}.card td,.card th{padding:.2rem .3rem;font-size:.92em}
ul.reviews{padding-left:1.1rem;margin:.3rem 0}ul.reviews li{margin:.2rem 0}
.entry{border-left:3px solid #d0d7de;padding:.2rem .6rem;margin:.5rem 0}
@media (max-width:40rem){th{width:42%}body{padding:.6rem}}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.8rem}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.7rem;break-inside:avoid}
.card img,.probe{max-width:100%;height:auto;display:block;margin:.3rem 0}img.probe{max-height:22rem}
.withheld{background:#f6f8fa;border:1px dashed #8c959f;padding:.6rem;border-radius:4px}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.85em;background:#eaeef2}
.badge.yes{background:#dafbe1}.badge.no{background:#ffebe9}
.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.5rem .7rem}
@media print{body{max-width:none;font-size:11pt;padding:0}h2{break-after:avoid}.card,tr{break-inside:avoid}
a{color:inherit;text-decoration:none}}
@page{margin:15mm}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _text(value) -> str:
    if value is None or value == "":
        return '<span class="muted">none</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value)) or '<span class="muted">none</span>'
    if isinstance(value, dict):
        return escape("; ".join(f"{k}: {_plain(v)}" for k, v in value.items()))
    return escape(str(value))


def _plain(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _rate(rate) -> str:
    if not isinstance(rate, (int, float)):
        return "not stated"
    return f"{rate:.1e}" if rate < 0.001 else f"{rate:.2%}"


def _facts(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{escape(name)}</th><td>{_text(value)}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _refused(value) -> list[str]:
    return [f"{r.get('gallery')}: {r.get('reason')}" for r in value or [] if isinstance(r, dict)]


SEARCH_FACTS = (("ledger_entry", "ledger entry"), ("searched_by", "searched by"), ("searched_at", "searched at"),
                ("purpose", "purpose"), ("case", "case"), ("authorisation", "authorisation"), ("mode", "mode"),
                ("decision", "decision"), ("galleries", "galleries searched"), ("refused", "galleries that refused"),
                ("gallery_size", "faces compared (N)"), ("model_id", "model"), ("calibration_id", "calibration"),
                ("probe_sha256", "probe sha256"), ("probe_quality", "probe quality"),
                ("probe_expires", "probe kept until"))
THRESHOLD_FACTS = (("threshold", "threshold (score)"),
                   ("target_fpir", "target false-positive identification rate (FPIR)"),
                   ("predicted_fpir", "predicted FPIR at this threshold"), ("calibration_source", "set by"),
                   ("threshold_supported", "supported by data"), ("threshold_extrapolated", "extrapolated"),
                   ("extrapolation_factor", "extrapolation factor"), ("threshold_explanation", "how it was set"),
                   ("meaning", "what the answer means"))
CANDIDATE_FACTS = (("gallery", "gallery"), ("subject_id", "subject id"), ("score", "score"),
                   ("false_match_rate", "false-match rate (FMR)"), ("false_match_rate_upper", "FMR upper bound (95%)"),
                   ("gallery_false_positive_chance", "chance a non-mate in the gallery scores this high"))
FORMATS = {"target_fpir": _rate, "predicted_fpir": _rate, "false_match_rate": _rate, "false_match_rate_upper": _rate,
           "gallery_false_positive_chance": _rate, "refused": _refused}
"""The ledgered facts the page shows, each in a row marked data-field, so `evidence verify` can compare
every one with the search's entry in the proof (facts_problems)."""


def cell(field: str, value) -> str:
    """The HTML of one ledgered fact as the page shows it."""
    return _text(FORMATS.get(field, lambda v: v)(value))


def record_of(entry: dict) -> dict:
    """The facts of a search as its ledger entry states them (what services.review.search_record reads)."""
    payload = entry["payload"]
    return {**payload, "ledger_entry": entry["entry_id"], "searched_by": entry["actor"],
            "searched_at": entry["created_at"], "galleries": payload.get("galleries") or payload.get("gallery")}


def _ledgered(fields, values: dict, prefix: str = "") -> str:
    body = "".join(f'<tr data-field="{prefix}{field}"><th>{escape(label)}</th><td>{cell(field, values.get(field))}'
                   "</td></tr>" for field, label in fields)
    return f"<table>{body}</table>"


_CELL = re.compile(r'<tr data-field="([a-z0-9_.]+)"><th>[^<]*</th><td>(.*?)</td></tr>', re.DOTALL)


def facts_problems(html: str, entry: dict) -> list[str]:
    """Every ledgered fact the page shows that differs from the search's ledger entry (an edited page)."""
    record = record_of(entry)
    candidates = {c.get("rank"): c for c in record.get("candidates") or [] if isinstance(c, dict)}
    problems = []
    for field, shown in _CELL.findall(html):
        if field.startswith("candidate."):
            _, rank, name = field.split(".", 2)
            source = candidates.get(int(rank)) if rank.isdigit() else None
            if source is None:
                problems.append(f"the page shows a candidate {rank} the search did not ledger")
                continue
            value = source.get(name)
            if name == "gallery" and not value:  # a one-gallery search names its gallery once, not per candidate
                value = record.get("gallery")
            expected = cell(name, value)
        else:
            expected = cell(field, record.get(field))
        if shown != expected:
            problems.append(f"the page shows {field} as {shown[:80]!r} but the ledgered search says "
                            f"{expected[:80]!r}: the page was edited")
    return problems


def _probe(probe: dict) -> str:
    if probe.get("data"):
        return (f'<img class="probe" data-sha256="{escape(probe["sha256"])}" alt="the probe photo" '
                f'src="{data_uri(probe["data"], probe["mime"])}">'
                f'<p class="muted">The photo searched with, as uploaded (sha256 {escape(probe["sha256"])}, the '
                "hash the search ledgered).</p>")
    withheld = f'<p class="withheld">The probe photo is not in this package: {escape(probe["reason"])}.</p>'
    if probe.get("review_crop"):
        return (withheld + '<img class="probe-crop" alt="the probe\'s face, as kept for review" '
                f'src="{data_uri(probe["review_crop"], "image/jpeg")}">'
                '<p class="muted">The probe\'s face as the store keeps it for its reviewers (the face and a margin '
                "around it, at most 320 px; not the photo the ledger's hash covers).</p>")
    return withheld


def _when(value) -> str:
    """An ISO time as "2026-11-26 16:25:38 UTC"."""
    text = str(value or "")
    return escape(text[:19].replace("T", " ") + " UTC") if len(text) >= 19 else _text(value)


def _reviews(reviews: list[dict]) -> str:
    if not reviews:
        return '<p class="muted">No reviewer has recorded a decision on this candidate.</p>'
    items = "".join(f"<li><b>{_text(r.get('decision'))}</b> by {_text(r.get('reviewer'))}, {_when(r.get('at'))}"
                    + (f": “{escape(str(r['note']))}”" if r.get("note") else "") + "</li>" for r in reviews)
    return f'<ul class="reviews">{items}</ul>'


def _candidate(c: dict, gallery: str | None) -> str:
    if c.get("erased"):
        face = (f'<p class="withheld">Face and name withheld: this person was erased on {escape(c["erased"]["on"])}, '
                f'receipt {escape(c["erased"]["receipt"])}.</p>')
        name = '<span class="muted">withheld (erased)</span>'
    else:
        face = (f'<img alt="enrolled face of candidate {c["rank"]}" src="{data_uri(c["crop"], "image/jpeg")}">'
                if c.get("crop") else f'<p class="withheld">Face not shown: {escape(c["crop_reason"])}.</p>')
        name = escape(str(c.get("subject")))
    above = c.get("above_threshold", True)
    facts = (_ledgered(CANDIDATE_FACTS, {**c, "gallery": c.get("gallery") or gallery}, f"candidate.{c['rank']}.")
             + _facts([("review status", c.get("status")), ("label", c.get("label"))]))
    badge = '<span class="badge yes">above threshold</span>' if above else '<span class="badge no">below threshold</span>'
    return (f'<div class="card"><h3>Candidate {c["rank"]}: {name}</h3>{badge}{face}{facts}'
            f"<h3>Reviews</h3>{_reviews(c.get('reviews', []))}</div>")


def _chain(package: dict) -> str:
    proof = package["proof"]
    entries = proof["entries"]
    first, last = entries[0]["seq"], entries[-1]["seq"]
    ends = proof["ends_at"]
    why = {"anchor": f"the first signed anchor at or after the search (entry {last})",
           "head": f"the ledger's newest entry when this was exported (entry {last}); no signed anchor covered the "
                   "search yet, so anchor the ledger (<code>faceledger audit anchor</code>) and export again for a proof that "
                   "reaches one",
           "limit": f"entry {last}: the package carries at most {len(entries)} entries, so it stops short of the "
                    "next anchor"}[ends["reason"]]
    own = [e for e in entries if e["entry_id"] in package["own_entries"]]
    rows = "".join(f'<div class="entry"><b>entry {e["seq"]}</b>: {_text(e.get("action"))}'
                   + (f" (content withheld: {escape(e['withheld'])})" if e.get("withheld") else
                      f" by {_text(e.get('actor'))}, {_text(e.get('created_at'))}")
                   + f'<br><span class="mono">id {escape(e["entry_id"])}<br>hash {escape(e["hash"])}<br>prev '
                   f"{escape(e['prev_hash'])}</span></div>" for e in own)
    withheld = [e for e in entries if e.get("withheld")]
    erased = [e for e in withheld if e["withheld"] == ERASED]
    unread = [e for e in withheld if e["withheld"] != ERASED]
    kinds = []
    if erased:
        kinds.append(f"{len(erased)} naming a person erased since")
    if unread:
        actions = sorted({str(e.get("action")) for e in unread})
        kinds.append(f"{len(unread)} of kinds the {escape(package['exported_role'])} role may not read in the "
                     f"audit log ({escape(', '.join(actions))})")
    withheld_text = (f'<p class="note">{len(withheld)} entr{"y" if len(withheld) == 1 else "ies"} of the segment '
                     f"are carried without their content: {'; '.join(kinds)}. Each keeps its hash, pinned by the "
                     "entry after it, but the chain cannot be recomputed across it: the search is tied to the "
                     "anchor only when no such entry lies between them. A package exported by an auditor or admin "
                     "carries every entry in full, except those naming a person erased since.</p>"
                     ) if withheld else ""
    others = len(entries) - len(own)
    return (f"<p>The ledger entries of this search and its reviews:</p>{rows}"
            f"<p>Proof that they are in the chain: the file embeds entries {first} to {last} of the ledger "
            f"({others} of them other records, needed only to recompute the hashes), ending at {why}. Anyone can "
            "recompute every hash and link without the database: <span class=\"mono\">faceledger evidence verify "
            "FILE --anchor ANCHORS.jsonl --public-key anchor-public.pem</span>.</p>"
            f"{withheld_text}")


def render(package: dict) -> str:
    """The whole HTML document of an evidence package."""
    record = package["record"]
    shown = {**record, "galleries": record.get("galleries") or record.get("gallery")}
    search_facts = _ledgered(SEARCH_FACTS, shown)
    threshold_facts = _ledgered(THRESHOLD_FACTS, shown)
    candidates = package["candidates"]
    cards = ('<div class="cards">' + "".join(_candidate(c, record.get("gallery")) for c in candidates) + "</div>" if candidates else
             '<p>No candidate: nothing scored above the threshold.</p>')
    title = f"Evidence package: search {record['ledger_entry']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">Exported by {escape(package["exported_by"])} ({escape(package["exported_role"])}) at
{escape(package["exported_at"])} UTC from faceledger {escape(package["version"])}. This one file holds everything
shown; it loads nothing from elsewhere. Its sha256 is recorded in the ledger as an <code>evidence.export</code>
entry made when it was exported.</p>
<p class="note">Candidates are leads for a person to assess, not identifications. Each carries its estimated
false-match rate; the threshold below is what the engine promised for a gallery of this size.</p>
<h2>The search</h2>{search_facts}
<h2>Threshold and how it was set</h2>{threshold_facts}
<h2>Probe</h2>{_probe(package["probe"])}
<h2>Candidates and reviews</h2>{cards}
<h2>Ledger</h2>{_chain(package)}
{embed(package["proof"])}
</body></html>
"""
