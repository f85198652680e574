"""HTML rendering for the web app: the Jinja2 templates, `render` and the error page.

Imported by the web routes, by the dependency layer (HTML errors) and by the middleware (413 and
similar pages for a browser); it imports none of them, so the HTTP side has no import cycle.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..policy import PERMISSIONS, Principal
from .session import csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:.1e}" if rate < 0.001 else f"{rate:.2%}"


TEMPLATES.env.filters["rate"] = _fmt_rate


def may(principal: Principal | None, action: str) -> bool:
    """For showing links and buttons only; the engine decides (and ledgers refusals)."""
    return principal is not None and principal.role in PERMISSIONS.get(action, ())


def render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """A page with the signed-in user, their permissions and their session's CSRF token in the context."""
    principal = getattr(request.state, "principal", None)
    token = getattr(request.state, "token", None)
    context.update(request=request, me=principal, may=lambda action: may(principal, action),
                   csrf=csrf_token(token) if token else "")
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """The HTML error page a browser gets for a refused or failed request."""
    if not hasattr(request.state, "principal"):
        request.state.principal = request.state.token = None
    return render(request, "error.html", status=status, status_code=status, detail=detail)
