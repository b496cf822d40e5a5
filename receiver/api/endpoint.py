"""One declarative ``Operation`` per API route, and the one wrapper that serves them all.

The wrapper does, in order: identify the caller (401), check the path ids (422), apply
the operation's access ``Rule`` (403), check the channel exists (404), parse the declared
query parameters (422), then call the handler inside one database transaction. A
request body is read first, bounded in size and time, before any of that: a client
that trickles its body must not hold a pooled connection meanwhile. The same
``Operation`` values generate ``/openapi.json``, so what is documented is what is served.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.api import access, params, ratelimit
from receiver.body import read_bounded
from receiver.context import Context
from receiver.identity import Identity, identify
from schema.errors import NotFound

T = TypeVar("T")

# The largest body an API route takes (a token's name); far below the webhook's bound.
MAX_BODY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Call:
    """Everything a handler may use: who asks (already authorized), the transaction,
    the validated path ids, the parsed query parameters and the raw request body (empty
    unless the operation declares one)."""

    request: Request
    ctx: Context
    who: Identity
    session: AsyncSession
    now: datetime
    broadcaster_id: str | None
    token_id: int | None
    args: dict[str, Any]
    body: bytes = b""

    def arg(self, group: params.QueryGroup[T]) -> T:
        value: T = self.args[group.key]  # KeyError: the operation did not declare it
        return value


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    rule: access.Rule
    summary: str
    returns: type | None  # the JSON body's shape (None: no body)
    status: int = 200
    queries: tuple[params.QueryGroup[Any], ...] = ()
    body: type | None = None  # the JSON request body's shape
    csv: type | None = None  # the row shape when the route also speaks CSV
    errors: tuple[int, ...] = field(default=(401, 403, 422))
    # False for operations where a channel we never heard of is an answer, not a 404.
    channel_must_exist: bool = True

    @property
    def operation_id(self) -> str:
        return getattr(self.handler, "__name__", self.path)


_CHANNEL_EXISTS = text("SELECT 1 FROM channels WHERE broadcaster_id = :b")


def endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        began = time.perf_counter()
        ctx: Context = request.app.state.ctx
        if op.rule.audience is access.Audience.PUBLIC:
            await ratelimit.check(ctx, request)
        body = b""
        if op.body is not None:
            declared = request.headers.get("content-length")
            body = await read_bounded(request, ctx.body_deadlines, MAX_BODY_BYTES, declared)
        async with ctx.sessions.begin() as session:
            found = await identify(session, ctx.settings, request)
            if op.rule.audience is access.Audience.PUBLIC:
                return await _serve_public(
                    op, request, ctx, session, found or access.ANONYMOUS, began
                )
            identity = access.signed_in(found)
            path = request.path_params
            broadcaster_id = (
                params.broadcaster_id(path["broadcaster_id"]) if "broadcaster_id" in path else None
            )
            who = access.authorize(op.rule, identity, broadcaster_id)
            access.check_origin(ctx.settings, request.method, who, request.headers.get("origin"))
            token_id = params.token_id(path["token_id"]) if "token_id" in path else None
            if (
                broadcaster_id is not None
                and op.channel_must_exist
                and await session.scalar(_CHANNEL_EXISTS, {"b": broadcaster_id}) is None
            ):
                raise NotFound(f"no channel {broadcaster_id}")
            now = ctx.clock()
            inputs = params.Inputs(request.query_params, request.headers.get("accept", ""), now)
            args = {group.key: group.parse(inputs) for group in op.queries}
            call = Call(request, ctx, who, session, now, broadcaster_id, token_id, args, body)
            response = await op.handler(call)
        # Time spent at the server (identify, access, query, encode; for a streamed CSV only
        # until its first bytes), for browsers' dev tools and the benchmarks.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
        return response

    serve.__name__ = op.operation_id
    return serve


async def _serve_public(
    op: Operation,
    request: Request,
    ctx: Context,
    session: AsyncSession,
    who: Identity,
    began: float,
) -> Response:
    """A route anyone may call: the handler decides what a caller may see beyond the
    public figures (``who.may_read_channel``), and checks the channel itself (a channel
    seen only in Twitch's top list has no ``channels`` row)."""
    path = request.path_params
    broadcaster_id = (
        params.broadcaster_id(path["broadcaster_id"]) if "broadcaster_id" in path else None
    )
    now = ctx.clock()
    inputs = params.Inputs(request.query_params, request.headers.get("accept", ""), now)
    args = {group.key: group.parse(inputs) for group in op.queries}
    response = await op.handler(Call(request, ctx, who, session, now, broadcaster_id, None, args))
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
    return response


def routes_of(operations: tuple[Operation, ...]) -> list[Route]:
    """One Starlette route per path, dispatching on the method, so that a 405 names
    every method the path allows."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = endpoint(op)
    routes = []
    for path, handlers in by_path.items():

        async def dispatch(
            request: Request, handlers: dict[str, Callable[..., Any]] = handlers
        ) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            response: Response = await handlers[method](request)
            return response

        routes.append(Route(path, dispatch, methods=list(handlers)))
    return routes
