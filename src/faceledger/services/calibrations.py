"""The calibrations in force: the packaged one (or one fitted here with `calibrate`), and each gallery's
own cross-subject sample, combined conservatively into the open-set calibration a search uses.

A gallery's sample is built from its enrolled faces (all cross-subject pairs while small, a seeded
random sample beyond), persisted beside the data (calibration/stored.py), and rebuilt when the gallery
has grown or shrunk by more than REBUILD_SHARE since, and whenever faces were removed (erasure, purge),
so that an erased person's pairs leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..calibration import (
    Calibration,
    GallerySample,
    OpenSetCalibration,
    find_duplicates,
    gallery_sample,
    impostor_histogram,
)
from ..calibration.stored import (
    current_calibration,
    load_sample,
    local_calibration_path,
    sample_fresh,
    sample_path,
    save_sample,
)
from ..enrollment import analyse_all, identity_sample
from ..errors import FaceledgerError
from ..policy import Principal
from ..store import FaceRecord, Gallery, Subject
from ..store.queries import SQLITE_PARAMETER_CHUNK
from .access import Access
from .context import Context, utcnow

SAMPLE_FACES = 20_000
"""At most this many faces (a seeded random subset) feed a gallery's sample."""
SAMPLE_PAIRS = 5_000_000
DUPLICATE_SCORE = 0.9


@dataclass
class _Held:
    generation: int
    faces: int
    calibration: OpenSetCalibration


class Calibrations:
    def __init__(self, ctx: Context, access: Access) -> None:
        self.ctx = ctx
        self.access = access
        self._current: Calibration | None = None
        self._galleries: dict[int, _Held] = {}

    @property
    def path(self) -> Path:
        """Where a calibration fitted on this data directory is kept (it replaces the packaged one)."""
        return local_calibration_path(self.ctx.settings.home, self.ctx.model_id)

    @property
    def current(self) -> Calibration:
        """The packaged calibration, or the one fitted on this data directory with `calibrate`."""
        if self._current is None:
            self._current = current_calibration(self.ctx.settings.home, self.ctx.model_id)
        return self._current

    # -- each gallery's own calibration ------------------------------------------------------------

    def sample_path(self, gallery_id: int) -> Path:
        return sample_path(self.ctx.settings.home, gallery_id, self.ctx.model_id)

    def for_gallery(self, session: Session, gallery: Gallery) -> OpenSetCalibration:
        """The open-set calibration for a search of this gallery: packaged + the gallery's own sample."""
        with self.ctx.lock:
            held = self._galleries.get(gallery.id)
            if held is not None and held.generation == gallery.generation:
                return held.calibration  # the common case on the search path: no query at all
            faces = _face_count(session, gallery.id)
            if held is not None and sample_fresh(held.generation, held.faces, gallery.generation, faces):
                self._galleries[gallery.id] = _Held(gallery.generation, held.faces, held.calibration)
                return held.calibration
            sample = self._load_sample(gallery, faces)
            if sample is None:
                sample = self._build_sample(session, gallery)
                self._save_sample(gallery, faces, sample)
            calibration = OpenSetCalibration(self.current, sample)
            self._galleries[gallery.id] = _Held(gallery.generation, faces, calibration)
            return calibration

    def forget(self, gallery_ids) -> None:
        """Faces were removed from these galleries: their samples are rebuilt on next use."""
        with self.ctx.lock:
            for gallery_id in gallery_ids:
                self._galleries.pop(gallery_id, None)
                self.sample_path(gallery_id).unlink(missing_ok=True)

    def _load_sample(self, gallery: Gallery, faces: int) -> GallerySample | None:
        return load_sample(self.sample_path(gallery.id), generation=gallery.generation, faces=faces,
                           model_id=self.ctx.model_id)

    def _save_sample(self, gallery: Gallery, faces: int, sample: GallerySample) -> None:
        save_sample(self.sample_path(gallery.id), generation=gallery.generation, faces=faces, sample=sample)

    def _build_sample(self, session: Session, gallery: Gallery) -> GallerySample:
        vectors, subjects, _ = gallery_vectors(session, gallery.id, limit=SAMPLE_FACES)
        if not len(vectors):
            vectors = np.empty((0, self.ctx.pipeline.embedder.dim), np.float32)
        return gallery_sample(vectors, subjects, max_pairs=SAMPLE_PAIRS, seed=gallery.id,
                              model_id=self.ctx.model_id)

    def describe_gallery(self, gallery: str, *, by: Principal | None = None) -> dict:
        """Which calibration a search of the gallery uses: the samples, their sizes, tails, where the
        estimate stops being supported, and the thresholds at its size for the usual targets."""
        self.access.authorize(by, "gallery.read", gallery=gallery)
        with self.ctx.sessions() as session:
            row = self.ctx.gallery(session, gallery)
            calibration = self.for_gallery(session, row)
            faces = _face_count(session, row.id)
            target = row.target_fpir
        rows = []
        for fpir in sorted({0.1, 0.01, 0.001, target}, reverse=True):
            t = calibration.threshold_for_fpir(fpir, max(faces, 1))
            rows.append({"target_fpir": fpir, "threshold": t.score, "predicted_fpir": t.predicted_fpir,
                         "per_comparison_fmr": t.per_comparison_fmr, "supported": t.supported,
                         "extrapolated": t.extrapolated, "extrapolation_factor": t.extrapolation_factor,
                         "binding": t.binding, "explanation": t.explanation})
        # "gallery" names the gallery, unless its own sample is in use: then `describe()` puts that sample's
        # part there (as the ledger has always recorded it). "gallery_name" always names the gallery.
        return {"gallery": gallery, "gallery_faces": faces, "gallery_target_fpir": target,
                **calibration.describe(), "gallery_name": gallery, "thresholds": rows}

    def duplicates(self, gallery: str, *, against: str | None = None, min_score: float | None = None,
                   limit: int = 200, by: Principal | None = None) -> dict:
        """Cross-subject pairs that score like the same person, within a gallery or across two: one person
        enrolled twice under two names, twins, a mislabelled photo. Exhaustive; ledgered (it compares people)."""
        principal = self.access.authorize(by, "gallery.read", gallery=gallery, against=against)
        calibration = self.current
        threshold = min_score if min_score is not None else calibration.threshold_for_fmr(
            self.ctx.settings.erase_target_fmr).score
        with self.ctx.sessions() as session:
            a = self.ctx.gallery(session, gallery)
            va, sa, fa = gallery_vectors(session, a.id)
            if against is not None:
                b = self.ctx.gallery(session, against)
                vb, sb, fb = gallery_vectors(session, b.id)
                # subject ids are unique across galleries, so every pair across is a cross-subject pair
                found = find_duplicates(va, sa, vb, sb, min_score=threshold, limit=limit)
            else:
                fb = fa
                found = find_duplicates(va, sa, min_score=threshold, limit=limit)
            names = _subject_names(session, {int(x) for x in sa} | ({int(x) for x in sb} if against else set()))
        pairs = []
        for _, _, i, j, score in found:
            subject_a = int(sa[i])
            subject_b = int(sb[j]) if against is not None else int(sa[j])
            estimate = calibration.fmr(score)
            pairs.append({"gallery_a": gallery, "subject_a": names.get(subject_a), "subject_a_id": subject_a,
                          "face_a": int(fa[i]), "gallery_b": against or gallery, "subject_b": names.get(subject_b),
                          "subject_b_id": subject_b, "face_b": int(fb[j]), "score": round(score, 6),
                          "false_match_rate": estimate.fmr, "false_match_rate_upper": estimate.upper})
        self.ctx.ledger.record(actor=principal.name, action="gallery.duplicates", payload={
            "gallery": gallery, "against": against, "min_score": threshold, "pairs": len(pairs)})
        return {"gallery": gallery, "against": against, "min_score": threshold, "pairs": pairs}

    # -- fitting a calibration on a dataset --------------------------------------------------------

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
        with ctx.lock:
            self._current = calibration
            self._galleries.clear()
        thresholds = {f"{fmr:g}": calibration.threshold_for_fmr(fmr).score for fmr in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}
        failed = sum(1 for a in analyses if a.error)
        ctx.ledger.record(actor=principal.name, action="calibrate", payload={
            "calibration_id": calibration.calibration_id, "model_id": ctx.model_id, "dataset": str(dataset),
            "identities": len(vectors), "failed": failed, "impostor_pairs": calibration.total,
            "thresholds": thresholds})
        return {"calibration_id": calibration.calibration_id, "identities": len(vectors), "failed": failed,
                "impostor_pairs": calibration.total, "thresholds": thresholds, "path": str(path)}


