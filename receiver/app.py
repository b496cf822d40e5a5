"""create_app(settings): routes, middleware, lifespan. What uvicorn serves."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp

from receiver import oauth
from receiver.api.cors import ApiCors
from receiver.api.routes import api_routes
from receiver.context import Context
from receiver.docs import docs_routes
from receiver.errors import EXCEPTION_HANDLERS
from receiver.health import healthz, readyz
from receiver.metrics import RequestMetrics, metrics
from receiver.pages.routes import page_routes
from receiver.queue import NotificationQueue, connect_redis
from receiver.request_id import RequestId
from receiver.startup import start_app_subscriptions
from receiver.webhook import WebhookFront, callback
from schema.db import create_engine, create_sessionmaker
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch import TwitchClient

log = get_logger("receiver.app")

# A request's transaction is idle only while its handler awaits something else (a CSV
# page being written to the client): past this, PostgreSQL ends it and the connection
# returns to the pool. A request waits at most POOL_WAIT_SECONDS for a connection, then
# gets a 503 with Retry-After: a client has given up long before the default 30 s.
IDLE_IN_TRANSACTION_SECONDS = 30.0
POOL_WAIT_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Receiver(Starlette):
    """The web app: Starlette, with ``POST /eventsub/callback`` served in front of its
    middleware stack by ``receiver/webhook.py``, which does for it what the middleware
    below does for every other route (request id, metrics, JSON errors)."""

    def build_middleware_stack(self) -> ASGIApp:
        return WebhookFront(super().build_middleware_stack())


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> Starlette:
    settings.require("database_url", "redis_url", "eventsub_secret")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url or "",
            pool_size=settings.database_pool_size,
            idle_in_transaction_timeout=IDLE_IN_TRANSACTION_SECONDS,
            pool_timeout=POOL_WAIT_SECONDS,
        )
        redis = connect_redis(settings.redis_url or "", settings.redis_max_connections)
        twitch = TwitchClient(settings, redis)
        app.state.ctx = Context(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            redis=redis,
            queue=NotificationQueue(redis, settings.queue_name, settings.fold_shards),
            clock=clock,
            twitch=twitch,
        )
        await _warn_if_redis_may_evict(redis)
        # Everything made so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall every request in flight.
        gc.collect()
        gc.freeze()
        ensure = start_app_subscriptions(app.state.ctx)
        try:
            yield
        finally:
            if ensure is not None:
                ensure.cancel()
            if (hub := getattr(app.state, "live_hub", None)) is not None:
                await hub.close()
            await twitch.aclose()
            await redis.aclose()
            await engine.dispose()

    routes = [
        # Reached only by other methods (a 405): WebhookFront takes every POST.
        Route("/eventsub/callback", callback, methods=["POST"]),
        Route("/auth/twitch/login", oauth.login),
        Route("/auth/twitch/callback", oauth.callback),
        Route("/auth/logout", oauth.logout, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *api_routes(),
        *docs_routes(),
        *page_routes(),
    ]
    app = Receiver(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestMetrics),
            Middleware(RequestId),
            Middleware(ApiCors, settings=settings),
        ],
    )
    # Starlette answers /api/me/ with a redirect built from the request's Host header,
    # which anyone can set: a link to us would send the browser elsewhere. Every route
    # has one spelling; any other is a 404.
    app.router.redirect_slashes = False
    return app


def from_environment() -> Starlette:
    """The Procfile's uvicorn factory: settings from the environment, read once."""
    from schema.logs import configure_logging
    from schema.preflight import ServiceUnreachable, require_reachable
    from schema.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_format)
    try:
        require_reachable(settings, "web")
    except ServiceUnreachable:
        raise SystemExit(3) from None  # logged as one line already
    return create_app(settings)


async def _warn_if_redis_may_evict(redis: object) -> None:
    """An evicting Redis can silently drop accepted jobs (RELIABILITY.md 2)."""
    try:
        policy = await redis.config_get("maxmemory-policy")  # type: ignore[attr-defined]
    except Exception:
        log.warning("redis.unreachable_at_startup")
        return
    if policy.get("maxmemory-policy") != "noeviction":
        log.warning("redis.may_evict_jobs", policy=policy.get("maxmemory-policy"))
