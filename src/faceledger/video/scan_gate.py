"""Point-and-scan: follow the face a camera points at, frame by frame, and say in plain words what would
make the shot better ("closer", "face the camera", "hold still") until enough good frames were seen.

A `ScanGate` holds one scan's tracker (video/track.py), the id of the track it follows (the largest
face; kept while it stays in view) and the JPEG bytes of at most `keep` best frames of that track —
nothing else. Stage code: knows nothing of the store, users or HTTP (services/scan.py holds those).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .shots import select_shots, template
from .track import Observation, Track, Tracker, TrackerConfig, shot_score

FEEDBACK = {
    "no_face": "No face yet: point the camera at the person",
    "closer": "Come closer",
    "face_camera": "Ask the person to face the camera",
    "hold_still": "Hold still",
    "good": "Good: hold it there",
}
"""Feedback codes and the words the web page shows for them."""


@dataclass(frozen=True)
class GateConfig:
    min_face: float = 80.0
    """Shorter side of the face box, in pixels of the frame sent, below which the answer is "closer"
    (a scan asks for more than the still-image minimum: the best shot is searched as it is)."""
    max_yaw: float = 30.0
    max_pitch: float = 30.0
    """Pose beyond which the answer is "face the camera" (stricter than the still-image limits)."""
    max_motion: float = 0.25
    """Movement of the face's centre between two frames, as a fraction of its size, that counts as
    moving ("hold still"): a moving face smears even when each frame looks sharp enough."""
    good_frames: int = 4
    """Good frames of the followed face after which the scan searches."""
    keep: int = 3
    """Best frames kept (JPEG bytes) for the probe record and the template; older ones are dropped."""
    max_faces: int = 3
    """Only the largest faces of a frame are followed (the camera points at one person); with the
    tracker's small shot pool this bounds the pixels a scan holds."""


@dataclass
class Feedback:
    code: str
    message: str
    faces: int
    box: tuple[float, float, float, float] | None
    """The followed face's box as fractions of the frame's width and height (x0, y0, x1, y1)."""
    good_frames: int
    needed: int
    note: str | None = None

    @property
    def progress(self) -> float:
        return min(1.0, self.good_frames / self.needed) if self.needed else 1.0

    def as_json(self) -> dict:
        return {"code": self.code, "message": self.message, "faces": self.faces,
                "box": [round(v, 4) for v in self.box] if self.box else None, "good_frames": self.good_frames,
                "needed": self.needed, "progress": round(self.progress, 3), "note": self.note}


@dataclass
class BestShot:
    """What a scan searches with: one template vector, and the frame recorded as the probe."""

    vector: np.ndarray
    observation: Observation
    jpeg: bytes
    shots: int


@dataclass
class ScanGate:
    embed: Callable[[Observation], np.ndarray]
    config: GateConfig = field(default_factory=GateConfig)
    tracker_config: TrackerConfig | None = None
    target: int | None = None
    good: int = 0
    frames_seen: int = 0
    kept: dict[int, tuple[Observation, bytes]] = field(default_factory=dict)
    """frame index -> (the followed face's observation in it, the frame's JPEG): at most config.keep."""

    def __post_init__(self) -> None:
        # A small shot pool: the gate keeps its own best frames; the tracker's pixels are for matching.
        self.tracker = Tracker(self.embed, self.tracker_config or TrackerConfig(pool=4))

    def feed(self, t: float, index: int, observations: list[Observation], rgb: np.ndarray, jpeg: bytes) -> Feedback:
        """Take one frame's faces; say what to do next. The frame's JPEG is kept only while it is one of
        the followed face's `keep` best."""
        cfg = self.config
        self.frames_seen += 1
        height, width = rgb.shape[:2]
        faces = len(observations)
        observations = sorted(observations, key=lambda o: o.quality.face_size, reverse=True)[:cfg.max_faces]
        self.tracker.update(t, observations, rgb)
        seen = {id(o) for o in observations}
        live = {tr.track_id: tr for tr in self.tracker.live if id(tr.last) in seen}
        if not live:
            return self._answer("no_face", 0, None, width, height)
        if self.target not in live:  # the largest face in view becomes the one followed
            largest = max(live.values(), key=lambda tr: tr.last.quality.face_size)
            if self.target is not None:
                self.kept.clear()
            self.target, self.good = largest.track_id, 0
        track = live[self.target]
        obs = track.last
        code = self._judge(track, obs)
        if code == "good":
            self.good += 1
            self._keep(obs, jpeg)
        note = f"{faces} faces in view: following the largest (boxed)" if faces > 1 else None
        return self._answer(code, faces, obs.box, width, height, note)

    @property
    def ready(self) -> bool:
        return self.good >= self.config.good_frames

    def best_shot(self, max_shots: int = 3) -> BestShot | None:
        """The template of the followed face's best kept shots (several poses where they differ), or None
        when no good frame was seen."""
        if not self.kept:
            return None
        pool = Track(track_id=self.target or 0, best=sorted((o for o, _ in self.kept.values()), key=shot_score,
                                                            reverse=True))
        shots = select_shots(pool, max_shots=max_shots)
        if not shots:
            return None
        return BestShot(vector=template(shots, self.embed), observation=shots[0], jpeg=self.kept[shots[0].frame][1],
                        shots=len(shots))

    def forget(self) -> None:
        """Drop every frame, crop and embedding this scan holds."""
        for track in self.tracker.finish():
            for obs in track.observations:
                obs.crop = obs.aligned = obs.embedding = None
            track.best.clear()
        self.kept.clear()

    def _judge(self, track: Track, obs: Observation) -> str:
        cfg, q = self.config, obs.quality
        if q.face_size < cfg.min_face:
            return "closer"
        if abs(q.yaw) > cfg.max_yaw or abs(q.pitch) > cfg.max_pitch or any("detection" in r for r in q.reasons):
            return "face_camera"
        if not q.usable or moving(track, cfg.max_motion):
            return "hold_still"  # blurred (the only reason left), or moving
        return "good"

    def _keep(self, obs: Observation, jpeg: bytes) -> None:
        self.embed(obs)  # now, while its aligned crop is certainly held (the tracker drops older ones)
        self.kept[obs.frame] = (obs, jpeg)
        if len(self.kept) > self.config.keep:
            worst = min(self.kept, key=lambda frame: shot_score(self.kept[frame][0]))
            del self.kept[worst]

    def _answer(self, code: str, faces: int, box, width: int, height: int, note: str | None = None) -> Feedback:
        fraction = None if box is None else (box[0] / width, box[1] / height, box[2] / width, box[3] / height)
        return Feedback(code=code, message=FEEDBACK[code], faces=faces, box=fraction, good_frames=self.good,
                        needed=self.config.good_frames, note=note)


def moving(track: Track, max_motion: float) -> bool:
    """Whether the face's centre moved more than max_motion × its size since the track's previous look."""
    if len(track.observations) < 2:
        return False
    a, b = track.observations[-2].box, track.observations[-1].box
    size = max(1.0, min(b[2] - b[0], b[3] - b[1]))
    dx, dy = (a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2
    return float(np.hypot(dx, dy)) > max_motion * size
