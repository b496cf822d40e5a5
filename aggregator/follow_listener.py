"""Outside groups follow over Redis pub/sub: ``stream.follow`` / ``stream.unfollow``.

The tracker format: ``{"platform": "twitch", "stream_key": "<login or id>", "guild_id":
<int>, "channel_id": <int>, "user_id": <int>, "timestamp": "...", "metadata": {...}}``;
``guild_id`` is the follower. One listener task per fold worker. Other platforms are
ignored (a log line, a counter); a malformed message is logged and dropped; nothing a
publisher sends can stop the listener, and a lost Redis connection is re-made. Pub/sub
delivers only to listeners connected at that moment: ``POST /api/follows`` is the way
that answers.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema import live
from schema.errors import StreamfoldError
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.follows import Follower, follow, resolve_channel, unfollow

log = get_logger("aggregator.follow_listener")


class FollowEvent(msgspec.Struct, frozen=True):
    platform: str
    stream_key: str | int
    guild_id: int
    channel_id: int | None = None
    user_id: int | None = None
    timestamp: str | None = None
    metadata: dict[str, object] | None = None


_decode = msgspec.json.Decoder(FollowEvent)


class FollowListener:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        twitch: TwitchClient,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.twitch = twitch
        self.redis: Redis = Redis.from_url(settings.redis_url or "")
        self.names = live.Names.of(settings)
        self.subscribed = asyncio.Event()  # for tests: the listener is connected

    async def run(self) -> None:
        pause = 0.5
        try:
            while True:
                try:
                    await self._listen()
                except (RedisError, OSError) as exc:
                    self.subscribed.clear()
                    log.warning("follow_listener.redis_lost", error=type(exc).__name__)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)
        finally:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    async def _listen(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.names.follow, self.names.unfollow)
            self.subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                channel = message["channel"].decode()
                await self.handle(channel, message["data"])

    async def handle(self, channel: str, data: bytes) -> None:
        """One message; never raises (a bad message must not end the listener)."""
        try:
            event = _decode.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("follow_listener.malformed", channel=channel, error=str(exc)[:200])
            await live.count(self.redis, self.names, live.FOLLOW_MALFORMED)
            return
        if event.platform.lower() != "twitch":
            log.info("follow_listener.other_platform", channel=channel, platform=event.platform)
            await live.count(self.redis, self.names, live.FOLLOW_IGNORED)
            return
        key = str(event.stream_key).strip()
        follower = Follower("guild", str(event.guild_id))
        try:
            await self._apply(channel == self.names.follow, key, follower)
        except Exception as exc:
            detail = exc.detail if isinstance(exc, StreamfoldError) else type(exc).__name__
            log.warning(
                "follow_listener.failed",
                channel=channel,
                stream_key=key[:64],
                guild_id=event.guild_id,
                error=detail,
            )
            await live.count(self.redis, self.names, live.FOLLOW_FAILED)
            return
        await live.count(self.redis, self.names, live.FOLLOW_EVENTS)

    async def _apply(self, following: bool, key: str, follower: Follower) -> None:
        by_id = key.isdigit()
        if following:
            channel = await resolve_channel(
                self.twitch, broadcaster_id=key if by_id else None, login=None if by_id else key
            )
            async with self.sessions.begin() as session:
                await follow(session, self.twitch, self.settings, channel, follower)
            return
        if not by_id:
            channel = await resolve_channel(self.twitch, login=key)
            key = channel.broadcaster_id
        async with self.sessions.begin() as session:
            await unfollow(session, self.twitch, self.settings, key, follower)
