"""GET /api/live/events: a follower receives the online, another user does not, and a
reconnect with Last-Event-ID receives the offline it missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
