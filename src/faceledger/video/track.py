"""Follow faces across sampled frames: IoU of the boxes plus similarity of the embeddings.

A detection joins the live track it overlaps and resembles most; at a shot cut (the whole picture
changes) overlap means nothing, so only a strong resemblance joins. A track not seen for `max_gap_s`
ends; a face that comes back later starts a new track (both are searched, and both name the same
person if they match). Pure functions and one small class on numpy arrays; knows nothing of the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..faces import QualityReport


@dataclass
class Observation:
    """One face in one sampled frame."""

    t: float
    frame: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    quality: QualityReport
    embedding: np.ndarray
    crop: np.ndarray | None = field(default=None, repr=False)
    """A small RGB crop around the face (for the thumbnail), kept only for a track's best observations."""


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    """Every observation's box and time (for time ranges and redaction); see `best` for the shot pool."""
    best: list[Observation] = field(default_factory=list)
    """The highest-quality observations (bounded), with embeddings and crops, from which shots are chosen."""
    ended: bool = False

    @property
    def first_t(self) -> float:
        return self.observations[0].t

    @property
    def last_t(self) -> float:
        return self.observations[-1].t

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    @property
    def usable_count(self) -> int:
        return sum(1 for o in self.observations if o.quality.usable)

    def reference(self) -> np.ndarray:
        """The track's appearance: the mean of its recent embeddings, renormalised."""
        recent = np.stack([o.embedding for o in self.observations[-5:]])
        mean = recent.mean(axis=0)
        return mean / (np.linalg.norm(mean) + 1e-12)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene_signature(rgb: np.ndarray) -> np.ndarray:
    """A tiny colour histogram of the frame, compared between sampled frames to find cuts."""
    small = cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    return hist / (hist.sum() + 1e-9)


def is_cut(before: np.ndarray | None, after: np.ndarray, *, threshold: float = 0.5) -> bool:
    """True when the colour histograms share less than `threshold` of their mass (a new shot)."""
    if before is None:
        return False
    return float(np.minimum(before, after).sum()) < threshold


@dataclass
class TrackerConfig:
    min_iou: float = 0.15
    """Overlap that, with `min_similarity`, keeps a face on its track between samples."""
    min_similarity: float = 0.25
    """Embedding cosine below which overlapping faces are taken to be different people."""
    reid_similarity: float = 0.55
    """Cosine at which a face joins a track without overlapping it (fast motion, or after a cut)."""
    max_gap_s: float = 1.5
    """A track not seen for this long ends."""
    pool: int = 12
    """Best observations kept per track (with embeddings and crops) for best-shot selection."""


class Tracker:
    """Greedy association of each sampled frame's faces to the live tracks."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.live: list[Track] = []
        self.next_id = 1
        self._scene: np.ndarray | None = None

    def update(self, t: float, observations: list[Observation], rgb: np.ndarray | None = None) -> list[Track]:
        """Add one sampled frame's faces; returns the tracks that ended (not seen for max_gap_s)."""
        cfg = self.config
        cut = False
        if rgb is not None:
            signature = scene_signature(rgb)
            cut = is_cut(self._scene, signature)
            self._scene = signature
        pairs = []
        for ti, track in enumerate(self.live):
            reference = track.reference()
            for oi, obs in enumerate(observations):
                similarity = float(np.dot(reference, obs.embedding))
                overlap = 0.0 if cut else iou(track.last.box, obs.box)
                if (overlap >= cfg.min_iou and similarity >= cfg.min_similarity) or similarity >= cfg.reid_similarity:
                    pairs.append((similarity + 0.5 * overlap, ti, oi))
        taken_tracks, taken_obs = set(), set()
        for _, ti, oi in sorted(pairs, reverse=True):
            if ti in taken_tracks or oi in taken_obs:
                continue
            taken_tracks.add(ti)
            taken_obs.add(oi)
            self._add(self.live[ti], observations[oi])
        for oi, obs in enumerate(observations):
            if oi not in taken_obs:
                track = Track(track_id=self.next_id)
                self.next_id += 1
                self._add(track, obs)
                self.live.append(track)
        ended = [tr for tr in self.live if t - tr.last_t > cfg.max_gap_s]
        for track in ended:
            track.ended = True
        self.live = [tr for tr in self.live if not tr.ended]
        return ended

    def finish(self) -> list[Track]:
        """End every live track (the video is over)."""
        ended, self.live = self.live, []
        for track in ended:
            track.ended = True
        return ended

    def _add(self, track: Track, obs: Observation) -> None:
        track.observations.append(obs)
        track.best.append(obs)
        track.best.sort(key=shot_score, reverse=True)
        for dropped in track.best[self.config.pool:]:
            dropped.crop = None
        del track.best[self.config.pool:]
        # Observations outside the pool need no embedding beyond the last few (the track's reference).
        if len(track.observations) > 5:
            old = track.observations[-6]
            if all(old is not b for b in track.best):
                old.crop = None


def shot_score(obs: Observation) -> float:
    """How good a shot this is for recognition: usable first, then size × sharpness × frontalness × score."""
    q = obs.quality
    size = min(q.face_size, 160.0) / 160.0
    sharp = min(q.sharpness, 400.0) / 400.0
    frontal = max(0.0, 1.0 - abs(q.yaw) / 90.0) * max(0.0, 1.0 - abs(q.pitch) / 90.0)
    return (1.0 if q.usable else 0.0) + size * (0.5 + 0.5 * sharp) * frontal * q.detector_score
