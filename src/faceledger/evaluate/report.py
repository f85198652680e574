"""metrics.json and a self-contained report.html with matplotlib plots (Agg backend, PNG, embedded as data:
URIs; the PNG files are also written beside it, but the page does not need them). A plot with nothing to
draw is not written: the page says so in a sentence instead of showing empty axes."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from .protocols import finite

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _discard(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _save(fig, out: Path, name: str) -> str:
    path = out / name
    fig.tight_layout()
    fig.savefig(path, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _floor(values: np.ndarray, n: int) -> np.ndarray:
    """Zero rates drawn at half the smallest measurable rate, so log axes can show them."""
    return np.maximum(values, 0.5 / max(n, 1))


def verification_plots(curves: dict, result: dict, out: Path) -> dict[str, str]:
    plt = _plt()
    far, frr = curves["far"], curves["frr"]
    n_imp, n_gen = result["impostor_pairs"], result["genuine_pairs"]
    plots = {}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(_floor(far, n_imp), 1 - frr, color=COLOURS[0], drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_xlim(0.5 / max(n_imp, 1), 1)
    tar_at_zero_far = (1 - frr)[far == 0]  # the best TAR with no impostor accepted: where the curve starts
    ax.set_ylim(max(0.0, float(tar_at_zero_far.max()) - 0.02) if len(tar_at_zero_far) else 0.0, 1.002)
    ax.set_xlabel(f"false accept rate (FAR, {n_imp:,} impostor pairs)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(f"ROC (AUC {result['auc']:.4f})")
    plots["roc"] = _save(fig, out, "roc.png")

    shown = (far > 0) & (frr > 0)  # a DET curve lives where both error rates are measurable
    op = result.get("at_operating_threshold")
    plots["det"] = None  # nothing to draw when no threshold has both error rates above zero
    if shown.any():
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(far[shown], frr[shown], color=COLOURS[1], drawstyle="steps-post")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("false match rate (FMR)")
        ax.set_ylabel("false non-match rate (FNMR)")
        ax.set_title(f"DET (EER {100 * result['eer']:.2f} %)")
        if op:
            ax.plot(max(op["fmr"], 0.5 / n_imp), max(op["fnmr"], 0.5 / n_gen), "ko",
                    label=f"engine threshold {op['threshold']:.3f}")
            ax.legend(loc="upper right")
        plots["det"] = _save(fig, out, "det.png")

    fig, ax = plt.subplots(figsize=(6, 4.2))
    bins = np.linspace(-0.3, 1.0, 66)
    ax.hist(curves["impostor"], bins=bins, alpha=0.6, color=COLOURS[1], label=f"impostor ({len(curves['impostor']):,})")
    ax.hist(curves["genuine"], bins=bins, alpha=0.6, color=COLOURS[0], label=f"genuine ({len(curves['genuine']):,})")
    if op:
        ax.axvline(op["threshold"], color="k", linestyle="--", label=f"engine threshold {op['threshold']:.3f}")
    ax.set_xlabel("score (cosine similarity)")
    ax.set_ylabel("pairs (count)")
    ax.set_title("score distributions (pairs where both faces were found)")
    ax.legend()
    plots["scores"] = _save(fig, out, "scores.png")
    return plots


def identification_plots(runs: list[dict], out: Path) -> dict[str, str]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    styles = {"single": "-", "multi": "--"}
    sizes = sorted({r["gallery_identities"] for r in runs})
    drawn = 0
    for r in runs:
        c = r["_curve"]
        colour = COLOURS[sizes.index(r["gallery_identities"]) % len(COLOURS)]
        shown = (c["fpir"] > 0) & (c["fnir"] > 0)
        drawn += int(shown.any())
        ax.plot(c["fpir"][shown], c["fnir"][shown],
                linestyle=styles.get(r["template"], ":"), color=colour, drawstyle="steps-post",
                label=f"N={r['gallery_identities']:,}, {r['template']}-image template")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive identification rate (FPIR)")
    ax.set_ylabel("false negative identification rate (FNIR, rank 1)")
    ax.set_title("open-set identification DET")
    if not drawn:  # no run has both error rates above zero anywhere: no curve to show
        _discard(fig)
        return {"det": None}
    ax.legend(fontsize=8)
    return {"det": _save(fig, out, "identification_det.png")}


def group_plots(groups: dict, rate_keys: tuple[str, str], out: Path, prefix: str) -> dict[str, str]:
    plt = _plt()
    plots = {}
    for column, data in groups.items():
        labels = list(data["groups"])
        from matplotlib.ticker import MaxNLocator, PercentFormatter

        fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(labels) + 2.0))
        for ax, key, colour in zip(axes, rate_keys, COLOURS):
            rates = [data["groups"][g][key]["rate"] for g in labels]
            lo = [data["groups"][g][key]["wilson95"][0] for g in labels]
            hi = [data["groups"][g][key]["wilson95"][1] for g in labels]
            y = np.arange(len(labels))
            r = np.array([0.0 if (v is None or math.isnan(v)) else v for v in rates])
            ax.barh(y, r, color=colour, alpha=0.8)
            ax.errorbar(r, y, xerr=[np.maximum(r - np.array(lo), 0), np.maximum(np.array(hi) - r, 0)],
                        fmt="none", ecolor="k", capsize=3)
            flagged = set(data["flags"][key]["flagged"])
            ax.set_yticks(y, [f"{g} ⚑" if g in flagged else g for g in labels])
            ax.invert_yaxis()
            ax.set_xlabel(f"{key.upper()} (bars: 95 % Wilson)")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
        fig.suptitle(f"per-group error rates: {column}")
        plots[column] = _save(fig, out, f"{prefix}_groups_{_slug(column)}.png")
    return plots


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)[:40]


def write_json(out: Path, payload: dict) -> Path:
    path = out / "metrics.json"
    path.write_text(json.dumps(finite(payload), indent=2) + "\n")
    return path


NOTHING_TO_DRAW = ("nothing to draw: no threshold gives both error rates above zero in this sample (too few "
                   "errors to plot on log axes); the tables give the figures")


def _img(out: Path, name: str | None, alt: str, wide: bool = False) -> str:
    if name is None:
        return f"<p class='empty'><b>{html.escape(alt)}:</b> {NOTHING_TO_DRAW}.</p>"
    data = base64.b64encode((out / name).read_bytes()).decode()
    style = ' style="width:75%"' if wide else ""
    return f'<figure{style}><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pct(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.{digits}f} %"


def rate(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2e}" if 0 < x < 1e-3 else pct(x)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.summary{background:#f4f6f8;border-left:4px solid #1f77b4;padding:.8em 1em;margin:1em 0}
.warn{background:#fff4e5;border-left:4px solid #ff7f0e;padding:.6em 1em;margin:.6em 0}
table{border-collapse:collapse;margin:.6em 0;font-size:.82em} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f0f0f0;white-space:normal;vertical-align:bottom} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;vertical-align:top;width:48%;margin:.5em 1% .5em 0}
@media (max-width:700px){figure,figure[style]{width:100%!important}} .empty{color:#555}
table{display:block;overflow-x:auto;max-width:100%} figure img{width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} code{background:#f3f3f3;padding:0 .2em} .flag{color:#d62728;font-weight:bold}
"""