def _face_count(session: Session, gallery_id: int) -> int:
    return session.execute(select(func.count()).select_from(FaceRecord).where(
        FaceRecord.gallery_id == gallery_id)).scalar_one()


def gallery_vectors(session: Session, gallery_id: int, *, limit: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, subject ids, face ids) of a gallery's faces; a seeded random subset of `limit`."""
    ids = np.asarray(session.execute(select(FaceRecord.id).where(FaceRecord.gallery_id == gallery_id)
                                     .order_by(FaceRecord.id)).scalars().all(), dtype=np.int64)
    if limit is not None and len(ids) > limit:
        ids = np.sort(np.random.default_rng(gallery_id).choice(ids, limit, replace=False))
    vectors, subjects, faces = [], [], []
    for start in range(0, len(ids), SQLITE_PARAMETER_CHUNK):
        for fid, sid, blob in session.execute(select(FaceRecord.id, FaceRecord.subject_id, FaceRecord.embedding)
                                              .where(FaceRecord.id.in_(ids[start:start + SQLITE_PARAMETER_CHUNK]
                                                                       .tolist()))):
            faces.append(fid)
            subjects.append(sid)
            vectors.append(np.frombuffer(blob, np.float32))
    dim = len(vectors[0]) if vectors else 0
    return (np.stack(vectors) if vectors else np.empty((0, dim), np.float32),
            np.asarray(subjects, dtype=np.int64), np.asarray(faces, dtype=np.int64))


def _subject_names(session: Session, ids: set[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), SQLITE_PARAMETER_CHUNK):
        names.update(dict(session.execute(select(Subject.id, Subject.name).where(
            Subject.id.in_(ordered[start:start + SQLITE_PARAMETER_CHUNK]))).all()))
    return names
