"""The transparency report: what was searched, by whom, why, with what outcome — from the ledger alone."""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path

SEARCH_OUTCOMES = ("match", "no_match", "failed")


def summarize(entries: list[dict], galleries: list[dict], *, since: str | None) -> dict:
    """Pure: ledger entries (oldest first) + the galleries' current operating points -> report figures."""
    by_action: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        by_action[entry["action"]].append(entry)
    searches = by_action["search"]
    done = [s for s in searches if s["payload"].get("decision") in ("match", "no_match")]
    return {
        "period": {"since": since, "first_entry": entries[0]["created_at"] if entries else None,
                   "last_entry": entries[-1]["created_at"] if entries else None, "ledger_entries": len(entries)},
        "searches": {
            "total": len(searches),
            "by_purpose": _count(searches, lambda e: e["payload"].get("purpose") or "(none)"),
            "by_user": _count(searches, lambda e: e["actor"]),
            "by_mode": _count(done, lambda e: e["payload"].get("mode", "open-set")),
            "by_outcome": {k: sum(1 for s in searches if s["payload"].get("decision") == k) for k in SEARCH_OUTCOMES},
            "share_no_match": (sum(1 for s in done if s["payload"]["decision"] == "no_match") / len(done)) if done else None,
            "candidates_returned": _count(done, lambda e: len(e["payload"].get("candidates", []))),
        },
        "verifications": {"total": len(by_action["verify"]),
                          "by_outcome": _count(by_action["verify"], lambda e: e["payload"].get("decision"))},
        "reviews": {"total": len(by_action["review"]),
                    "by_decision": _count(by_action["review"], lambda e: e["payload"].get("decision")),
                    "by_mode": _count(by_action["review"], lambda e: e["payload"].get("mode") or "open-set")},
        "denied": {"total": len(by_action["denied"]),
                   "by_attempted_action": _count(by_action["denied"], lambda e: e["payload"].get("attempted")),
                   "by_user": _count(by_action["denied"], lambda e: e["actor"])},
        "erasures": {"requests": len(by_action["erase"]),
                     "erased": sum(1 for e in by_action["erase"] if e["payload"].get("outcome") == "erased"),
                     "no_match": sum(1 for e in by_action["erase"] if e["payload"].get("outcome") == "no match"),
                     "images_removed": sum(e["payload"].get("images", 0) for e in by_action["erase"]),
                     "subjects_removed": sum(len(e["payload"].get("subjects", [])) for e in by_action["erase"])},
        "purges": {"runs": len(by_action["purge"]),
                   "images_removed": sum(e["payload"].get("images", 0) for e in by_action["purge"]),
                   "probes_removed": sum(e["payload"].get("probes", 0) for e in by_action["purge"])},
        "enrolments": {"batches": len(by_action["enroll"]),
                       "images": sum(len(e["payload"].get("images", [])) for e in by_action["enroll"]),
                       "by_legal_basis": _count_weighted(by_action["enroll"], "legal_basis")},
        "gallery_sizes": _gallery_sizes(searches),
        "operating_points": galleries,
    }


def _count(entries: list[dict], key) -> dict:
    return dict(Counter(str(key(e)) for e in entries).most_common())


def _count_weighted(entries: list[dict], field: str) -> dict:
    counts: Counter = Counter()
    for e in entries:
        counts[e["payload"].get(field, "(none)")] += len(e["payload"].get("images", []))
    return dict(counts.most_common())


def _gallery_sizes(searches: list[dict]) -> dict:
    """Gallery size as seen by each search, over time: {gallery: [[time, size], ...]}."""
    series: dict[str, list] = defaultdict(list)
    for s in searches:
        if "gallery_size" in s["payload"]:
            series[s["payload"]["gallery"]].append([s["created_at"], s["payload"]["gallery_size"]])
    return dict(series)


