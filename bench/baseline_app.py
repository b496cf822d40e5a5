"""The receiver's ceiling: a bare Starlette app that reads the body, verifies the
signature and answers 204, served with the same uvicorn settings as the receiver."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.signature import verify
from schema.settings import load_settings


def create() -> Starlette:
    secrets = load_settings().eventsub_secrets

    async def callback(request: Request) -> Response:
        body = await request.body()
        verify(
            secrets,
            request.headers["twitch-eventsub-message-id"],
            request.headers["twitch-eventsub-message-timestamp"],
            body,
            request.headers["twitch-eventsub-message-signature"],
        )
        return Response(status_code=204)

    return Starlette(routes=[Route("/eventsub/callback", callback, methods=["POST"])])
