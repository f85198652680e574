"""faceledger: self-hosted face search and verification, accountable by construction.

Small public API:

    from faceledger import open_engine
    engine = open_engine(home="faceledger-data")
    engine.create_gallery("staff")
    engine.enroll(["photos/alice.jpg"], gallery="staff", subject="alice", source="HR", legal_basis="consent")
    result = engine.search("probe.jpg", gallery="staff", purpose="access control", case="ticket-17")
"""

from .config import Settings
from .engine import Engine, open_engine
from .errors import FaceledgerError
from .imaging import load_image

__all__ = ["Engine", "FaceledgerError", "Settings", "load_image", "open_engine"]
__version__ = "0.1.0"
