"""The public routes' rate limit: ``PUBLIC_RATE_LIMIT`` requests per minute per client.

A fixed one-minute window per client address, counted in Redis so every web process
shares it. The client is the connecting address; ``X-Forwarded-For`` is believed only
from a peer listed in ``TRUSTED_PROXIES`` (anyone else could name any address and so
dodge the limit or spend someone else's).
"""

from __future__ import annotations

import math

from starlette.requests import Request

from receiver.context import Context
from schema.errors import TooManyRequests

WINDOW_SECONDS = 60


def client_address(request: Request, trusted: frozenset[str]) -> str:
    """The connecting address, or, behind a trusted proxy, the nearest address in
    ``X-Forwarded-For`` that is not itself one of the trusted proxies."""
    peer = request.client.host if request.client else "unknown"
    if peer not in trusted:
        return peer
    forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",")]
    for address in reversed([a for a in forwarded if a]):
        if address not in trusted:
            return address
    return peer


async def check(ctx: Context, request: Request) -> None:
    """Count this request against its client's minute; refuse it beyond the limit."""
    settings = ctx.settings
    now = ctx.clock().timestamp()
    window = int(now // WINDOW_SECONDS)
    client = client_address(request, settings.trusted_proxy_addresses)
    key = f"{settings.queue_name}:ratelimit:{client}:{window}"
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 2 * WINDOW_SECONDS)
        count, _ = await pipe.execute()
    if int(count) > settings.public_rate_limit:
        retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        raise TooManyRequests(
            f"more than {settings.public_rate_limit} requests a minute from {client}; "
            f"retry in {retry_after} s",
            retry_after,
        )
