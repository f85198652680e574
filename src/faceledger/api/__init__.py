"""The HTTP API (JSON, /api/v1) and the server-rendered web app, as a thin shell over one shared Engine."""

from .app import create_app

__all__ = ["create_app"]
