"""faceledger: self-hosted face search and verification, accountable by construction.

Small public API:

    from faceledger import open_engine
    engine = open_engine(home="faceledger-data")
    engine.create_gallery("staff")
    engine.enroll(["photos/alice.jpg"], gallery="staff", subject="alice", source="HR", legal_basis="consent")
    result = engine.search("probe.jpg", gallery="staff", purpose="access control", case="ticket-17")

The names are imported on first use (PEP 562): `import faceledger.cli` must not load SQLAlchemy, FAISS
and OpenCV before it knows whether the command needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Settings
    from .engine import Engine, open_engine
    from .errors import FaceledgerError
    from .imaging import load_image

__all__ = ["Engine", "FaceledgerError", "Settings", "load_image", "open_engine"]
__version__ = "0.1.0"

def __getattr__(name: str) -> Any:
    if name in ("Engine", "open_engine"):
        from . import engine as module
    elif name == "Settings":
        from . import config as module
    elif name == "FaceledgerError":
        from . import errors as module
    elif name == "load_image":
        from . import imaging as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # once imported, a plain attribute
    return value
