"""Charts for the self-contained HTML reports (transparency, evaluation, calibration): matplotlib drawn to
SVG and embedded as a data: URI, so a report is one file that needs nothing beside it.

A chart with no data is not drawn: `figure_or_sentence` gives a sentence in its place. Every axis names
its quantity and unit. Figures are made with matplotlib's object API (no pyplot state, so the server's
threads can draw at once), and each chart is kept for its data (a small LRU cache): a report asked for
again with the same figures does not redraw them. `calibration_chart` draws what `faceledger calibration show` reports about a
gallery (its public payload): each sample's impostor-score survival, the fitted tail, where the data end
and where the estimate stops being supported, and the thresholds at the gallery's target.
"""

from __future__ import annotations

import base64
import io
import json
import math
from functools import lru_cache
from html import escape

UNSUPPORTED_FACTOR = 100.0
"""An estimate is not supported more than this factor below the FMR its data reach (docs/accuracy.md)."""


def _axes(width: float, height: float):
    """A new (figure, axes) outside pyplot, with text kept as text in the SVG (small, searchable, sharp)."""
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.fonttype"] = "none"
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def svg_data_uri(fig) -> str:
    """The figure as an SVG data: URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def figure(uri: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption>'
            "</figure>")


def figure_or_sentence(uri: str | None, caption: str, empty: str) -> str:
    """The chart, or the sentence that says there is nothing to draw."""
    return figure(uri, caption) if uri else f'<p class="empty"><b>{escape(caption)}:</b> {escape(empty)}</p>'


def bar_chart(counts: dict, *, title: str, unit: str) -> str | None:
    """Horizontal bars of counts (in the order given), or None when there is nothing to count."""
    pairs = [[str(k), v] for k, v in counts.items() if v]
    return _bar_chart(json.dumps(pairs), title, unit) if pairs else None


@lru_cache(maxsize=64)
def _bar_chart(pairs_json: str, title: str, unit: str) -> str:
    from matplotlib.ticker import MaxNLocator

    counts = dict(json.loads(pairs_json))
    labels = list(counts)
    fig, ax = _axes(5.2, 1.0 + 0.36 * len(labels))
    ax.barh(labels[::-1], [counts[k] for k in labels][::-1], color="#3b6ea5", height=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(unit)
    return svg_data_uri(fig)


def line_chart(series: dict[str, list[float]], *, title: str, xlabel: str, ylabel: str) -> str | None:
    """One line per series against its index, or None when no series has a point."""
    series = {k: v for k, v in series.items() if v}
    return _line_chart(_key(series), title, xlabel, ylabel) if series else None


@lru_cache(maxsize=32)
def _line_chart(series_json: str, title: str, xlabel: str, ylabel: str) -> str:
    series = json.loads(series_json)
    fig, ax = _axes(5.2, 3.2)
    for name, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return svg_data_uri(fig)


def threshold_curve_chart(curve: list[tuple[int, float]], points: list[dict]) -> str | None:
    """The open-set threshold for FPIR 1% against gallery size, with each gallery's operating point."""
    return _threshold_curve_chart(_key(curve), _key(points)) if curve else None


@lru_cache(maxsize=16)
def _threshold_curve_chart(curve_json: str, points_json: str) -> str:
    curve, points = json.loads(curve_json), json.loads(points_json)
    fig, ax = _axes(5.2, 3.2)
    ax.semilogx([n for n, _ in curve], [t for _, t in curve], color="#a53b3b", label="threshold for FPIR 1%")
    for point in points:
        ax.plot([max(point["gallery_size"], 1)], [point["threshold"]], "o",
                label=f"{point['gallery']} now (target {point['target_fpir']:g})")
    ax.set_title("Open-set threshold against gallery size")
    ax.set_xlabel("faces in the gallery (log scale)")
    ax.set_ylabel("score threshold (cosine similarity)")
    ax.legend(fontsize=7)
    return svg_data_uri(fig)


def _gpd_survival(x: float, tail: dict) -> float:
    """FMR at score x from a fitted tail: exceed_fraction x GPD survival of the excess over the tail start."""
    y = max(x - tail["threshold"], 0.0)
    shape, scale = tail["shape"], tail["scale"]
    if abs(shape) < 1e-9:
        return tail["exceed_fraction"] * math.exp(-y / scale)
    base = 1.0 + shape * y / scale
    return tail["exceed_fraction"] * base ** (-1.0 / shape) if base > 0 else 0.0


