"""Prometheus metrics of the web process, and /metrics.

Counters count what this process did; gauges about the pipeline as a whole (queue depth,
dead letters) are read from Redis and PostgreSQL at scrape time, so they are right
whichever process did the work. The families both processes share are in
``schema/metrics.py``; this module adds the web's own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema import live
from schema.jobs import failed_batches_key
from schema.metrics import QUEUE_DEPTH, REGISTRY, refresh_queue_gauges
from schema.twitch.client import budget_key
from schema.twitch.subscription_records import CHAT_BLOCKED_REASONS

if TYPE_CHECKING:
    from receiver.context import Context

REQUEST_SECONDS = Histogram(
    "streamfold_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template (not the raw path) and status",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
_REQUEST_TIMERS: dict[tuple[str, int | str], Histogram] = {}


def request_timer(route: str, status: int | str) -> Histogram:
    """REQUEST_SECONDS for ``route`` and ``status``, looked up once (``labels`` takes a
    lock and builds its key on every call). Both are bounded: templates and codes."""
    try:
        return _REQUEST_TIMERS[route, status]
    except KeyError:
        timer = _REQUEST_TIMERS[route, status] = REQUEST_SECONDS.labels(
            route=route, status=str(status)
        )
        return timer


JOB_DELIVERIES = Histogram(
    "streamfold_queue_job_deliveries",
    "Deliveries per fold job the receiver enqueued (concurrent requests share a job)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "streamfold_dead_letters", "Notifications kept in the dead-letter table", registry=REGISTRY
)
PARKED = Gauge(
    "streamfold_failed_batches", "Fold batches that ran out of retries", registry=REGISTRY
)

JOB_RUNS = Gauge(
    "streamfold_job_runs_24h",
    "Periodic job runs (job_runs) started in the last 24 hours, by job and outcome",
    ["job", "outcome"],
    registry=REGISTRY,
)
JOB_LAST_SUCCESS = Gauge(
    "streamfold_job_last_success_timestamp_seconds",
    "When each periodic job last finished successfully (Unix time)",
    ["job"],
    registry=REGISTRY,
)
CHAT_BLOCKED = Gauge(
    "streamfold_chat_blocked_channels",
    "Connected channels whose chat subscription waits for a person (bot banned, moderator"
    " status lost), by revocation reason",
    ["reason"],
    registry=REGISTRY,
)
TRACKED = Gauge(
    "streamfold_tracked_channels", "Channels tracked (connected or followed)", registry=REGISTRY
)
OUTBOX_DEPTH = Gauge(
    "streamfold_live_outbox_unpublished", "Live-status changes not yet published", registry=REGISTRY
)
OUTBOX_AGE = Gauge(
    "streamfold_live_outbox_oldest_seconds",
    "Age of the oldest unpublished live-status change (0 when none)",
    registry=REGISTRY,
)
LIVE_COUNTERS = Gauge(
    "streamfold_live_events",
    "Live-status counters of all workers: published_messages, follow_events, ...",
    ["counter"],
    registry=REGISTRY,
)
BUDGET = Gauge(
    "streamfold_eventsub_cost",
    "EventSub budget as Twitch last reported it: total_cost and max_total_cost",
    ["figure"],
    registry=REGISTRY,
)
SSE_CONNECTIONS = Gauge(
    "streamfold_sse_connections", "Open /api/live/events streams of this process", registry=REGISTRY
)
_TRACKED = text("""
    SELECT count(*) FROM channels c WHERE connected
       OR EXISTS (SELECT 1 FROM follows f WHERE f.broadcaster_id = c.broadcaster_id)
""")
_OUTBOX = text("""
    SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(changed_at)), 0) AS age
    FROM live_outbox WHERE published_at IS NULL
""")
_CHAT_BLOCKED = text("""
    SELECT chat_revocation AS reason, count(*) AS n FROM channels
    WHERE connected AND chat_blocked GROUP BY 1
""")
_JOB_RUNS_24H = text("""
    SELECT job, outcome, count(*) AS n FROM job_runs
    WHERE started_at > now() - interval '24 hours' GROUP BY 1, 2
""")
_JOB_LAST_SUCCESS = text("""
    SELECT job, extract(epoch FROM max(finished_at)) AS at FROM job_runs
    WHERE outcome = 'success' GROUP BY 1
""")


async def _job_gauges(session: AsyncSession) -> None:
    JOB_RUNS.clear()
    for row in await session.execute(_JOB_RUNS_24H):
        JOB_RUNS.labels(job=row.job, outcome=row.outcome).set(row.n)
    for row in await session.execute(_JOB_LAST_SUCCESS):
        JOB_LAST_SUCCESS.labels(job=row.job).set(float(row.at))


async def _chat_gauges(session: AsyncSession) -> None:
    CHAT_BLOCKED.clear()
    for reason in CHAT_BLOCKED_REASONS:  # present at 0, so alerts can compare
        CHAT_BLOCKED.labels(reason=reason).set(0)
    for row in await session.execute(_CHAT_BLOCKED):
        CHAT_BLOCKED.labels(reason=row.reason or "unknown").set(row.n)


async def _live_gauges(request: Request, session: AsyncSession) -> None:
    TRACKED.set((await session.execute(_TRACKED)).scalar_one())
    outbox = (await session.execute(_OUTBOX)).one()
    OUTBOX_DEPTH.set(outbox.n)
    OUTBOX_AGE.set(float(outbox.age))
    hub = getattr(request.app.state, "live_hub", None)
    SSE_CONNECTIONS.set(len(hub.connections) if hub is not None else 0)
    ctx = request.app.state.ctx
    redis = ctx.redis
    for name, value in (await redis.hgetall(live.Names.of(ctx.settings).counters)).items():
        LIVE_COUNTERS.labels(counter=name.decode()).set(int(value))
    for name, value in (await redis.hgetall(budget_key(ctx.settings))).items():
        BUDGET.labels(figure=name.decode()).set(int(value))


async def metrics(request: Request) -> Response:
    ctx = request.app.state.ctx
    await ctx.probes.metrics.get(lambda: _refresh_gauges(request))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _refresh_gauges(request: Request) -> bool:
    """Read the pipeline-wide gauges (reused for a second, receiver/health.py)."""
    ctx: Context = request.app.state.ctx
    try:
        await refresh_queue_gauges(ctx.redis, ctx.settings.queue_name, ctx.settings.fold_shards)
        # redis-py types llen for its sync and async clients at once.
        parked = ctx.redis.llen(failed_batches_key(ctx.settings.queue_name))
        PARKED.set(await parked if not isinstance(parked, int) else parked)
    except Exception:
        QUEUE_DEPTH.set(float("nan"))
    try:
        async with ctx.sessions() as session:
            count = await session.execute(text("SELECT count(*) FROM dead_letters"))
            DEAD_LETTERS.set(count.scalar_one())
            await _job_gauges(session)
            await _chat_gauges(session)
            await _live_gauges(request, session)
    except Exception:
        DEAD_LETTERS.set(float("nan"))
    return True


class RequestMetrics:
    """Times every HTTP request by the route that matched (Starlette puts it in the
    scope while routing), so ``/api/channels/{broadcaster_id}/hourly`` is one series
    however many channels are read; unmatched paths share ``unmatched``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the error middleware outside answers for an exception

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            request_timer(route, status).observe(time.perf_counter() - started)
