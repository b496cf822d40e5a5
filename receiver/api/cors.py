"""CORS for /api/* only: a frontend on an allowed origin may call the API with its
cookies. Everything else (the webhook, health, metrics) never answers cross-origin."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from schema.settings import Settings

API_PREFIX = "/api/"
# Preflight answers may be cached this long by browsers (Chromium caps it at 2 hours).
PREFLIGHT_MAX_AGE = 600


class _JsonRefusals(CORSMiddleware):
    """Starlette refuses a bad preflight in plain text; our errors are always JSON."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode(errors="replace")
        return JSONResponse(
            {"error": "cors_refused", "detail": detail}, status_code=response.status_code
        )


class ApiCors:
    """A pure ASGI wrapper: /api/* goes through Starlette's CORSMiddleware, the rest not."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cors = _JsonRefusals(
            app,
            allow_origins=list(settings.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
