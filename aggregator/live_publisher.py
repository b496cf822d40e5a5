"""Publishes the live-status outbox on Redis: ``streams.online`` / ``streams.offline``.

Changes gather for ``LIVE_BATCH_SECONDS`` from the oldest unpublished one; then every
unpublished row goes out in at most two ``StreamStatusEvent`` messages (the tracker
format, PRODUCT.md "Live status and follows"), one per direction. Per channel only the
last change of the batch counts (a flap inside one batch is published once, in its final
state), and a final state equal to the one last announced is not sent again. Rows are
marked published only after PUBLISH succeeded, so a Redis outage delays and loses
nothing; a worker killed between PUBLISH and the mark may send a batch twice (at least
once, never lost). One publisher at a time across workers: a Redis lock with a TTL,
renewed every round, so a dead worker's lock lapses within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema import live
from schema.db import is_transient
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.errors import TwitchError

log = get_logger("aggregator.live_publisher")

# The lock is per deployment: one queue name, one publisher.
LOCK_SUFFIX = ":live-publisher"
LOCK_TTL_MS = 10_000
MAX_ROWS = 5000
# Published rows are kept this long for SSE clients resuming with Last-Event-ID.
KEEP_PUBLISHED_SECONDS = 24 * 3600

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_OLDEST = text("SELECT min(changed_at) FROM live_outbox WHERE published_at IS NULL")
_PENDING = text("""
    SELECT o.seq, o.broadcaster_id, o.online, o.stream_id, o.started_at, o.title,
           o.game_name, c.login, c.display_name
    FROM live_outbox o LEFT JOIN channels c USING (broadcaster_id)
    WHERE o.published_at IS NULL ORDER BY o.seq LIMIT :n
""")
_LAST_ANNOUNCED = text("""
    SELECT DISTINCT ON (broadcaster_id) broadcaster_id, online, stream_id FROM live_outbox
    WHERE announced AND broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY broadcaster_id, seq DESC
""")
_GUILDS = text("""
    SELECT broadcaster_id, follower_id FROM follows
    WHERE follower_kind = 'guild' AND broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY broadcaster_id, follower_id
""")
_MARK = text("""
    UPDATE live_outbox SET published_at = now(), announced = (seq = ANY(CAST(:sent AS bigint[])))
    WHERE seq = ANY(CAST(:all AS bigint[])) AND published_at IS NULL
""")
_TITLE = text("UPDATE live_outbox SET title = :title WHERE seq = :seq AND title IS NULL")
# The newest row always stays: it tells a resuming SSE client that its id is older than
# what is kept (answered with a snapshot) even after a quiet day.
_PRUNE = text("""
    DELETE FROM live_outbox WHERE seq IN (
        SELECT seq FROM live_outbox WHERE published_at < now() - make_interval(secs => :keep)
          AND seq < (SELECT max(seq) FROM live_outbox)
        ORDER BY seq LIMIT 10000)
""")


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    broadcaster_id: str
    online: bool
    stream_id: str
    started_at: datetime | None
    title: str | None
    game_name: str | None
    login: str | None
    display_name: str | None


def final_changes(rows: Sequence[Change], announced: dict[str, tuple[bool, str]]) -> list[Change]:
    """The last change per channel, unless it repeats what was last announced (pure)."""
    last: dict[str, Change] = {}
    for row in sorted(rows, key=lambda r: r.seq):
        last[row.broadcaster_id] = row
    return [
        c
        for c in sorted(last.values(), key=lambda c: c.seq)
        if announced.get(c.broadcaster_id) != (c.online, c.stream_id)
    ]


def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_event(
    changes: Sequence[Change], online: bool, guilds: dict[str, list[int]], now: datetime
) -> dict[str, Any]:
    """One ``StreamStatusEvent``: the tracker's C# property names, then our extras."""
    streams = [
        {
            "VideoId": c.stream_id,
            "ChannelId": c.broadcaster_id,
            "ChannelTitle": c.display_name or c.login or c.broadcaster_id,
            "VideoTitle": c.title or "",
            "ScheduledStartTime": _instant(c.started_at),
            "Platform": "twitch",
            "Login": c.login,
            "Category": c.game_name,
            "Sequence": c.seq,
            "Followers": guilds.get(c.broadcaster_id, []),
        }
        for c in changes
    ]
    followers = sorted({g for c in changes for g in guilds.get(c.broadcaster_id, [])})
    return {
        "Streams": streams,
        "IsOnline": online,
        "Platform": "twitch",
        "Timestamp": _instant(now),
        "Metadata": {"followers": followers},
    }