def write_report(summary: dict, out_dir: Path, *, threshold_curve: list[tuple[int, float]],
                 calibrations: list[tuple[str, dict, dict]] = ()) -> dict:
    """Write transparency.json (the figures, for machines) and transparency.html (one self-contained file:
    charts embedded, every figure in a table) into out_dir; return the paths. `calibrations` holds, per
    gallery, its name, `calibration show`'s payload and the observed survival curves to plot with it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "transparency.json").write_text(json.dumps(summary, indent=2, default=str))
    (out_dir / "transparency.html").write_text(report_html(summary, threshold_curve, calibrations))
    return {"json": str(out_dir / "transparency.json"), "html": str(out_dir / "transparency.html")}


def charts_html(summary: dict, threshold_curve: list[tuple[int, float]],
                calibrations: list[tuple[str, dict, dict]] = ()) -> str:
    """The report's charts as <figure>s with data: URIs (a sentence instead of a chart with no data)."""
    from .report_charts import (
        bar_chart,
        calibration_chart,
        figure_or_sentence,
        line_chart,
        threshold_curve_chart,
    )

    s = summary["searches"]
    parts = [
        figure_or_sentence(bar_chart(s["by_purpose"], title="Searches by stated purpose", unit="searches"),
                           "Searches by stated purpose", "no search in this period."),
        figure_or_sentence(bar_chart(s["by_user"], title="Searches by user", unit="searches"),
                           "Searches by user", "no search in this period."),
        figure_or_sentence(bar_chart(s["by_outcome"], title="Search outcomes", unit="searches"),
                           "Search outcomes", "no search in this period."),
        figure_or_sentence(bar_chart(summary["reviews"]["by_decision"], title="Reviewer decisions", unit="decisions"),
                           "Reviewer decisions", "no reviewer recorded a decision in this period."),
        figure_or_sentence(bar_chart(summary["denied"]["by_attempted_action"], title="Denied attempts by action",
                                     unit="attempts"),
                           "Denied attempts by action", "nothing was refused in this period."),
        figure_or_sentence(line_chart({g: [p[1] for p in points] for g, points in summary["gallery_sizes"].items()},
                                      title="Gallery size seen by each search", xlabel="search (in time order)",
                                      ylabel="faces in the gallery"),
                           "Gallery size seen by each search", "no search in this period, so no size was seen."),
        figure_or_sentence(threshold_curve_chart(threshold_curve, summary["operating_points"]),
                           "Open-set threshold against gallery size", "no calibration curve was given."),
    ]
    for name, info, empirical in calibrations:
        caption = (f"Calibration of gallery {name}: the dots are its thresholds for FPIR 0.1, 0.01, 0.001 and its "
                   "target (in the fitted tail they use its 95% bootstrap bound, so they sit on or above the fit)")
        parts.append(figure_or_sentence(calibration_chart(info, empirical), caption, "no calibration data."))
    return "".join(parts)


def _table(title: str, counts: dict, unit: str) -> str:
    if not counts:
        return f"<h3>{html.escape(title)}</h3><p>None.</p>"
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in counts.items())
    return (f"<h3>{html.escape(title)}</h3><table><tr><th>{html.escape(title.split(' by ')[-1])}</th>"
            f"<th>{html.escape(unit)}</th></tr>{rows}</table>")


def figures_html(summary: dict) -> str:
    """Every figure of the summary as small tables (what transparency.json holds, for people)."""
    s, v, r, d, e, p, n = (summary[k] for k in ("searches", "verifications", "reviews", "denied", "erasures",
                                                  "purges", "enrolments"))
    sizes = {g: f"{points[-1][1]} (seen by {len(points)} searches)" for g, points in summary["gallery_sizes"].items()}
    totals = {"searches": s["total"], "1:1 verifications": v["total"], "reviewer decisions": r["total"],
              "denied attempts": d["total"], "erasure requests": e["requests"], "people erased": e["erased"],
              "erasures that matched nobody": e["no_match"], "images removed by erasure": e["images_removed"],
              "subjects removed by erasure": e["subjects_removed"], "retention purges": p["runs"],
              "images removed by purges": p["images_removed"], "probes removed by purges": p["probes_removed"],
              "enrolment batches": n["batches"], "images enrolled": n["images"]}
    return "".join([
        _table("Totals by kind", totals, "count"),
        _table("Searches by purpose", s["by_purpose"], "searches"),
        _table("Searches by user", s["by_user"], "searches"),
        _table("Searches by mode", s["by_mode"], "searches"),
        _table("Searches by outcome", s["by_outcome"], "searches"),
        _table("Searches by candidates returned", s["candidates_returned"], "searches"),
        _table("Verifications by outcome", v["by_outcome"], "verifications"),
        _table("Reviews by decision", r["by_decision"], "decisions"),
        _table("Reviews by mode", r["by_mode"], "decisions"),
        _table("Denied attempts by action", d["by_attempted_action"], "attempts"),
        _table("Denied attempts by user", d["by_user"], "attempts"),
        _table("Images enrolled by legal basis", n["by_legal_basis"], "images"),
        _table("Gallery size by gallery (last seen)", sizes, "faces"),
    ])


