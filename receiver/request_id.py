"""A request id on every log line of a web request, and on its response.

An incoming ``X-Request-Id`` (a proxy's or a client's) is kept when it is short and made
of safe characters, so one id follows a request across services; anything else is
replaced by a fresh one. The id is bound in structlog's context variables for the
request's duration and sent back in the response's ``X-Request-Id`` header. Pure ASGI:
no per-request task or body buffering on the webhook's hot path.
"""

from __future__ import annotations

import re
import secrets

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
MAX_LENGTH = 128
# Letters, digits and the punctuation of UUIDs, ULIDs and trace ids; nothing that could
# split a log line or a header.
_SANE = re.compile(rb"[A-Za-z0-9._:@+=/-]{1,%d}" % MAX_LENGTH)


def incoming(scope: Scope) -> str | None:
    """The request's own X-Request-Id when exactly one is given and it is sane."""
    found = [value for name, value in scope.get("headers", ()) if name == HEADER]
    if len(found) == 1 and _SANE.fullmatch(found[0]):
        value: bytes = found[0]
        return value.decode("ascii")
    return None


def request_id_of(scope: Scope) -> str:
    """The incoming id if it is usable, else a fresh one."""
    return incoming(scope) or secrets.token_hex(16)


class RequestId:
    """Binds ``request_id`` for the request and echoes it in the response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        raw = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, raw)]}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