class LivePublisher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        twitch: TwitchClient | None,
        *,
        poll_seconds: float = 0.1,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.twitch = twitch
        self.poll_seconds = poll_seconds
        self.redis: Redis = Redis.from_url(settings.redis_url or "")
        self.token = secrets.token_hex(8)
        self.lock_key = settings.queue_name + LOCK_SUFFIX
        self.names = live.Names.of(settings)
        self._pruned_at = 0.0

    async def run(self) -> None:
        pause = 0.5
        try:
            while True:
                try:
                    if await self._hold_lock():
                        await self.publish_due()
                        await self._prune()
                    pause = 0.5
                    await asyncio.sleep(self.poll_seconds)
                except Exception as exc:
                    if not isinstance(exc, RedisError | OSError) and not is_transient(exc):
                        log.exception("live_publisher.failed")
                    else:
                        log.warning("live_publisher.waiting", error=type(exc).__name__)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)
        finally:
            with contextlib.suppress(Exception):
                # Hand over at once rather than after the TTL.
                await self.redis.eval(_RELEASE, 1, self.lock_key, self.token)  # type: ignore[misc]
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    async def _hold_lock(self) -> bool:
        held = await self.redis.eval(_RENEW, 1, self.lock_key, self.token, str(LOCK_TTL_MS))  # type: ignore[misc]
        return bool(held)

    async def publish_due(self) -> int:
        """Publish the pending batch if its window has passed; how many messages."""
        async with self.sessions() as session:
            oldest = await session.scalar(_OLDEST)
            if oldest is None:
                return 0
            waited = (datetime.now(UTC) - oldest).total_seconds()
            if waited < self.settings.live_batch_seconds:
                return 0
            rows = [Change(**r._asdict()) for r in await session.execute(_PENDING, {"n": MAX_ROWS})]
            channels = sorted({r.broadcaster_id for r in rows})
            announced = {
                r.broadcaster_id: (r.online, r.stream_id)
                for r in await session.execute(_LAST_ANNOUNCED, {"b": channels})
            }
            guilds: dict[str, list[int]] = {}
            for r in await session.execute(_GUILDS, {"b": channels}):
                guilds.setdefault(r.broadcaster_id, []).append(int(r.follower_id))
        finals = await self._with_titles(final_changes(rows, announced))
        now = datetime.now(UTC)
        sent = 0
        for online, name in ((True, self.names.online), (False, self.names.offline)):
            batch = [c for c in finals if c.online is online]
            if batch:
                body = msgspec.json.encode(status_event(batch, online, guilds, now))
                await self.redis.publish(name, body)
                sent += 1
        async with self.sessions.begin() as session:
            await session.execute(
                _MARK, {"sent": [c.seq for c in finals], "all": [r.seq for r in rows]}
            )
            for c in finals:  # what was sent is what a resuming SSE client gets
                if c.title:
                    await session.execute(_TITLE, {"seq": c.seq, "title": c.title})
        if sent:
            await live.count(self.redis, self.names, live.PUBLISHED, sent)
            log.info("live.published", messages=sent, channels=len(finals), rows=len(rows))
        return sent

    async def _with_titles(self, changes: list[Change]) -> list[Change]:
        """An online from a webhook carries no title: ask Twitch for the channels' current
        titles (one call per 100). Twitch being unreachable never holds publication."""
        missing = [c.broadcaster_id for c in changes if c.online and not c.title]
        if not missing or self.twitch is None:
            return changes
        try:
            infos = {i.broadcaster_id: i for i in await self.twitch.get_channels(missing)}
        except TwitchError as exc:
            log.warning("live_publisher.titles_unavailable", error=exc.code)
            return changes
        out = []
        for c in changes:
            info = infos.get(c.broadcaster_id)
            if c.online and not c.title and info is not None:
                c = Change(
                    c.seq, c.broadcaster_id, c.online, c.stream_id, c.started_at,
                    info.title or None, c.game_name or info.game_name or None,
                    c.login or info.broadcaster_login or None,
                    c.display_name or info.broadcaster_name or None,
                )  # fmt: skip
            out.append(c)
        return out

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned_at < 60:
            return
        self._pruned_at = time.monotonic()
        async with self.sessions.begin() as session:
            await prune(session)


async def prune(session: AsyncSession, keep_seconds: float = KEEP_PUBLISHED_SECONDS) -> int:
    """Remove published rows older than ``keep_seconds`` (up to 10,000); how many."""
    result = await session.execute(_PRUNE, {"keep": keep_seconds})
    return int(result.rowcount)  # type: ignore[attr-defined]
