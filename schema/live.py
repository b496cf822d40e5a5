"""Live status on Redis: the channel names and the counters every process shares.

Pub/sub in (the tracker format's follow events): ``stream.follow`` / ``stream.unfollow``.
Pub/sub out: ``streams.online`` / ``streams.offline``, one ``StreamStatusEvent`` per batch
(``aggregator/live_publisher.py``). Counters live in one Redis hash so that ``/metrics`` of
any web process reports what the workers did.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.exceptions import RedisError

FOLLOW_CHANNEL = "stream.follow"
UNFOLLOW_CHANNEL = "stream.unfollow"
ONLINE_CHANNEL = "streams.online"
OFFLINE_CHANNEL = "streams.offline"
COUNTERS_KEY = "streamfold:live:counters"
# Counter names in COUNTERS_KEY.
PUBLISHED = "published_messages"
FOLLOW_EVENTS = "follow_events"
FOLLOW_IGNORED = "follow_events_other_platform"
FOLLOW_MALFORMED = "follow_events_malformed"
FOLLOW_FAILED = "follow_events_failed"


async def count(redis: Any, name: str, by: int = 1) -> None:
    """Best effort: a counter lost to a Redis blip is not worth failing the work for."""
    with contextlib.suppress(RedisError, OSError):
        await redis.hincrby(COUNTERS_KEY, name, by)