def write_html(out: Path, *, title: str, summary: list[str], warnings: list[str], sections: list[tuple[str, str]]) -> Path:
    parts = [("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
              "<meta name='viewport' content='width=device-width, initial-scale=1'>"
              f"<title>{html.escape(title)}</title>"),
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             "<div class='summary'>" + "".join(f"<p>{s}</p>" for s in summary) + "</div>"]
    parts += [f"<div class='warn'>⚠ {html.escape(w)}</div>" for w in warnings]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts.append("<p style='color:#888;font-size:.8em'>Written by <code>faceledger evaluate</code>; "
                 "every number is also in metrics.json.</p></body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def groups_html(groups: dict, keys: tuple[str, str], plots: dict[str, str], out: Path, factor: float,
                threshold: float, cross: bool) -> str:
    body = [f"<p>Error rates per group at the operating threshold {threshold:.4f}; a group is flagged "
            f"<span class='flag'>⚑</span> when its rate exceeds {factor:g}× the best group's (the best group's "
            "rate is floored at one error in its sample). Labels come from the user's groups file; "
            "faceledger supplies none.</p>"]
    for column, data in groups.items():
        rows = []
        for g, d in data["groups"].items():
            cells = [html.escape(g), f"{d['identities']:,}"]
            for key in keys:
                r = d[key]
                flag = " <span class='flag'>⚑</span>" if g in data["flags"][key]["flagged"] else ""
                cells.append(f"{rate(r['rate'])}{flag} ({r['errors']:,} / {r['trials']:,}; "
                             f"{rate(r['wilson95'][0])} – {rate(r['wilson95'][1])})")
            rows.append(cells)
        body.append(f"<h3>{html.escape(column)}</h3>")
        body.append(_table(["group", "identities labelled"] + [f"{k.upper()} (errors / trials; 95 % Wilson)" for k in keys], rows))
        if cross and data.get("cross_group_fmr"):
            names = list(data["cross_group_fmr"])
            body.append("<p>Impostor (false-match) rate between groups:</p>")
            body.append(_table(["probe \\ reference"] + names, [
                [html.escape(a)] + [f"{rate(data['cross_group_fmr'][a][b]['rate'])} "
                                    f"({data['cross_group_fmr'][a][b]['trials']:,})" for b in names] for a in names]))
        if column in plots:
            body.append(_img(out, plots[column], f"per-group error rates: {column}", wide=True))
    return "".join(body)
