"""GET /api/live/events: Server-Sent Events of the channels the caller follows or owns.

One Redis subscriber per web process (``LiveHub``) listens on streams.online/offline and
fans each message out in memory to the connections it concerns (one query per message
finds them), so an idle connection costs a small queue, never a thread or a Redis
connection. Queues are bounded: a client too slow to keep up is disconnected and resumes
with ``Last-Event-ID`` (the outbox sequence), replayed from the outbox; an id older than
the outbox keeps is answered with a ``snapshot`` event of the channels' current state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from receiver.context import Context
from receiver.identity import Identity
from schema import live
from schema.logs import get_logger

log = get_logger("receiver.live_events")

KEEPALIVE_SECONDS = 15.0
QUEUE_SIZE = 256
_encode = msgspec.json.Encoder().encode

_CHANNELS_OF = text("""
    SELECT broadcaster_id FROM follows WHERE follower_kind = 'user' AND follower_id = :u
    UNION SELECT broadcaster_id FROM channels WHERE broadcaster_id = :u AND connected
""")
_AUDIENCE = text("""
    SELECT broadcaster_id, follower_id AS user_id FROM follows
    WHERE follower_kind = 'user' AND broadcaster_id = ANY(CAST(:b AS text[]))
    UNION SELECT broadcaster_id, broadcaster_id FROM channels
    WHERE connected AND broadcaster_id = ANY(CAST(:b AS text[]))
""")
_MISSED = text("""
    SELECT o.seq, o.broadcaster_id, o.online, o.stream_id, o.started_at, o.title, o.game_name,
           c.login, c.display_name
    FROM live_outbox o LEFT JOIN channels c USING (broadcaster_id)
    WHERE o.announced AND o.seq > :after AND o.broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY o.seq
""")
_OLDEST_KEPT = text("SELECT min(seq) FROM live_outbox")
_LAST_SEQ = text("SELECT coalesce(max(seq), 0) FROM live_outbox WHERE announced")
_CURRENT = text("""
    SELECT DISTINCT ON (s.broadcaster_id) s.broadcaster_id, s.id AS stream_id,
           s.ended_at IS NULL AS online, s.started_at, s.title, s.game_name, c.login,
           c.display_name
    FROM stream_sessions s LEFT JOIN channels c USING (broadcaster_id)
    WHERE s.broadcaster_id = ANY(CAST(:b AS text[]))
    ORDER BY s.broadcaster_id, s.started_at DESC, s.id DESC
""")


def _instant(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _row_event(r: Any) -> dict[str, Any]:
    return {
        "broadcaster_id": r.broadcaster_id,
        "login": r.login,
        "display_name": r.display_name,
        "online": r.online,
        "stream_id": r.stream_id,
        "title": r.title,
        "game_name": r.game_name,
        "started_at": _instant(r.started_at),
    }


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + _encode(data) + b"\n\n"


@dataclass(eq=False)
class Connection:
    user_id: str
    queue: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )

    def offer(self, chunk: bytes) -> None:
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            # Too slow: end the stream (the client resumes with Last-Event-ID).
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class LiveHub:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def join(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def leave(self, connection: Connection) -> None:
        self.connections.discard(connection)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _run(self) -> None:
        redis = Redis.from_url(self.ctx.settings.redis_url or "")
        try:
            while True:
                try:
                    async with redis.pubsub() as pubsub:
                        names = live.Names.of(self.ctx.settings)
                        await pubsub.subscribe(names.online, names.offline)
                        self.subscribed.set()
                        async for message in pubsub.listen():
                            if message.get("type") == "message":
                                await self._fan_out(message["data"])
                except (RedisError, OSError) as exc:
                    self.subscribed.clear()
                    log.warning("live_events.redis_lost", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
        finally:
            await redis.aclose()

    async def _fan_out(self, data: bytes) -> None:
        try:
            message = msgspec.json.decode(data)
            streams = message["Streams"]
            online = bool(message["IsOnline"])
        except (msgspec.DecodeError, KeyError, TypeError):
            return
        if not self.connections:
            return
        ids = [str(s["ChannelId"]) for s in streams]
        async with self.ctx.sessions() as session:
            audience: dict[str, set[str]] = {}
            for r in await session.execute(_AUDIENCE, {"b": ids}):
                audience.setdefault(r.broadcaster_id, set()).add(r.user_id)
        for s in streams:
            users = audience.get(str(s["ChannelId"]), set())
            event = {
                "broadcaster_id": s["ChannelId"],
                "login": s.get("Login"),
                "display_name": s.get("ChannelTitle"),
                "online": online,
                "stream_id": s.get("VideoId"),
                "title": s.get("VideoTitle"),
                "game_name": s.get("Category"),
                "started_at": s.get("ScheduledStartTime"),
            }
            chunk = sse("online" if online else "offline", event, s.get("Sequence"))
            for connection in list(self.connections):
                if connection.user_id in users:
                    connection.offer(chunk)


def hub_of(request: Request) -> LiveHub:
    """The process's one hub, made by the first SSE connection."""
    state = request.app.state
    hub: LiveHub | None = getattr(state, "live_hub", None)
    if hub is None:
        hub = state.live_hub = LiveHub(state.ctx)
    return hub


async def live_events(request: Request, who: Identity) -> Response:
    """The stream for ``who`` (already signed in: the API's endpoint wrapper checked)."""
    ctx: Context = request.app.state.ctx
    last_id = request.headers.get("last-event-id", "").strip()
    after = int(last_id) if last_id.isdigit() else None
    hub = hub_of(request)
    connection = Connection(who.user_id)
    hub.join(connection)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            for missed in await _resume(ctx, who.user_id, after):
                yield missed
            while True:
                try:
                    chunk: bytes | None = await asyncio.wait_for(
                        connection.queue.get(), KEEPALIVE_SECONDS
                    )
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if chunk is None:
                    return
                yield chunk
        finally:
            hub.leave(connection)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _resume(ctx: Context, user_id: str, after: int | None) -> list[bytes]:
    """What a reconnecting client missed, from the outbox; a snapshot if that is gone."""
    if after is None:
        return []
    async with ctx.sessions() as session:
        channels = list((await session.execute(_CHANNELS_OF, {"u": user_id})).scalars())
        oldest = await session.scalar(_OLDEST_KEPT)
        if oldest is not None and after < oldest - 1:
            rows = await session.execute(_CURRENT, {"b": channels})
            last = int(await session.scalar(_LAST_SEQ) or 0)
            return [sse("snapshot", {"channels": [_row_event(r) for r in rows]}, last)]
        rows = await session.execute(_MISSED, {"after": after, "b": channels})
        return [sse("online" if r.online else "offline", _row_event(r), r.seq) for r in rows]
