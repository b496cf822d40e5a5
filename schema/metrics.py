"""Prometheus metrics both process types share, in the one registry each process serves.

The web process serves the registry on ``/metrics``, the worker on its own port
(``WORKER_METRICS_PORT``). Each process counts what it did; a family it never touches is
still listed (at zero or without samples), so dashboards and alerts see every name.
Labels take bounded values only: route templates, known subscription types, error codes.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from schema.events import FOLDED_TYPES
from schema.shards import queue_totals

REGISTRY = CollectorRegistry()

NOTIFICATIONS = Counter(
    "streamfold_eventsub_messages",
    "EventSub messages by subscription type and outcome: the web counts accepted, refused"
    " (reason = error code), unavailable, ignored, duplicate and revocation; the worker"
    " counts folded, duplicate (already in the ledger) and dead_lettered",
    ["type", "outcome", "reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "streamfold_queue_jobs", "Jobs waiting in the fold queue (read at scrape)", registry=REGISTRY
)
QUEUE_OLDEST_AGE = Gauge(
    "streamfold_queue_oldest_job_age_seconds",
    "How long the oldest job in the fold queue has been due (0 when empty; read at scrape)",
    registry=REGISTRY,
)
TWITCH_REQUESTS = Counter(
    "streamfold_twitch_requests",
    "HTTP exchanges with Twitch (Helix, OAuth) by endpoint and status (network_error when"
    " no answer came); retries count once each",
    ["endpoint", "status"],
    registry=REGISTRY,
)
TWITCH_RATELIMIT_REMAINING = Gauge(
    "streamfold_twitch_ratelimit_remaining",
    "Ratelimit-Remaining of the app token's Helix bucket, as Twitch last reported it",
    registry=REGISTRY,
)
RETENTION_REMOVED = Counter(
    "streamfold_retention_removed_rows",
    "Rows the retention job removed, by table",
    ["table"],
    registry=REGISTRY,
)

# Subscription types arrive as headers before anything is verified: only the folded
# ones become label values.
_KNOWN_TYPES = FOLDED_TYPES


def type_label(subscription_type: str | None) -> str:
    if subscription_type is None:
        return "none"
    return subscription_type if subscription_type in _KNOWN_TYPES else "other"


_NOTIFICATION_COUNTERS: dict[tuple[str, str, str], Counter] = {}


def count_notification(
    subscription_type: str | None, outcome: str, reason: str = "", n: int = 1
) -> None:
    # Each label set is looked up once: ``labels`` locks and builds its key per call,
    # and the receiver counts every request. The key takes the label, not the raw type,
    # so a flood of invented types cannot grow the cache.
    label = type_label(subscription_type)
    try:
        counter = _NOTIFICATION_COUNTERS[label, outcome, reason]
    except KeyError:
        counter = _NOTIFICATION_COUNTERS[label, outcome, reason] = NOTIFICATIONS.labels(
            type=label, outcome=outcome, reason=reason
        )
    counter.inc(n)


async def refresh_queue_gauges(redis: Redis, queue_name: str, shards: int = 1) -> None:
    """Queue depth over all fold shards and the age of the oldest job, read now. A job's
    score is when it is due (its enqueue time, or a retry's deferred time), so a retry
    waiting out its back-off does not look old."""
    depth, due = await queue_totals(redis, queue_name, shards)
    QUEUE_DEPTH.set(depth)
    QUEUE_OLDEST_AGE.set(0.0 if due is None else max(0.0, time.time() - due / 1000))
