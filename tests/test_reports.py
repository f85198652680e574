"""The HTML reports stand alone: the transparency report, `calibration show --html` and the evaluation
report embed their charts (data: URIs), refer to no file or host, carry a viewport tag, show figures as
tables rather than a JSON dump, and draw no empty chart (a sentence says why instead)."""

from __future__ import annotations

import base64
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from faceledger.evaluate import report as evaluation
from faceledger.report_charts import calibration_chart, survival_points

from .conftest import gallery_files, held_out_probes, open_test_engine
from .test_cli import run


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = open_test_engine(tmp_path_factory.mktemp("reports") / "home")
    eng.create_gallery("g", purposes=["fraud"])
    eng.enroll(gallery_files()[:6], gallery="g", subject_from_folder=True, source="LFW", legal_basis="research")
    yield eng
    eng.close()


def assert_self_contained(html: str) -> None:
    assert '<meta name="viewport"' in html or "<meta name='viewport'" in html
    for attribute, value in re.findall(r"""\b(src|href)=["']([^"']*)["']""", html):
        assert value.startswith("data:"), f"{attribute}={value[:60]} is not embedded"
    assert not re.search(r"https?://", html.split("base64,")[0])  # nothing before the first embedded image
    assert "@import" not in html and "url(" not in html
    assert "<pre" not in html and '"searches": {' not in html and '"operating_points"' not in html


def svg_texts(html: str) -> str:
    """The text of every embedded SVG chart (matplotlib keeps text as text)."""
    return " ".join(base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html))


def test_transparency_report_with_no_activity_says_so_instead_of_empty_charts(engine, tmp_path):
    written = engine.transparency_report(tmp_path / "empty")
    html = Path(written["files"]["html"]).read_text()
    assert_self_contained(html)
    assert "Searches by stated purpose:</b> no search in this period." in html
    assert "Reviewer decisions:</b> no reviewer recorded a decision" in html
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["transparency.html", "transparency.json"]
    texts = svg_texts(html)
    assert "Calibration of gallery g" in html and "score (cosine similarity)" in texts
    assert "false-match rate (log scale)" in texts and "faces in the gallery (log scale)" in texts


def test_transparency_report_charts_and_tables_after_a_search(engine, tmp_path):
    engine.search(held_out_probes()[0], gallery="g", purpose="fraud", case="R-1")
    html = Path(engine.transparency_report(tmp_path / "r")["files"]["html"]).read_text()
    assert_self_contained(html)
    assert "no search in this period" not in html
    assert html.count("data:image/svg+xml;base64,") >= 5
    assert "<h3>Searches by purpose</h3><table><tr><th>purpose</th><th>searches</th></tr><tr><td>fraud</td><td>1</td>" in html
    assert "searches" in svg_texts(html)  # the bar charts name their unit


def test_calibration_show_html_is_one_file(engine, tmp_path, capsys, monkeypatch):
    out = tmp_path / "calibration.html"
    code, _, err = run(capsys, monkeypatch, engine.settings.home, "calibration", "show", "--gallery", "g",
                       "--html", out)
    assert code == 0, err
    html = out.read_text()
    assert_self_contained(html)
    texts = svg_texts(html)
    assert "packaged sample" in texts and "smallest FMR the data show" in texts
    assert "threshold at the gallery's target FPIR 0.01" in texts
    assert "<th>target FPIR</th>" in html


def _payload(with_gallery_sample: bool) -> dict:
    tail = {"threshold": 0.41, "exceed_fraction": 1e-4, "shape": -0.01, "scale": 0.022}
    info = {"gallery": "g", "gallery_faces": 5000, "gallery_target_fpir": 0.01,
            "packaged": {"pairs": 16_000_000, "floor": 1.9e-7, "tail": tail},
            "thresholds": [{"target_fpir": 0.01, "threshold": 0.52, "per_comparison_fmr": 2e-6}]}
    if with_gallery_sample:  # the payload's "gallery" is then the gallery's own sample, not its name
        info["gallery"] = {"pairs": 120_000, "floor": 2.5e-5, "tail": {**tail, "threshold": 0.35,
                                                                     "exceed_fraction": 1e-3}}
    return info


def test_calibration_chart_draws_both_samples_and_where_support_ends():
    uri = calibration_chart(_payload(True))
    text = base64.b64decode(uri.split(",", 1)[1]).decode()
    for label in ("packaged: tail extrapolated", "gallery: tail extrapolated", "gallery sample (120,000",
                  "estimate unsupported beyond (FMR 2.5e-07)", "estimate unsupported beyond (FMR 1.9e-09)"):
        assert label in text, label
    assert "gallery sample" not in base64.b64decode(calibration_chart(_payload(False)).split(",", 1)[1]).decode()
    assert calibration_chart({"gallery": "g", "thresholds": []}) is None


def test_survival_points_stop_where_the_sample_runs_out(engine):
    points = survival_points(engine.calibration.fmr)
    scores, rates = zip(*points)
    assert rates[0] > 0.5 and all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[-1] > 0 and engine.calibration.fmr(scores[-1] + 0.005).impostors_at_or_above == 0


def test_evaluation_report_replaces_an_empty_det_with_a_sentence(tmp_path):
    far = np.array([1.0, 0.5, 0.0, 0.0])  # perfect separation: no threshold has both error rates above zero
    frr = np.array([0.0, 0.0, 0.0, 1.0])
    curves = {"far": far, "frr": frr, "impostor": np.array([0.1, 0.2]), "genuine": np.array([0.7, 0.8])}
    result = {"impostor_pairs": 2, "genuine_pairs": 2, "auc": 1.0, "eer": 0.0, "at_operating_threshold": None}
    plots = evaluation.verification_plots(curves, result, tmp_path)
    assert plots["det"] is None and (tmp_path / "roc.png").is_file() and not (tmp_path / "det.png").exists()
    body = "".join(evaluation._img(tmp_path, plots[k], t) for k, t in (("roc", "ROC"), ("det", "DET")))
    path = evaluation.write_html(tmp_path, title="t", summary=["s"], warnings=[], sections=[("Plots", body)])
    html = path.read_text()
    assert_self_contained(html)
    assert "DET:</b> nothing to draw" in html and html.count("data:image/png;base64,") == 1


def test_transparency_report_downloads_from_the_api(engine):
    from fastapi.testclient import TestClient

    from faceledger.api import create_app

    tokens = {role: engine.add_user(f"report-{role}", role=role)[1] for role in ("auditor", "analyst")}
    client = TestClient(create_app(engine=engine))
    response = client.get("/api/v1/reports/transparency.html",
                          headers={"Authorization": f"Bearer {tokens['auditor']}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="transparency.html"'
    assert_self_contained(response.text)
    assert "Calibration of gallery g" in response.text
    assert engine.audit_entries(action="report.transparency")[-1]["payload"]["format"] == "html"
    refused = client.get("/api/v1/reports/transparency.html", headers={"Authorization": f"Bearer {tokens['analyst']}"})
    assert refused.status_code == 403
