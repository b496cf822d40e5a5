"""Durable hand-off of verified notifications to the arq queue.

A request is answered 2xx only after Redis acknowledged the job holding its delivery.
Requests arriving together share one job (``GroupWriter``): one arq enqueue per request
reaches about a fifth of the receiver's HTTP ceiling here (LIMITS.md), while a job per
batch keeps the receiver near it and hands the worker batches to fold.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from schema.batching import GroupWriter
from schema.errors import QueueUnavailable
from schema.events import Delivery
from schema.jobs import FOLD_JOB, encode_batch, fold_job_id
from schema.logs import get_logger

log = get_logger("receiver.queue")

# Deliveries per job: ~1 KiB each, so a job stays well under a megabyte.
MAX_DELIVERIES_PER_JOB = 500
# A write that starts from idle after a small one waits this long for company. A worker
# pays about 1 ms of arq bookkeeping per job (LIMITS.md), so 1,000 requests/s arriving
# one by one would be 1,000 jobs/s, at a worker's ceiling; 5 ms here makes them about
# 200 jobs of five. Under heavy load jobs are large anyway and nobody waits (a fixed
# 5 ms wait cost the receiver a third of its throughput at 64 concurrent requests).
# Twitch allows seconds for the answer.
LINGER_SECONDS = 0.005
LINGER_BELOW = 16


def connect_redis(redis_url: str) -> ArqRedis:
    """A pool that fails fast: a down or hung Redis must become a quick 503, well inside
    the few seconds Twitch waits, never a hang."""
    return ArqRedis.from_url(  # type: ignore[no-any-return]
        redis_url,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        health_check_interval=10,
        max_connections=64,
    )


class NotificationQueue:
    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._writer: GroupWriter[Delivery] = GroupWriter(
            self._enqueue,
            max_batch=MAX_DELIVERIES_PER_JOB,
            linger=LINGER_SECONDS,
            linger_below=LINGER_BELOW,
        )

    async def accept(self, delivery: Delivery) -> None:
        """Return once the delivery is durably queued; raise ``QueueUnavailable`` if not."""
        try:
            await self._writer.submit(delivery)
        except (RedisError, OSError, ConnectionAbortedError) as exc:
            log.warning("queue.unavailable", error=type(exc).__name__)
            raise QueueUnavailable("the queue cannot take notifications right now") from None

    async def _enqueue(self, deliveries: list[Delivery]) -> None:
        # None back means a job with this id is already queued or running: accepted.
        await self._redis.enqueue_job(
            FOLD_JOB,
            encode_batch(deliveries),
            _job_id=fold_job_id(deliveries),
            _queue_name=self._queue_name,
        )
