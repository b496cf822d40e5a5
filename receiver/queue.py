"""Durable hand-off of verified notifications to the arq queue.

A request is answered 2xx only after Redis acknowledged the job holding its delivery.
Requests arriving together share one job (``GroupWriter``): one arq enqueue per request
reaches about a fifth of the receiver's HTTP ceiling here (LIMITS.md), while a job per
batch keeps the receiver near it and hands the worker batches to fold.
"""

from __future__ import annotations

import functools
import time

from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from receiver.metrics import JOB_DELIVERIES
from schema.batching import GroupWriter
from schema.errors import QueueUnavailable
from schema.events import Delivery
from schema.jobs import FOLD_JOB, encode_batch, fold_job_id
from schema.logs import get_logger
from schema.shards import channel_of, shard_of, shard_queue

log = get_logger("receiver.queue")

# Deliveries per job: ~1 KiB each, so a job stays well under a megabyte.
MAX_DELIVERIES_PER_JOB = 500
# A queued job that no worker starts within this time expires (arq then fails it as
# "job expired"): a week covers any worker outage worth surviving.
JOB_EXPIRES_MS = 7 * 24 * 3600 * 1000
# A write that starts from idle after a small one waits this long for company. A worker
# pays about 1 ms of arq bookkeeping per job (LIMITS.md), so 1,000 requests/s arriving
# one by one would be 1,000 jobs/s, at a worker's ceiling; 5 ms here makes them about
# 200 jobs of five. Under heavy load jobs are large anyway and nobody waits (a fixed
# 5 ms wait cost the receiver a third of its throughput at 64 concurrent requests).
# Twitch allows seconds for the answer.
LINGER_SECONDS = 0.005
LINGER_BELOW = 16


def connect_redis(redis_url: str, max_connections: int = 64) -> ArqRedis:
    """A pool that fails fast: a down or hung Redis must become a quick 503, well inside
    the few seconds Twitch waits, never a hang."""
    return ArqRedis.from_url(  # type: ignore[no-any-return]
        redis_url,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        health_check_interval=10,
        max_connections=max_connections,
        # After a Redis restart every pooled connection is dead; one immediate retry on a
        # fresh connection spares a 503 per stale connection. A timeout is not retried:
        # a hung Redis must still give a quick 503.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )


class NotificationQueue:
    """With ``shards`` > 1, each delivery goes to its channel's fold shard queue
    (``schema/shards.py``), batched with that shard's other deliveries."""

    def __init__(self, redis: ArqRedis, queue_name: str, shards: int = 1) -> None:
        self._redis = redis
        self._writers: list[GroupWriter[Delivery]] = [
            GroupWriter(
                functools.partial(self._enqueue, shard_queue(queue_name, shard)),
                max_batch=MAX_DELIVERIES_PER_JOB,
                linger=LINGER_SECONDS,
                linger_below=LINGER_BELOW,
            )
            for shard in range(shards)
        ]

    async def accept(self, delivery: Delivery) -> None:
        """Return once the delivery is durably queued; raise ``QueueUnavailable`` if not."""
        writers = self._writers
        writer = (
            writers[shard_of(channel_of(delivery.body), len(writers))]
            if len(writers) > 1
            else writers[0]
        )
        try:
            await writer.submit(delivery)
        except (RedisError, OSError, ConnectionAbortedError) as exc:
            log.warning("queue.unavailable", error=type(exc).__name__)
            raise QueueUnavailable("the queue cannot take notifications right now") from None

    async def _enqueue(self, queue_name: str, deliveries: list[Delivery]) -> None:
        """One round trip: the arq job and its queue entry in one MULTI/EXEC.

        arq's ``enqueue_job`` first WATCHes the job key and checks it is new (three round
        trips). Both writes here are "only if absent" instead: a job id is derived from
        the message ids it carries, so a redelivery arriving while the first copy is
        still queued finds its job and leaves it as it is. Overwriting would replace the
        first delivery's timestamp, the notification's event time, with the retry's.
        Once the job has run its key is gone and a redelivery is queued anew; PostgreSQL's
        ledger, not the job id, then drops it.
        """
        job_id = fold_job_id(deliveries)
        now_ms = int(time.time() * 1000)
        job = serialize_job(
            FOLD_JOB,
            (encode_batch(deliveries),),
            {},
            None,
            now_ms,
            serializer=self._redis.job_serializer,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(job_key_prefix + job_id, job, px=JOB_EXPIRES_MS, nx=True)
            # NX keeps a queued or retrying job's run-at time as arq set it.
            pipe.zadd(queue_name, {job_id: now_ms}, nx=True)
            await pipe.execute()
        JOB_DELIVERIES.observe(len(deliveries))
