"""POST /eventsub/callback, served in front of Starlette's middleware stack.

The webhook is the one route under sustained load (every chat message is a request),
and on it Starlette's layers (two exception middlewares, the router, a Request and a
Response object, a send wrapper per layer) cost as much CPU as the request's own work
(``python -m bench.profile_receiver``). So this one ASGI layer does for the webhook what
the middleware in ``receiver/app.py`` does for every other route: the request id
(``receiver/request_id.py``) bound for logging and sent back, the time to answer by
route and status (``receiver/metrics.py``), and any exception answered as
``receiver/errors.py`` answers it, in JSON. Other methods on this path and every other
request go through Starlette (a JSON 405 for ``GET /eventsub/callback``).
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from receiver import eventsub
from receiver.errors import json_answer
from receiver.metrics import request_timer
from receiver.request_id import HEADER, request_id_of

PATH = "/eventsub/callback"


class WebhookFront:
    """Routes ``POST /eventsub/callback`` to ``serve``, everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            await callback(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Callback:
    """The webhook as an ASGI app; a class, so that Starlette's ``Route`` takes it as
    one rather than as a function of a ``Request``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send)


callback = Callback()


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one webhook request; ``scope["app"]`` is the Starlette app (it sets that
    before its middleware runs), whose lifespan made the context."""
    started = time.perf_counter()
    request_id = request_id_of(scope)
    bound = structlog.contextvars.bind_contextvars(request_id=request_id)
    status = 500
    try:
        try:
            response = await eventsub.answer(scope["app"].state.ctx, scope, receive)
        except Exception as exc:
            response = json_answer(exc, PATH)
        status = response.status_code
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*response.raw_headers, (HEADER, request_id.encode("ascii"))],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
    finally:
        structlog.contextvars.reset_contextvars(**bound)
        request_timer(PATH, status).observe(time.perf_counter() - started)
