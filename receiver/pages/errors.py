"""Refusals on page routes as pages a person can act on (sign in, go home), not JSON.

API routes, the webhook and the operator endpoints keep their JSON errors; a path under
none of them, asked for by a browser, is a page route.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from receiver.pages.render import page

_MACHINE_PREFIXES = ("/api/", "/eventsub/", "/metrics", "/healthz", "/readyz", "/openapi")
TITLES = {
    400: "That request was not understood",
    401: "Please sign in",
    403: "Not yours to see",
    404: "Nothing here",
    422: "That request was not understood",
    429: "Too many requests",
}


def wants_page(request: Request) -> bool:
    path = request.url.path
    if path.startswith(_MACHINE_PREFIXES) or path == "/api":
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(
    request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """``headers``: the refusal's own (a 429's ``Retry-After``)."""
    title = TITLES.get(status, "Something went wrong")
    return page(
        request, "error.html", status, headers=headers,
        status=status, title=title, detail=detail, who=None,
    )  # fmt: skip
