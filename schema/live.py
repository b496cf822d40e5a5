"""Live status on Redis: the channel names and the counters every process shares.

Pub/sub in (the tracker format's follow events): ``stream.follow`` / ``stream.unfollow``.
Pub/sub out: ``streams.online`` / ``streams.offline``, one ``StreamStatusEvent`` per batch
(``aggregator/live_publisher.py``). Those names are the contract and are used exactly by
default; ``LIVE_CHANNEL_PREFIX`` puts them under a prefix for deployments (or tests) that
share one Redis, since pub/sub channels ignore the database number. Counters live in one
Redis hash per deployment (under ``QUEUE_NAME``) so that ``/metrics`` of any web process
reports what the workers did.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from schema.settings import Settings

FOLLOW_CHANNEL = "stream.follow"
UNFOLLOW_CHANNEL = "stream.unfollow"
ONLINE_CHANNEL = "streams.online"
OFFLINE_CHANNEL = "streams.offline"
# Counter names in the counters hash.
PUBLISHED = "published_messages"
FOLLOW_EVENTS = "follow_events"
FOLLOW_IGNORED = "follow_events_other_platform"
FOLLOW_MALFORMED = "follow_events_malformed"
FOLLOW_FAILED = "follow_events_failed"


@dataclass(frozen=True, slots=True)
class Names:
    """The Redis names of one deployment's live status."""

    follow: str
    unfollow: str
    online: str
    offline: str
    counters: str

    @classmethod
    def of(cls, settings: Settings) -> Names:
        prefix = settings.live_channel_prefix
        return cls(
            follow=prefix + FOLLOW_CHANNEL,
            unfollow=prefix + UNFOLLOW_CHANNEL,
            online=prefix + ONLINE_CHANNEL,
            offline=prefix + OFFLINE_CHANNEL,
            counters=f"{settings.queue_name}:live:counters",
        )


async def count(redis: Any, names: Names, name: str, by: int = 1) -> None:
    """Best effort: a counter lost to a Redis blip is not worth failing the work for."""
    with contextlib.suppress(RedisError, OSError):
        await redis.hincrby(names.counters, name, by)
