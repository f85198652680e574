"""/docs (Swagger UI) and /redoc (ReDoc) served from this server, never from a CDN.

Their JavaScript and CSS come from the pinned PyPI package `fastapi-offline` (it ships swagger-ui-dist's
bundle and CSS and ReDoc's standalone bundle); each file's sha256 is checked against the values pinned
here before it is served, so an upgraded or altered package is noticed instead of served. The pages
have no inline script (static/swagger-init.js starts Swagger UI; ReDoc starts itself from its <redoc>
element), so their Content-Security-Policy allows scripts from 'self' only (security.DOCS_CSP).
"""

from __future__ import annotations

import hashlib
import logging
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("faceledger.api")

ASSETS_PREFIX = "/static/docs"
PINNED = {
    "swagger-ui-bundle.js": "4b5a9b35a1adf37f00d39c0bae23cdb37007e2946240ef035137cc85b4d55349",
    "swagger-ui.css": "ca238f7d7c2cf4480c1e77a9c3b9da915ab216e96ffd354e69076560c650c6de",
    "redoc.standalone.js": "1320f442151c57c447d3b70c7ffc6c4f86d08464020fe34c8cc5d3164e9944f0",
    "favicon.png": "d16f72cf5a2773eba499cc7f3db1923c6f5f73de990f739e3a05806aafec15b7",
}
"""sha256 of each asset of fastapi-offline 1.7.7 (pyproject.toml pins that version)."""


def assets_dir() -> Path | None:
    """The installed package's static folder, or None when fastapi-offline is not installed."""
    try:
        return Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None


def asset_problems(directory: Path | None) -> list[str]:
    """Every asset that is missing or differs from its pinned sha256 (an empty list: all as pinned)."""
    if directory is None:
        return ["the package fastapi-offline is not installed"]
    problems = []
    for name, digest in PINNED.items():
        try:
            actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        except OSError:
            problems.append(f"{name} is missing from {directory}")
            continue
        if actual != digest:
            problems.append(f"{name} has sha256 {actual}, not the pinned {digest}")
    return problems


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="icon" type="image/png" href="{ASSETS_PREFIX}/favicon.png">{head}</head>
<body>{body}</body></html>""")


UNAVAILABLE = ("<p>The API documentation's files are not available on this server ({problems}); the OpenAPI "
               'document is at <a href="/openapi.json">/openapi.json</a>.</p>')


def install_docs(app: FastAPI, *, title: str, openapi_url: str = "/openapi.json") -> None:
    """Mount the checked assets and add /docs and /redoc (the app is made with docs_url=redoc_url=None)."""
    directory = assets_dir()
    problems = asset_problems(directory)
    if problems:
        log.error("API docs pages disabled: %s", "; ".join(problems))
    else:
        app.mount(ASSETS_PREFIX, StaticFiles(directory=str(directory)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        if problems:
            return _page(f"{title} - API docs", "", UNAVAILABLE.format(problems="; ".join(problems)))
        return _page(f"{title} - Swagger UI",
                     f'<link rel="stylesheet" href="{ASSETS_PREFIX}/swagger-ui.css">',
                     f'<div id="swagger-ui" data-openapi="{openapi_url}"></div>'
                     f'<script src="{ASSETS_PREFIX}/swagger-ui-bundle.js"></script>'
                     '<script src="/static/swagger-init.js"></script>')

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        if problems:
            return _page(f"{title} - API docs", "", UNAVAILABLE.format(problems="; ".join(problems)))
        return _page(f"{title} - ReDoc", "<style>body{margin:0;padding:0}</style>",
                     f'<redoc spec-url="{openapi_url}"></redoc><script src="{ASSETS_PREFIX}/redoc.standalone.js">'
                     "</script>")
