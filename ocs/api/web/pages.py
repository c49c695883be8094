"""Rendering the server-side pages: one Jinja2 environment (autoescaped), shared filters, redirects.

Pages are plain HTML forms; the only script is the vendored Chart.js and a few lines that draw a
chart from the numbers the page embeds (``static/charts.js``): no build step, no CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ocs import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                          lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(template).render(request=request, version=__version__, **context)
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
                                   " script-src 'self'; frame-ancestors 'none'; form-action 'self'"})


def redirect(path: str) -> RedirectResponse:
    """After a POST: 303 so a reload does not post again."""
    return RedirectResponse(path, status_code=303)


def pdf_response(number: str, data: bytes) -> Response:
    disposition = f'inline; filename="{number}.pdf"'
    return Response(data, media_type="application/pdf", headers={"Content-Disposition": disposition})