CSS = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem;color:#222}
p{overflow-wrap:anywhere}table{border-collapse:collapse;margin:.3rem 0 1rem;max-width:100%}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
figure{display:inline-block;margin:.4rem;width:min(29rem,100%);vertical-align:top}figure img{width:100%}
figcaption{font-size:.85rem;color:#555}.big{font-size:1.2rem}.empty{color:#555}.wide{overflow-x:auto}
@media print{figure,table{break-inside:avoid}}"""


def report_html(summary: dict, threshold_curve: list[tuple[int, float]],
                calibrations: list[tuple[str, dict, dict]] = ()) -> str:
    s = summary["searches"]
    share = "n/a" if s["share_no_match"] is None else f"{s['share_no_match']:.0%}"
    points = "".join(
        f"<tr><td>{html.escape(p['gallery'])}</td><td>{p['gallery_size']}</td><td>{p['target_fpir']:g}</td>"
        f"<td>{p['threshold']:.3f}</td><td>{p['predicted_fmr']:.2e}</td>"
        f"<td>{html.escape(str(p.get('calibration_source', 'packaged')))}</td>"
        f"<td>{'extrapolated' if p.get('extrapolated') else 'within the data'}</td>"
        f"<td>{'yes' if p['supported'] else 'no: beyond what the calibration data can support'}</td></tr>"
        for p in summary["operating_points"])
    points_table = (f"""<div class="wide"><table><tr><th>gallery</th><th>faces</th><th>target FPIR</th><th>threshold</th>
<th>predicted FMR per comparison</th><th>calibration</th><th>estimate</th><th>supported by calibration</th></tr>{points}
</table></div>""" if points else "<p>No gallery yet.</p>")
    period = summary["period"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>faceledger transparency report</title><style>{CSS}</style></head><body>
<h1>Transparency report</h1>
<p>From the tamper-evident ledger: {period['ledger_entries']} entries between {html.escape(str(period['first_entry']))}
and {html.escape(str(period['last_entry']))}{' (since ' + html.escape(period['since']) + ')' if period['since'] else ''}.</p>
<p class="big"><b>{s['total']}</b> searches, of which <b>{share}</b> answered "no match" (completed searches);
{summary['verifications']['total']} 1:1 verifications; {summary['reviews']['total']} reviewer decisions;
<b>{summary['denied']['total']}</b> denied attempts; {summary['erasures']['erased']} erasures
({summary['erasures']['images_removed']} images removed); {summary['purges']['runs']} retention purges
({summary['purges']['images_removed']} images, {summary['purges']['probes_removed']} probes removed).</p>
<h2>Operating thresholds now</h2>{points_table}
<p>"packaged": the impostor sample shipped with the model; "combined": that sample and the gallery's own
cross-subject pairs, whichever asks for the higher threshold; <code>faceledger calibration show --gallery G</code>
tells which samples, how many pairs, and how far each figure is extrapolated; the calibration charts below
draw it.</p>
<h2>Charts</h2>{charts_html(summary, threshold_curve, calibrations)}
<h2>All figures</h2>{figures_html(summary)}
</body></html>"""


def calibration_html(name: str, info: dict, empirical: dict) -> str:
    """`faceledger calibration show --html`: one gallery's calibration as a self-contained page."""
    from .report_charts import calibration_chart, figure_or_sentence

    rows = "".join(
        f"<tr><td>{r['target_fpir']:g}</td><td>{r['threshold']:.4f}</td><td>{(r['predicted_fpir'] or 0):.3g}</td>"
        f"<td>{r['per_comparison_fmr']:.3g}</td><td>{html.escape(str(r['binding']))}</td>"
        f"<td>{'x{:g}'.format(r['extrapolation_factor']) if r['extrapolated'] else 'no'}</td>"
        f"<td>{'yes' if r['supported'] else 'NO'}</td></tr>" for r in info.get("thresholds", []))
    notes = [info.get("gallery_note")] + [r["explanation"] for r in info.get("thresholds", [])
                                          if r["target_fpir"] == info.get("gallery_target_fpir")]
    chart = figure_or_sentence(calibration_chart(info, empirical), f"Calibration of gallery {name}",
                               "no calibration data to draw.")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>faceledger calibration: {html.escape(name)}</title><style>{CSS} figure{{width:min(44rem,100%)}}</style></head><body>
<h1>Calibration of gallery {html.escape(name)}</h1>
<p>{info.get('gallery_faces', 0):,} faces; calibration {html.escape(str(info.get('calibration_id')))} ({html.escape(
        str(info.get('source')))}); target FPIR {info.get('gallery_target_fpir')}.</p>
{chart}
<div class="wide"><table><tr><th>target FPIR</th><th>threshold</th><th>predicted FPIR</th><th>FMR per comparison</th>
<th>set by</th><th>extrapolated</th><th>supported</th></tr>{rows}</table></div>
{''.join(f'<p>{html.escape(n)}</p>' for n in notes if n)}
</body></html>"""
