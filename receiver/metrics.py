"""Prometheus metrics of the web process, and /metrics.

Counters count what this process did; gauges about the pipeline as a whole (queue depth,
dead letters) are read from Redis and PostgreSQL at scrape time, so they are right
whichever process did the work.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from schema.jobs import failed_batches_key

REGISTRY = CollectorRegistry()
NOTIFICATIONS = Counter(
    "streamfold_eventsub_messages",
    "EventSub messages received, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("streamfold_queue_jobs", "Fold jobs waiting in the queue", registry=REGISTRY)
DEAD_LETTERS = Gauge(
    "streamfold_dead_letters", "Notifications kept in the dead-letter table", registry=REGISTRY
)
PARKED = Gauge(
    "streamfold_failed_batches", "Fold batches that ran out of retries", registry=REGISTRY
)


async def metrics(request: Request) -> Response:
    ctx = request.app.state.ctx
    try:
        QUEUE_DEPTH.set(await ctx.redis.zcard(ctx.settings.queue_name))
        PARKED.set(await ctx.redis.llen(failed_batches_key(ctx.settings.queue_name)))
    except Exception:
        QUEUE_DEPTH.set(float("nan"))
    try:
        async with ctx.sessions() as session:
            count = await session.execute(text("SELECT count(*) FROM dead_letters"))
            DEAD_LETTERS.set(count.scalar_one())
    except Exception:
        DEAD_LETTERS.set(float("nan"))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
