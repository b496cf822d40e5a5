"""Liveness and readiness for operators and load balancers.

Both /readyz and /metrics answer anyone, so what they ask PostgreSQL and Redis is
reused for ``PROBE_SECONDS``: a flood of anonymous probes costs one round of queries a
second, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from receiver.context import Context

T = TypeVar("T")

PROBE_SECONDS = 1.0


class Recent(Generic[T]):
    """The last result of a check, reused while younger than ``seconds``; callers that
    arrive while it runs wait for that one run instead of starting their own."""

    def __init__(self, seconds: float = PROBE_SECONDS) -> None:
        self.seconds = seconds
        self._value: T | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, check: Callable[[], Awaitable[T]]) -> T:
        if self._value is not None and time.monotonic() - self._at < self.seconds:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.seconds:
                self._value = await check()
                self._at = time.monotonic()
            return self._value


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    ctx: Context = request.app.state.ctx
    checks: dict[str, str] = await ctx.probes.readiness.get(lambda: _check(ctx))
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _check(ctx: Context) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with ctx.sessions() as session:
                await session.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = type(exc).__name__
    try:
        async with asyncio.timeout(2):
            await ctx.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    return checks


class Probes:
    """The cached checks of one web process."""

    def __init__(self) -> None:
        self.readiness: Recent[dict[str, str]] = Recent()
        self.metrics: Recent[bool] = Recent()
