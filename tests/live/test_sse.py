"""GET /api/live/events: a follower receives the online, another user does not, a
reconnect with Last-Event-ID receives the offline it missed (or a snapshot when its id is
older than the outbox keeps), and a client too slow for a burst is cut off, not buffered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.live_publisher import KEEP_PUBLISHED_SECONDS, Change, prune, status_event
from receiver.live_events import QUEUE_SIZE
from schema import live
from schema.settings import Settings
from streamfold.eventsub_sender import stream_offline_body, stream_online_body
from tests.conftest import eventually
from tests.connected import Connected, connected
from tests.live.rig import follower, running_worker
from tests.live.test_fanout import post

pytestmark = pytest.mark.usefixtures("redis")


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str | None, str, dict[str, object]]] = []
        self.ended = False  # the server closed the stream


@contextlib.asynccontextmanager
async def listening(
    env: Connected, headers: dict[str, str], last_id: str | None = None
) -> AsyncIterator[Events]:
    events = Events()
    extra = {"Last-Event-ID": last_id} if last_id else {}
    opened = asyncio.Event()

    async def read() -> None:
        async with env.browser.stream("GET", "/api/live/events", headers=headers | extra) as r:
            assert r.status_code == 200
            opened.set()
            fields: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line == "":
                    if "event" in fields:
                        data = msgspec.json.decode(fields["data"])
                        events.items.append((fields.get("id"), fields["event"], data))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        events.ended = True

    task = asyncio.create_task(read())
    await asyncio.wait_for(opened.wait(), 10)
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def test_followers_get_their_channels_and_resume_what_they_missed(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env, running_worker(env.settings):
        env.standin.add_user("4242", "farstreamer")
        fan = await follower(env, "77", "fan")
        stranger = await follower(env, "78", "stranger")
        assert (await env.browser.get("/api/live/events")).status_code == 401
        made = await env.browser.post("/api/follows", json={"login": "farstreamer"}, headers=fan)
        assert made.status_code == 201
        async with listening(env, fan) as mine, listening(env, stranger) as theirs:
            body = stream_online_body("4242", "s-1", datetime.now(UTC), login="farstreamer")
            await post(env, body, "stream.online")
            await eventually(lambda: mine.items, within=env.settings.live_batch_seconds + 3)
            [(event_id, kind, data)] = mine.items
            assert kind == "online"
            assert data["broadcaster_id"] == "4242"
            assert data["stream_id"] == "s-1"
            assert event_id is not None
        assert theirs.items == []
        await post(env, stream_offline_body("4242"), "stream.offline")

        async def published() -> bool:
            return bool(await env.scalar(
                "SELECT count(*) FROM live_outbox WHERE announced AND NOT online"))  # fmt: skip

        await eventually(published, within=10)
        async with listening(env, fan, last_id=event_id) as resumed:
            await eventually(lambda: resumed.items, within=5)
            [(_, kind, data)] = resumed.items
            assert kind == "offline"
            assert data["broadcaster_id"] == "4242"


async def announced(env: Connected) -> int:
    return int(await env.scalar("SELECT count(*) FROM live_outbox WHERE announced"))


async def test_an_id_older_than_the_outbox_keeps_is_answered_with_a_snapshot(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env, running_worker(env.settings):
        env.standin.add_user("4242", "farstreamer")
        fan = await follower(env, "77", "fan")
        await env.browser.post("/api/follows", json={"login": "farstreamer"}, headers=fan)
        changes = [
            lambda: stream_online_body("4242", "s-1", datetime.now(UTC), login="farstreamer"),
            lambda: stream_offline_body("4242"),
            lambda: stream_online_body("4242", "s-2", datetime.now(UTC), login="farstreamer"),
        ]
        for done, body in enumerate(changes, start=1):
            kind = "stream.offline" if done == 2 else "stream.online"
            await post(env, body(), kind)  # one batch each: a flap would be published once

            async def published(done: int = done) -> bool:
                return await announced(env) == done

            await eventually(published, within=10)
        first, newest = await env.scalar("SELECT ARRAY[min(seq), max(seq)] FROM live_outbox")
        # A day later: pruning keeps only the newest row.
        async with env.sessions.begin() as session:
            await session.execute(
                text("UPDATE live_outbox SET published_at = now() - interval '2 days'")
            )
            assert await prune(session, KEEP_PUBLISHED_SECONDS) == 2
        async with listening(env, fan, last_id=str(first)) as stale:
            await eventually(lambda: stale.items, within=5)
            [(event_id, kind, data)] = stale.items
            assert (event_id, kind) == (str(newest), "snapshot")
            [channel] = data["channels"]  # type: ignore[misc]
            assert (channel["broadcaster_id"], channel["online"]) == ("4242", True)
            assert channel["stream_id"] == "s-2"
        # One step behind what is kept: the kept change itself, not a snapshot.
        async with listening(env, fan, last_id=str(newest - 1)) as behind:
            await eventually(lambda: behind.items, within=5)
            [(event_id, kind, data)] = behind.items
            assert (event_id, kind, data["stream_id"]) == (str(newest), "online", "s-2")


async def test_a_client_too_slow_for_a_burst_is_cut_off_and_can_come_back(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A connection holds at most QUEUE_SIZE events: one batch naming more of the user's
    channels than that overflows it, and the stream ends (the client resumes with
    Last-Event-ID) instead of buffering without bound."""
    burst = QUEUE_SIZE + 44
    async with connected(settings, sessions) as env:
        fan = await follower(env, "77", "fan")
        other = await follower(env, "78", "other")
        async with env.sessions.begin() as session:
            await session.execute(text("""
                INSERT INTO channels (broadcaster_id, login)
                SELECT (5000 + n)::text, 'chan' || n FROM generate_series(1, :n) AS n
            """), {"n": burst})  # fmt: skip
            await session.execute(text("""
                INSERT INTO follows (broadcaster_id, follower_kind, follower_id)
                SELECT (5000 + n)::text, 'user', '77' FROM generate_series(1, :n) AS n
                UNION ALL SELECT '5001', 'user', '78'
            """), {"n": burst})  # fmt: skip
        changes = [
            Change(i, str(5000 + i), True, f"s-{i}", datetime.now(UTC), "t", None, None, None)
            for i in range(1, burst + 1)
        ]
        redis = Redis.from_url(env.settings.redis_url or "")
        try:
            async with listening(env, fan) as slow, listening(env, other) as calm:
                await eventually(lambda: hub_listening(env), within=10)
                message = status_event(changes, True, {}, datetime.now(UTC))
                await redis.publish(
                    live.Names.of(env.settings).online, msgspec.json.encode(message)
                )
                await eventually(lambda: slow.ended, within=10)
                assert len(slow.items) < burst  # the rest was dropped, not buffered
                await eventually(lambda: calm.items, within=10)
                assert [data["broadcaster_id"] for _, _, data in calm.items] == ["5001"]
                assert not calm.ended

                async def one_open() -> bool:
                    page = (await env.browser.get("/metrics")).text
                    return "streamfold_sse_connections 1.0" in page

                await eventually(one_open, within=10)
            async with listening(env, fan) as back:
                await redis.publish(
                    live.Names.of(env.settings).online,
                    msgspec.json.encode(status_event(changes[:1], True, {}, datetime.now(UTC))),
                )
                await eventually(lambda: back.items, within=10)
                assert back.items[0][2]["broadcaster_id"] == "5001"
        finally:
            await redis.aclose()


async def hub_listening(env: Connected) -> bool:
    """The web process's hub (made by its first client) listens on streams.online."""
    probe = Redis.from_url(env.settings.redis_url or "")
    try:
        counts = await probe.pubsub_numsub(live.Names.of(env.settings).online)
        return bool(counts and counts[0][1] >= 1)
    finally:
        await probe.aclose()


async def test_metrics_show_tracked_channels_outbox_and_budget(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        env.standin.add_user("4242", "farstreamer")
        fan = await follower(env, "77", "fan")
        await env.browser.post("/api/follows", json={"login": "farstreamer"}, headers=fan)
        text = (await env.browser.get("/metrics")).text
        assert "streamfold_tracked_channels 1.0" in text
        assert "streamfold_live_outbox_unpublished 0.0" in text
        assert 'streamfold_eventsub_cost{figure="max_total_cost"}' in text
        assert "streamfold_sse_connections 0.0" in text
