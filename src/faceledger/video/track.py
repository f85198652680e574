"""Follow faces across sampled frames: IoU of the boxes plus similarity of the embeddings.

A detection joins the live track whose predicted box (constant velocity) it overlaps and whose face it
resembles most; at a shot cut (the whole picture
changes) overlap means nothing, so only a strong resemblance joins. A track not seen for `max_gap_s`
ends; a face that comes back later starts a new track (both are searched, and both name the same
person if they match).

Embeddings are the costly stage, so they are computed lazily (`embed` is given the observation): a
face that overlaps one live track and nothing else is joined on its box alone, and is embedded only
when the track has had no embedded look for `recheck_s` (so a slow identity switch is still caught),
when it is ambiguous (faces crossing, a cut, no overlap), or when it is chosen as a best shot.
Pure functions and one small class on numpy arrays; knows nothing of the store.
"""

from __future__ import annotations

from collections.abc import Callable
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
    aligned: np.ndarray | None = field(default=None, repr=False)
    """The aligned 112×112 crop the embedding is computed from; dropped once no longer needed."""
    crop: np.ndarray | None = field(default=None, repr=False)
    """A small RGB crop around the face (for the thumbnail), kept only for a track's best observations."""
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    """Every observation's box and time (for time ranges and redaction); see `best` for the shot pool."""
    best: list[Observation] = field(default_factory=list)
    """The highest-quality observations (bounded), with their crops, from which shots are chosen."""
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

    def predict(self, t: float) -> tuple[float, float, float, float]:
        """Where the face should be at time t: the last box moved at the velocity of the last two looks
        (constant velocity, as SORT-style trackers predict), so a face hidden while it moves is found
        again where it went, not where it was."""
        box = self.last.box
        if len(self.observations) < 2:
            return box
        before = self.observations[-2]
        dt = self.last.t - before.t
        if dt <= 0:
            return box
        ahead = min(t - self.last.t, 2.0)
        return tuple(b + (b - p) / dt * ahead for b, p in zip(box, before.box))

    def last_embedded_t(self) -> float | None:
        for obs in reversed(self.observations):
            if obs.embedding is not None:
                return obs.t
        return None

    def reference(self, embed: Callable[[Observation], np.ndarray]) -> np.ndarray:
        """The track's appearance: the mean of its last (up to 5) embedded looks, renormalised."""
        recent = [o.embedding for o in reversed(self.observations) if o.embedding is not None][:5]
        if not recent:
            recent = [embed(self.last)]
        mean = np.stack(recent).mean(axis=0)
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
    sure_iou: float = 0.5
    """Overlap at which a face that overlaps nothing else joins its track without an embedding."""
    min_similarity: float = 0.25
    """Embedding cosine below which overlapping faces are taken to be different people."""
    reid_similarity: float = 0.55
    """Cosine at which a face joins a track without overlapping it (fast motion, or after a cut)."""
    recheck_s: float = 1.0
    """A track joined on boxes alone is checked against an embedding at least this often."""
    max_gap_s: float = 1.5
    """A track not seen for this long ends."""
    pool: int = 12
    """Best observations kept per track (with crops) for best-shot selection."""


class Tracker:
    """Greedy association of each sampled frame's faces to the live tracks."""

    def __init__(self, embed: Callable[[Observation], np.ndarray], config: TrackerConfig | None = None) -> None:
        self.embed = embed
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
        overlaps = np.zeros((len(self.live), len(observations)))
        if not cut:
            for ti, track in enumerate(self.live):
                for oi, obs in enumerate(observations):
                    overlaps[ti, oi] = iou(track.predict(t), obs.box)
        taken_tracks, taken_obs = set(), set()
        for ti, track in enumerate(self.live):  # the sure cases: one overlap each way, large
            touching = np.flatnonzero(overlaps[ti] > 0.05)
            if len(touching) != 1:
                continue
            oi = int(touching[0])
            if overlaps[ti, oi] >= cfg.sure_iou and np.count_nonzero(overlaps[:, oi] > 0.05) == 1:
                embedded = track.last_embedded_t()
                due = embedded is None or t - embedded >= cfg.recheck_s
                if due and float(np.dot(track.reference(self.embed), self.embed(observations[oi]))) < cfg.min_similarity:
                    continue  # someone else stepped into the same place: decide below
                taken_tracks.add(ti)
                taken_obs.add(oi)
        pairs = []
        for ti, track in enumerate(self.live):
            if ti in taken_tracks:
                continue
            reference = track.reference(self.embed)
            for oi, obs in enumerate(observations):
                if oi in taken_obs:
                    continue
                similarity = float(np.dot(reference, self.embed(obs)))
                overlap = overlaps[ti, oi]
                if (overlap >= cfg.min_iou and similarity >= cfg.min_similarity) or similarity >= cfg.reid_similarity:
                    pairs.append((similarity + 0.5 * overlap, ti, oi))
        joins = [(ti, int(np.flatnonzero(overlaps[ti] > 0.05)[0])) for ti in sorted(taken_tracks)]
        for _, ti, oi in sorted(pairs, reverse=True):
            if ti in taken_tracks or oi in taken_obs:
                continue
            taken_tracks.add(ti)
            taken_obs.add(oi)
            joins.append((ti, oi))
        for ti, oi in joins:
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
        previous = track.observations[-1] if track.observations else None
        track.observations.append(obs)
        track.best.append(obs)
        track.best.sort(key=shot_score, reverse=True)
        for dropped in track.best[self.config.pool:]:
            if dropped is not obs:  # the newest look keeps its pixels: it may yet be embedded
                dropped.crop = dropped.aligned = None
        del track.best[self.config.pool:]
        # Pixels are kept only for the shot pool and the newest look.
        if previous is not None and all(previous is not b for b in track.best):
            previous.crop = previous.aligned = None


def shot_score(obs: Observation) -> float:
    """How good a shot this is for recognition: usable first, then size × sharpness × frontalness × score."""
    q = obs.quality
    size = min(q.face_size, 160.0) / 160.0
    sharp = min(q.sharpness, 400.0) / 400.0
    frontal = max(0.0, 1.0 - abs(q.yaw) / 90.0) * max(0.0, 1.0 - abs(q.pitch) / 90.0)
    return (1.0 if q.usable else 0.0) + size * (0.5 + 0.5 * sharp) * frontal * q.detector_score