SAMPLE_COLOURS = {"packaged": "#3b6ea5", "gallery": "#c25b1d"}


def calibration_chart(info: dict, empirical: dict[str, list[tuple[float, float]]] | None = None) -> str | None:
    """The calibration of one gallery (`calibration show`'s payload) on a log FMR axis.

    `empirical` optionally gives a sample's observed survival [(score, share of impostor pairs at or above)]
    (the packaged one is public through `Engine.calibration`). For each sample with a fitted tail: the
    fit from where it starts, solid while the sample has data (FMR >= its floor), dashed beyond, ending
    where the estimate stops being supported (100x below the floor). Then each threshold of the table and
    the one at the gallery's target FPIR."""
    # "gallery" is the gallery's name, or (when its own sample is in use) that sample's part of the payload
    samples = [name for name in ("packaged", "gallery") if isinstance(info.get(name), dict)]
    if not samples and not info.get("thresholds"):
        return None
    return _calibration_chart(_key(info), _key(empirical or {}))


@lru_cache(maxsize=32)
def _calibration_chart(info_json: str, empirical_json: str) -> str:
    import numpy as np

    info, empirical = json.loads(info_json), json.loads(empirical_json)
    samples = [name for name in ("packaged", "gallery") if isinstance(info.get(name), dict)]
    fig, ax = _axes(6.4, 3.6)
    lowest = 1.0
    for name in samples:
        part, colour = info[name], SAMPLE_COLOURS[name]
        floor = float(part["floor"])
        label = f"{name} sample ({part['pairs']:,} impostor pairs)"
        observed = [(s, f) for s, f in empirical.get(name, []) if f > 0]
        if observed:
            ax.plot([s for s, _ in observed], [f for _, f in observed], color=colour, lw=1.2, label=f"{label}: observed")
            label = f"{name}: fitted tail"
        tail = part.get("tail")
        if tail:
            stop = floor / UNSUPPORTED_FACTOR
            xs = np.linspace(tail["threshold"], 1.0, 600)
            ys = np.array([_gpd_survival(x, tail) for x in xs])
            keep = ys >= stop
            xs, ys = xs[keep], ys[keep]
            data = ys >= floor
            ax.plot(xs[data], ys[data], color=colour, lw=2, alpha=0.6, label=f"{label} (GPD, within the data)")
            if (~data).any():
                ax.plot(xs[~data], ys[~data], color=colour, lw=2, ls="--", label=f"{name}: tail extrapolated")
                ax.plot([xs[~data][-1]], [ys[~data][-1]], marker="x", color=colour, ms=9,
                        label=f"{name}: estimate unsupported beyond (FMR {stop:.1e})")
            lowest = min(lowest, stop)
        ax.axhline(floor, color=colour, lw=0.8, ls=":", label=f"{name}: smallest FMR the data show ({floor:.1e})")
        lowest = min(lowest, floor)
    target = info.get("gallery_target_fpir")
    for row in info.get("thresholds", []):
        fmr = row.get("per_comparison_fmr")
        if not fmr:
            continue
        lowest = min(lowest, fmr)
        own = row["target_fpir"] == target
        ax.plot([row["threshold"]], [fmr], "o" if own else ".", color="black", ms=8 if own else 6,
                label=(f"threshold at the gallery's target FPIR {target:g}: {row['threshold']:.3f}" if own else None))
        ax.annotate(f"FPIR {row['target_fpir']:g}", (row["threshold"], fmr), textcoords="offset points",
                    xytext=(6, 4), fontsize=7)
        if own:
            ax.axvline(row["threshold"], color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(max(lowest / 5, 1e-12), 1.0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("score (cosine similarity)")
    ax.set_ylabel("false-match rate (log scale)")
    ax.set_title(f"Calibration: {info.get('gallery_faces', 0):,} faces, target FPIR {target:g}")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    return svg_data_uri(fig)


def survival_points(fmr_of, *, start: float = 0.0, stop: float = 1.0, step: float = 0.005) -> list[tuple[float, float]]:
    """[(score, observed share of impostors at or above)] from a calibration's `fmr(score)` (an FmrEstimate
    with impostors_at_or_above / impostors_total), until no impostor is left."""
    points = []
    score = start
    while score <= stop:
        estimate = fmr_of(score)
        if not estimate.impostors_at_or_above:
            break
        points.append((round(score, 4), estimate.impostors_at_or_above / estimate.impostors_total))
        score += step
    return points
