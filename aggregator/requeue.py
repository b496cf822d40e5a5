"""Fold batches that ran out of retries are parked in Redis, never dropped; an operator
puts them back once the cause (usually a long database outage) is fixed."""

from __future__ import annotations

from arq.connections import ArqRedis

from schema.jobs import FOLD_JOB, decode_batch, failed_batches_key, fold_job_id
from schema.settings import Settings
from schema.shards import channel_of, shard_of, shard_queue


async def requeue_failed(settings: Settings) -> int:
    redis = ArqRedis.from_url(settings.redis_url or "")
    key = failed_batches_key(settings.queue_name)
    moved = 0
    try:
        while (payload := await redis.lindex(key, 0)) is not None:
            deliveries = decode_batch(payload)
            await redis.enqueue_job(
                FOLD_JOB,
                payload,
                _job_id=fold_job_id(deliveries) + ":requeued",
                # A batch holds one shard's channels (the receiver batches per shard).
                _queue_name=shard_queue(
                    settings.queue_name,
                    shard_of(channel_of(deliveries[0].body), settings.fold_shards),
                ),
            )
            await redis.lpop(key)  # only after the job is safely queued
            moved += 1
    finally:
        await redis.aclose()
    return moved
