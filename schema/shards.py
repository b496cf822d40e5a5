"""Fold queue shards: which queue a delivery goes to, and the Redis keys of shard leases.

Every delivery about a channel goes to one of ``fold_shards`` queues, picked by a
stable hash of the channel's id (CRC-32: the same in every process and release, unlike
Python's salted ``hash``), and each shard is folded by the one worker holding its lease
(``aggregator/shards.py``), so each channel-hour row has a single writer. Shard 0's
queue is the queue name itself: with one shard nothing changes, and jobs queued by an
unsharded receiver are still folded.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec


class _Event(msgspec.Struct):
    broadcaster_user_id: str | None = None
    user_id: str | None = None  # user.authorization.revoke: the channel is the user's


class _Body(msgspec.Struct):
    event: _Event | None = None


_body = msgspec.json.Decoder(_Body)


def channel_of(body: bytes) -> str | None:
    """The channel a notification is about; None for a body that does not say (the
    worker dead-letters what it cannot decode, in whichever shard it lands)."""
    try:
        event = _body.decode(body).event
    except (msgspec.DecodeError, RecursionError):
        return None
    if event is None:
        return None
    return event.broadcaster_user_id or event.user_id


def shard_of(channel: str | None, shards: int) -> int:
    if shards <= 1 or not channel:
        return 0
    return zlib.crc32(channel.encode()) % shards


def shard_queue(queue_name: str, shard: int) -> str:
    return queue_name if shard == 0 else f"{queue_name}:shard:{shard}"


def lease_key(queue_name: str, shard: int) -> str:
    """Holds the id of the worker folding ``shard``, with an expiry it renews."""
    return f"{queue_name}:shard-lease:{shard}"


def workers_key(queue_name: str) -> str:
    """Sorted set of fold workers by the time (ms) they last said they are alive."""
    return f"{queue_name}:shard-workers"


async def queue_totals(redis: Any, queue_name: str, shards: int) -> tuple[int, float | None]:
    """Jobs queued over all shards, and the earliest due time (ms) among them."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(shards):
            pipe.zcard(shard_queue(queue_name, shard))
            pipe.zrange(shard_queue(queue_name, shard), 0, 0, withscores=True)
        replies = await pipe.execute()
    depth = sum(int(n) for n in replies[0::2])
    due = [float(oldest[0][1]) for oldest in replies[1::2] if oldest]
    return depth, min(due) if due else None
