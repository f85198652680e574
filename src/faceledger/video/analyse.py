"""One pass over a video: sampled frames → observations → tracks. The stage the video services share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..pipeline import FacePipeline
from .decode import frames
from .shots import embedder, observe
from .track import Track, Tracker, TrackerConfig


@dataclass
class Analysis:
    embed: object = None
    """The embedding function the tracks were made with (shots are embedded through it, lazily)."""
    tracks: list[Track] = field(default_factory=list)
    frames_sampled: int = 0
    faces_seen: int = 0
    last_t: float = 0.0


def analyse(pipeline: FacePipeline, path: Path | str, *, every_ms: float,
            config: TrackerConfig | None = None, detect_max_side: int | None = None,
            progress: Callable[[float], None] | None = None) -> Analysis:
    """Detect and embed the faces of one frame per every_ms and follow them as tracks (ids in order of
    first appearance, so the same file and sampling always give the same track numbers).

    progress: called after each sampled frame with its time in seconds (the caller knows the duration)."""
    tracker = Tracker(embedder(pipeline), config)
    result = Analysis(embed=tracker.embed)
    for frame in frames(path, every_ms=every_ms):
        observations = observe(pipeline, frame.t, frame.index, frame.rgb, detect_max_side=detect_max_side)
        result.frames_sampled += 1
        result.faces_seen += len(observations)
        result.last_t = frame.t
        result.tracks.extend(tracker.update(frame.t, observations, frame.rgb))
        if progress is not None:
            progress(frame.t)
    result.tracks.extend(tracker.finish())
    result.tracks.sort(key=lambda tr: tr.track_id)
    return result
