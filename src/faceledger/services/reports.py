"""The auditor's view: ledger entries and exports, chain verification, the transparency report, stats."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from ..calibration import OpenSetCalibration
from ..ledger import LedgerCheck
from ..policy import Principal
from ..reporting import report_html, summarize, write_report
from ..store import FaceRecord, Gallery, ImageRecord, LedgerEntry, Subject
from .access import Access
from .calibrations import Calibrations
from .context import Context, iso, safe_url
from .search import Searching


class Reports:
    def __init__(self, ctx: Context, access: Access, calibrations: Calibrations, searching: Searching) -> None:
        self.ctx = ctx
        self.access = access
        self.calibrations = calibrations
        self.searching = searching

    def audit_entries(self, *, by: Principal | None = None, **filters) -> list[dict]:
        """Ledger entries, filtered by since / action / actor / purpose / case / limit."""
        self.access.authorize(by, "audit")
        return self.ctx.ledger.entries(**filters)

    def audit_export(self, fmt: str, *, since: datetime | None = None, by: Principal | None = None) -> str:
        """The ledger as JSON lines or CSV; the export itself is ledgered (who took a copy, and when)."""
        principal = self.access.authorize(by, "audit")
        text = self.ctx.ledger.export(fmt, since=since)
        self.ctx.ledger.record(actor=principal.name, action="audit.export",
                               payload={"format": fmt, "since": iso(since), "bytes": len(text.encode())})
        return text

    def audit_verify(self, *, by: Principal | None = None) -> LedgerCheck:
        self.access.authorize(by, "audit")
        return self.ctx.ledger.verify()

    def transparency_summary(self, *, since: datetime | None = None, by: Principal | None = None) -> dict:
        """The transparency report's figures only (no files), e.g. for the HTTP API; ledgered likewise."""
        principal = self.access.authorize(by, "report")
        summary = self._summary(since)
        self.ctx.ledger.record(actor=principal.name, action="report.transparency",
                               payload={"since": iso(since), "searches": summary["searches"]["total"], "format": "json"})
        return summary

    def transparency_report(self, out_dir: Path, *, since: datetime | None = None,
                            by: Principal | None = None) -> dict:
        """Write the transparency report (JSON + HTML with charts) from the ledger; the report is ledgered."""
        principal = self.access.authorize(by, "report")
        summary = self._summary(since)
        written = write_report(summary, Path(out_dir), threshold_curve=self._threshold_curve(),
                               calibrations=self._calibration_plots(summary, principal))
        self.ctx.ledger.record(actor=principal.name, action="report.transparency",
                               payload={"since": iso(since), "searches": summary["searches"]["total"]})
        return {"summary": summary, "files": written}

    def transparency_report_html(self, *, since: datetime | None = None, by: Principal | None = None) -> str:
        """The transparency report as one self-contained HTML page (for a download); ledgered likewise."""
        principal = self.access.authorize(by, "report")
        summary = self._summary(since)
        page = report_html(summary, self._threshold_curve(), self._calibration_plots(summary, principal))
        self.ctx.ledger.record(actor=principal.name, action="report.transparency",
                               payload={"since": iso(since), "searches": summary["searches"]["total"], "format": "html"})
        return page

    def _threshold_curve(self) -> list[tuple[int, float]]:
        """The open-set threshold for FPIR 1% from 1 to 10^8 faces (the packaged sample with its fitted tail)."""
        calibration = OpenSetCalibration(self.calibrations.current)
        return [(int(n), calibration.threshold_for_fpir(0.01, int(n)).score)
                for n in np.unique(np.logspace(0, 8, 60).astype(int))]

    def _calibration_plots(self, summary: dict, principal: Principal, limit: int = 12) -> list[tuple[str, dict, dict]]:
        """`calibration show` of each gallery (the first `limit`), with the packaged sample's observed tail."""
        from ..report_charts import survival_points

        observed = {"packaged": survival_points(self.calibrations.current.fmr)}
        return [(p["gallery"], self.calibrations.describe_gallery(p["gallery"], by=principal), observed)
                for p in summary["operating_points"][:limit]]

    def _summary(self, since: datetime | None) -> dict:
        return summarize(self.ctx.ledger.entries(since=since), self.searching.operating_points(), since=iso(since))

    def stats(self, *, by: Principal | None = None) -> dict:
        self.access.authorize(by, "stats")
        ctx = self.ctx
        with ctx.sessions() as session:
            def total(model) -> int:
                return session.execute(select(func.count()).select_from(model)).scalar_one()

            return {
                "home": str(ctx.settings.home.resolve()), "database": safe_url(ctx.db.url),
                "index": ctx.settings.index, "model_id": ctx.model_id,
                "galleries": total(Gallery), "subjects": total(Subject), "images": total(ImageRecord),
                "faces": total(FaceRecord), "ledger_entries": total(LedgerEntry),
            }
