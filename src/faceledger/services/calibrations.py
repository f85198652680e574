"""The impostor-score calibration in force: the packaged one, or one fitted here with `calibrate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calibration import Calibration, impostor_histogram, packaged_calibration
from ..enrollment import analyse_all, identity_sample
from ..errors import FaceledgerError
from ..policy import Principal
from .access import Access
from .context import Context, utcnow


class Calibrations:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access
        self._current: Calibration | None = None

    @property
    def path(self) -> Path:
        """Where a calibration fitted on this data directory is kept (it replaces the packaged one)."""
        return self.ctx.settings.home / "calibrations" / f"calibration-{self.ctx.model_id}.json"

    @property
    def current(self) -> Calibration:
        if self._current is None:
            local = self.path
            self._current = Calibration.load(local) if local.is_file() else packaged_calibration(self.ctx.model_id)
        return self._current

    def calibrate(self, dataset: Path, *, workers: int = 2, max_identities: int | None = None,
                  min_identities: int = 50, by: Principal | None = None) -> dict:
        """Fit this model's impostor-score calibration on a folder-per-identity dataset (one image each)."""
        ctx = self.ctx
        principal = self.access.authorize(by, "calibrate")
        items = identity_sample(Path(dataset), max_identities=max_identities,
                                max_bytes=ctx.settings.max_image_bytes)
        ctx.pipeline.load()
        analyses = list(analyse_all(items, pipeline=ctx.pipeline, settings=ctx.settings, on_multiple="largest",
                                    workers=workers))
        vectors = np.stack([a.faces[0].embedding for a in analyses if not a.error]) if analyses else np.empty((0, 0))
        if len(vectors) < min_identities:
            raise FaceledgerError(f"{dataset}: only {len(vectors)} identities gave a usable face; "
                                  f"need at least {min_identities}")
        calibration = Calibration(
            calibration_id=f"{Path(dataset).name}-1perid-{ctx.model_id}-{utcnow():%Y%m%dT%H%M%SZ}",
            model_id=ctx.model_id, bin_width=0.0005, counts=impostor_histogram(vectors),
            description=f"{len(vectors)} identities of {dataset} (one image each), all cross-identity pairs",
            max_impostor_score=None)
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        calibration.save(path)
        self._current = calibration
        thresholds = {f"{fmr:g}": calibration.threshold_for_fmr(fmr).score for fmr in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}
        failed = sum(1 for a in analyses if a.error)
        ctx.ledger.record(actor=principal.name, action="calibrate", payload={
            "calibration_id": calibration.calibration_id, "model_id": ctx.model_id, "dataset": str(dataset),
            "identities": len(vectors), "failed": failed, "impostor_pairs": calibration.total,
            "thresholds": thresholds})
        return {"calibration_id": calibration.calibration_id, "identities": len(vectors), "failed": failed,
                "impostor_pairs": calibration.total, "thresholds": thresholds, "path": str(path)}
