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


def write_report(summary: dict, out_dir: Path, *, threshold_curve: list[tuple[int, float]]) -> dict:
    """Write transparency.json, the charts and transparency.html into out_dir; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "transparency.json").write_text(json.dumps(summary, indent=2, default=str))
    charts = _charts(summary, out_dir, threshold_curve)
    (out_dir / "transparency.html").write_text(_html(summary, charts))
    return {"json": str(out_dir / "transparency.json"), "html": str(out_dir / "transparency.html"),
            "charts": [str(out_dir / c) for c in charts.values()]}


def _charts(summary: dict, out_dir: Path, threshold_curve: list[tuple[int, float]]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    bars = {
        "searches_by_purpose": ("Searches by stated purpose", summary["searches"]["by_purpose"]),
        "searches_by_user": ("Searches by user", summary["searches"]["by_user"]),
        "search_outcomes": ("Search outcomes", summary["searches"]["by_outcome"]),
        "review_outcomes": ("Reviewer decisions", summary["reviews"]["by_decision"]),
        "denied_attempts": ("Denied attempts by action", summary["denied"]["by_attempted_action"]),
    }
    files = {}

    def save(fig, name: str, *, title: str, xlabel: str, ylabel: str | None = None, legend: bool = False) -> None:
        ax = fig.axes[0]
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        if legend:
            ax.legend(fontsize=8)
        fig.tight_layout()
        files[name] = f"{name}.png"
        fig.savefig(out_dir / files[name], dpi=110)
        plt.close(fig)

    for name, (title, counts) in bars.items():
        labels = list(counts) or ["(none)"]
        fig, ax = plt.subplots(figsize=(5, 0.9 + 0.35 * len(labels)))
        ax.barh(labels[::-1], [counts.get(k, 0) for k in labels][::-1], color="#3b6ea5", height=0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        save(fig, name, title=title, xlabel="count")
    fig, ax = plt.subplots(figsize=(5, 3))
    for gallery, points in summary["gallery_sizes"].items():
        ax.plot(range(len(points)), [p[1] for p in points], marker=".", label=gallery)
    save(fig, "gallery_sizes", title="Gallery size seen by each search", xlabel="search (in time order)",
         ylabel="faces", legend=bool(summary["gallery_sizes"]))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogx([n for n, _ in threshold_curve], [t for _, t in threshold_curve], color="#a53b3b")
    for point in summary["operating_points"]:
        ax.plot([max(point["gallery_size"], 1)], [point["threshold"]], "o", label=point["gallery"])
    save(fig, "thresholds", title="Open-set threshold vs gallery size (target FPIR 1%)", xlabel="faces in gallery",
         ylabel="score threshold", legend=bool(summary["operating_points"]))
    return files


def _html(summary: dict, charts: dict) -> str:
    s = summary["searches"]
    share = "n/a" if s["share_no_match"] is None else f"{s['share_no_match']:.0%}"
    points = "".join(
        f"<tr><td>{html.escape(p['gallery'])}</td><td>{p['gallery_size']}</td><td>{p['target_fpir']:g}</td>"
        f"<td>{p['threshold']:.3f}</td><td>{p['predicted_fmr']:.2e}</td>"
        f"<td>{html.escape(str(p.get('calibration_source', 'packaged')))}</td>"
        f"<td>{'extrapolated' if p.get('extrapolated') else 'within the data'}</td>"
        f"<td>{'yes' if p['supported'] else 'no: beyond what the calibration data can support'}</td></tr>"
        for p in summary["operating_points"])
    figures = "".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(n)}"></figure>' for n, f in charts.items())
    period = summary["period"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>faceledger transparency report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
figure{{display:inline-block;margin:.5rem;width:min(28rem,100%);vertical-align:top}}img{{width:100%}}.big{{font-size:1.3rem}}</style></head><body>
<h1>Transparency report</h1>
<p>From the tamper-evident ledger: {period['ledger_entries']} entries between {html.escape(str(period['first_entry']))}
and {html.escape(str(period['last_entry']))}{' (since ' + html.escape(period['since']) + ')' if period['since'] else ''}.</p>
<p class="big"><b>{s['total']}</b> searches, of which <b>{share}</b> answered "no match" (completed searches);
{summary['verifications']['total']} 1:1 verifications; {summary['reviews']['total']} reviewer decisions;
<b>{summary['denied']['total']}</b> denied attempts; {summary['erasures']['erased']} erasures
({summary['erasures']['images_removed']} images removed); {summary['purges']['runs']} retention purges
({summary['purges']['images_removed']} images, {summary['purges']['probes_removed']} probes removed).</p>
<h2>Operating thresholds now</h2>
<table><tr><th>gallery</th><th>faces</th><th>target FPIR</th><th>threshold</th><th>predicted FMR per comparison</th>
<th>calibration</th><th>estimate</th><th>supported by calibration</th></tr>{points}</table>
<p>"packaged": the impostor sample shipped with the model; "combined": that sample and the gallery's own
cross-subject pairs, whichever asks for the higher threshold; `faceledger calibration show --gallery G` tells
which samples, how many pairs, and how far each figure is extrapolated.</p>
<h2>Charts</h2>{figures}
<h2>All figures</h2><pre>{html.escape(json.dumps(summary, indent=2, default=str))}</pre>
</body></html>"""
