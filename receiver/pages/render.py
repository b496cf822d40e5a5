"""HTML responses of the pages: Jinja2 templates shipped in the package, and the headers
every page carries.

The Content-Security-Policy allows scripts, styles and images from this origin only: no
inline script or style can run, so an injected ``<script>`` in a stream title could not
either (the templates escape it as well). The discovery pages also allow images, and
nothing else, from Twitch's image host (``TWITCH_IMAGES``), for stream thumbnails and
profile pictures; an image anywhere else is left out rather than loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

TWITCH_IMAGES = "https://static-cdn.jtvnw.net"


def csp(*image_hosts: str) -> str:
    images = " ".join(("'self'", "data:", *image_hosts))
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


CSP = csp()
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show private figures
}

templates = Environment(
    loader=PackageLoader("receiver.pages", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def figure(value: object, digits: int = 2) -> str:
    """A figure as the pages show it: '-' when there is none (no viewer samples)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


templates.filters["figure"] = figure


def page(
    request: Request,
    template: str,
    status_code: int = 200,
    *,
    image_hosts: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    body = templates.get_template(template).render(request=request, **context)
    sent = HEADERS | {"Content-Security-Policy": csp(*image_hosts)} | dict(headers or {})
    return HTMLResponse(body, status_code=status_code, headers=sent)
