"""GET /docs: the API reference, rendered in the browser from ``/openapi.json``.

The renderer is Swagger UI's prebuilt bundle (npm ``swagger-ui-dist``, the version in
``SWAGGER_UI_VERSION``), shipped inside this package under ``docs_assets/`` and served
from here: the page needs nothing from the network but this server, and its
Content-Security-Policy allows only our own origin (Swagger UI sets inline styles, and
shows its logo as a data: image).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

SWAGGER_UI_VERSION = "5.35.0"
ASSETS = Path(__file__).resolve().parent / "docs_assets"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamfold API reference</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css?v={SWAGGER_UI_VERSION}">
</head>
<body>
<div id="reference"></div>
<script src="/docs/assets/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script src="/docs/assets/init.js?v={SWAGGER_UI_VERSION}"></script>
</body>
</html>
"""


async def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})


def docs_routes() -> list[Route | Mount]:
    return [
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/docs/assets", StaticFiles(directory=ASSETS), name="docs_assets"),
    ]
