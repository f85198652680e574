"""What the engine answers: frozen dataclasses with the JSON shapes the CLI and API print."""

from __future__ import annotations

from dataclasses import dataclass, field

LEAD_LABEL = "lead, not an identification"
CANDIDATE_LABEL = "candidate, not an identification"


@dataclass(frozen=True)
class SubjectHit:
    """A subject's best face for a query, before any threshold."""

    subject_id: int
    subject: str
    score: float
    face_id: int
    image: str


@dataclass(frozen=True)
class Candidate:
    rank: int
    subject: str
    subject_id: int
    score: float
    false_match_rate: float
    false_match_rate_upper: float
    gallery_false_positive_chance: float
    """Chance that a gallery of this size holds at least one non-mate scoring this high."""
    image: str
    face_id: int
    above_threshold: bool = True
    label: str = CANDIDATE_LABEL
    gallery: str | None = None

    def as_json(self) -> dict:
        return {
            "rank": self.rank,
            "gallery": self.gallery,
            "subject": self.subject,
            "subject_id": self.subject_id,
            "score": round(self.score, 6),
            "false_match_rate": self.false_match_rate,
            "false_match_rate_upper": self.false_match_rate_upper,
            "gallery_false_positive_chance": self.gallery_false_positive_chance,
            "image": self.image,
            "face_id": self.face_id,
            "above_threshold": self.above_threshold,
            "label": self.label,
        }


@dataclass(frozen=True)
class SearchResult:
    decision: str  # "match" | "no_match"
    mode: str  # "open-set" | "investigative"
    threshold: float
    target_fpir: float
    threshold_supported: bool
    gallery: str
    gallery_size: int
    candidates: tuple[Candidate, ...]
    probe_sha256: str
    probe_quality: dict
    model_id: str
    calibration_id: str
    ledger_entry: str
    probe_box: tuple[float, float, float, float] | None = None
    """The probe's face box (x0, y0, x1, y1) in the upright probe image."""
    galleries: tuple[str, ...] = ()
    """Every gallery searched (several with `--gallery A --gallery B`); `gallery` joins their names."""
    refused: tuple[dict, ...] = ()
    """Galleries named but not searched, each with the reason (their policy refused the purpose)."""
    calibration_source: str = "packaged"
    """packaged | gallery | combined: which impostor samples set the threshold (see calibration show)."""
    threshold_extrapolated: bool = False
    extrapolation_factor: float = 1.0
    predicted_fpir: float | None = None
    threshold_explanation: str = ""
    meaning: str = ""
    """What this answer means at this gallery size, in words (what "no match" promises)."""
    probe_evidence: dict | None = None
    """How the top score stands out from this probe's next-best subjects (margin, z); reported, not a gate."""

    def as_json(self) -> dict:
        return {
            "decision": self.decision,
            "mode": self.mode,
            "threshold": round(self.threshold, 6),
            "target_fpir": self.target_fpir,
            "threshold_supported": self.threshold_supported,
            "gallery": self.gallery,
            "gallery_size": self.gallery_size,
            "candidates": [c.as_json() for c in self.candidates],
            "probe_sha256": self.probe_sha256,
            "probe_quality": self.probe_quality,
            "model_id": self.model_id,
            "calibration_id": self.calibration_id,
            "ledger_entry": self.ledger_entry,
            "probe_box": [round(float(v), 1) for v in self.probe_box] if self.probe_box else None,
            "galleries": list(self.galleries),
            "refused": list(self.refused),
            "calibration_source": self.calibration_source,
            "threshold_extrapolated": self.threshold_extrapolated,
            "extrapolation_factor": self.extrapolation_factor,
            "predicted_fpir": self.predicted_fpir,
            "threshold_explanation": self.threshold_explanation,
            "meaning": self.meaning,
            "probe_evidence": self.probe_evidence,
        }


@dataclass(frozen=True)
class VerifyResult:
    decision: str  # "same" | "different"
    score: float
    false_match_rate: float
    false_match_rate_upper: float
    threshold: float
    target_fmr: float
    probe_sha256: tuple[str, str]
    model_id: str
    calibration_id: str
    ledger_entry: str

    def as_json(self) -> dict:
        return {
            "decision": self.decision,
            "score": round(self.score, 6),
            "false_match_rate": self.false_match_rate,
            "false_match_rate_upper": self.false_match_rate_upper,
            "threshold": round(self.threshold, 6),
            "target_fmr": self.target_fmr,
            "probe_sha256": list(self.probe_sha256),
            "model_id": self.model_id,
            "calibration_id": self.calibration_id,
            "ledger_entry": self.ledger_entry,
        }


@dataclass(frozen=True)
class FileOutcome:
    path: str
    status: str  # "enrolled" | "duplicate" | "failed"
    subject: str | None = None
    faces: int = 0
    error: str | None = None


@dataclass
class EnrollReport:
    gallery: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    ledger_entries: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def as_json(self) -> dict:
        return {
            "gallery": self.gallery,
            "enrolled": self.count("enrolled"),
            "duplicates": self.count("duplicate"),
            "failed": self.count("failed"),
            "faces_added": sum(o.faces for o in self.outcomes if o.status == "enrolled"),
            "failures": [{"path": o.path, "error": o.error} for o in self.failures],
            "ledger_entries": self.ledger_entries,
        }
