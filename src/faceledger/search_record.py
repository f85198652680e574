"""What a 1:N search records: its result, its ledger payload and its probe row, built in one place.

Pure of the store: services/search.py writes the record through SQLAlchemy (a `Probe` row), and
direct_search.py through stdlib sqlite3 (store/direct.py), so both write the same entry and the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .enrollment import face_crop_jpeg
from .faces import Face
from .imaging import LoadedImage
from .matching import Match
from .policy import Principal
from .results import Candidate
from .times import iso

REVIEW_CROP_MARGIN = 0.5
REVIEW_CROP_MAX_SIDE = 320
"""The probe kept for its reviewers: the face box widened by half its size on each side (hair line, ears,
chin: what a reviewer compares), at most 320 px, JPEG. Never the rest of the photo."""


@dataclass(frozen=True)
class SearchRecord:
    result_fields: dict
    """SearchResult's fields besides the candidates, the ledger entry and the probe box."""
    payload: dict
    """The ledger entry's payload (action "search")."""
    probe: dict
    """The probe row's columns, but its `entry_id` (the ledger entry's, known once appended)."""


def search_record(*, principal: Principal, galleries: list, refused: list[dict], answer: Match, loaded: LoadedImage,
                  probe: Face, purpose: str, case: str, top_k: int, investigative: bool,
                  authorisation: str | None, model_id: str, now: datetime, capture: dict | None = None,
                  crop: bytes | None = None) -> SearchRecord:
    """The record of a search of `galleries` (rows as read inside the write transaction, in the order
    named), answered by `answer` at time `now`. `crop`: the probe's review crop if made already (it depends
    only on the image and the face box, so callers make it before taking the write lock: `review_crop`);
    made here if the record keeps one and none was given."""
    names = [g.name for g in galleries]
    threshold, candidates, size = answer.threshold, answer.candidates, answer.gallery_size
    mode = "investigative" if investigative else "open-set"
    target = min(g.target_fpir for g in galleries)
    probe_expires = now + timedelta(days=min(g.probe_retain_days for g in galleries))
    keep_image = all(g.keep_probe_images for g in galleries)
    decision = "match" if any(c.above_threshold for c in candidates) else "no_match"
    result_fields = {
        "decision": decision, "mode": mode, "threshold": threshold.score, "target_fpir": target,
        "threshold_supported": threshold.supported, "gallery": ", ".join(names), "gallery_size": size,
        "probe_sha256": loaded.sha256, "probe_quality": probe.quality.as_dict(), "model_id": model_id,
        "calibration_id": answer.calibration_id, "galleries": tuple(names), "refused": tuple(refused),
        "calibration_source": getattr(threshold, "source", "packaged"),
        "threshold_extrapolated": bool(getattr(threshold, "extrapolated", False)),
        "extrapolation_factor": float(getattr(threshold, "extrapolation_factor", 1.0)),
        "predicted_fpir": getattr(threshold, "predicted_fpir", None),
        "threshold_explanation": getattr(threshold, "explanation", ""),
        "meaning": meaning(decision, mode, target, size, threshold.score),
        "probe_evidence": answer.evidence,
    }
    payload = {
        **{k: v for k, v in result_fields.items() if k not in ("galleries", "refused")},
        "galleries": names, "refused": refused, "purpose": purpose, "case": case,
        "authorisation": authorisation, "gallery_id": galleries[0].id, "gallery_ids": [g.id for g in galleries],
        "top_k": top_k, "candidates": [c.as_json() for c in candidates],
        "probe_expires": iso(probe_expires), "probe_image_kept": keep_image,
        **({"capture": capture} if capture else {})}
    probe_row = {
        "gallery_id": galleries[0].id, "searched_by": principal.name, "sha256": loaded.sha256,
        "embedding": probe.embedding.tobytes(), "quality": probe.quality.as_dict(), "mode": mode,
        "candidates": [c.as_json() for c in candidates], "created_at": now, "expires_at": probe_expires,
        "image": loaded.data if keep_image else None,
        "review_image": (crop or review_crop(loaded, probe, galleries, candidates))
        if keeps_review_crop(galleries, candidates) else None}
    return SearchRecord(result_fields=result_fields, payload=payload, probe=probe_row)


def review_crop(loaded: LoadedImage, probe: Face, galleries: list, candidates: list[Candidate]) -> bytes | None:
    """The probe's face crop kept until the search is reviewed, where every gallery searched keeps one
    (`keep_probe_for_review`, or `keep_probe_images`, which keeps more); nothing when there is no
    candidate to review. services/review.py deletes it once every candidate has a confirm or reject."""
    if not keeps_review_crop(galleries, candidates):
        return None
    return face_crop_jpeg(loaded, probe.box, margin=REVIEW_CROP_MARGIN, max_side=REVIEW_CROP_MAX_SIDE)


def keeps_review_crop(galleries: list, candidates: list[Candidate]) -> bool:
    return bool(candidates) and all(g.keep_probe_for_review or g.keep_probe_images for g in galleries)


def meaning(decision: str, mode: str, target_fpir: float, compared: int, threshold: float) -> str:
    """What the answer means, in words, at this gallery size."""
    if mode == "investigative":
        return (f"Investigative search: the top candidates are leads, not identifications; any of them may be a "
                f"stranger. Scores at or above {threshold:.3f} would clear the open-set threshold.")
    rate = f"about 1 search in {round(1 / target_fpir):,}" if target_fpir > 0 else "rarely"
    if decision == "no_match":
        return (f"No enrolled face scored at or above {threshold:.3f}. The threshold is set so that a person who "
                f"is not among the {compared:,} faces compared gets a candidate in {rate} (target FPIR "
                f"{target_fpir:g}). No match does not prove the person is not enrolled: an enrolled person "
                "photographed badly can score below the threshold.")
    return (f"At least one candidate scored at or above {threshold:.3f}, the threshold that holds a target FPIR "
            f"of {target_fpir:g} over {compared:,} faces: a stranger would get a candidate in {rate}. A candidate "
            "is not an identification until a second person has reviewed it.")

