"""An evidence package as one self-contained HTML file: inline CSS (with print rules, so it prints to PDF),
images as data: URIs, no script and no external reference; the chain proof as an inert JSON block.

`render(package)` is pure: the service (services/evidence.py) gathers `package`, this only formats it.
"""

from __future__ import annotations

import base64
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


def _probe(probe: dict) -> str:
    if probe.get("data"):
        return (f'<img class="probe" data-sha256="{escape(probe["sha256"])}" alt="the probe photo" '
                f'src="{data_uri(probe["data"], probe["mime"])}">'
                f'<p class="muted">The photo searched with, as uploaded (sha256 {escape(probe["sha256"])}, the '
                "hash the search ledgered).</p>")
    return f'<p class="withheld">The probe photo is not in this package: {escape(probe["reason"])}.</p>'


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
    facts = _facts([
        ("gallery", c.get("gallery") or gallery), ("subject id", c.get("subject_id")), ("score", c.get("score")),
        ("false-match rate (FMR)", _rate(c.get("false_match_rate"))),
        ("FMR upper bound (95%)", _rate(c.get("false_match_rate_upper"))),
        ("chance a non-mate in the gallery scores this high", _rate(c.get("gallery_false_positive_chance"))),
        ("review status", c.get("status")), ("label", c.get("label"))])
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
    search_facts = _facts([
        ("ledger entry", record["ledger_entry"]), ("searched by", record.get("searched_by")),
        ("searched at", record.get("searched_at")), ("purpose", record.get("purpose")),
        ("case", record.get("case")), ("authorisation", record.get("authorisation")),
        ("mode", record.get("mode")), ("decision", record.get("decision")),
        ("galleries searched", record.get("galleries") or record.get("gallery")),
        ("galleries that refused", [f"{r.get('gallery')}: {r.get('reason')}" for r in record.get("refused") or []]),
        ("faces compared (N)", record.get("gallery_size")), ("model", record.get("model_id")),
        ("calibration", record.get("calibration_id")), ("probe sha256", record.get("probe_sha256")),
        ("probe quality", record.get("probe_quality")), ("probe kept until", record.get("probe_expires"))])
    threshold_facts = _facts([
        ("threshold (score)", record.get("threshold")), ("target false-positive identification rate (FPIR)",
                                                        _rate(record.get("target_fpir"))),
        ("predicted FPIR at this threshold", _rate(record.get("predicted_fpir"))),
        ("set by", record.get("calibration_source")), ("supported by data", record.get("threshold_supported")),
        ("extrapolated", record.get("threshold_extrapolated")),
        ("extrapolation factor", record.get("extrapolation_factor")),
        ("how it was set", record.get("threshold_explanation")), ("what the answer means", record.get("meaning"))])
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
