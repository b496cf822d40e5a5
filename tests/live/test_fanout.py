"""Fan-out: folded online/offline changes reach streams.online / streams.offline once,
batched, after commit; redeliveries publish nothing; a Redis outage only delays."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.live_publisher import Change, LivePublisher, final_changes
from aggregator.reconcile import reconcile_once
from aggregator.sessions import fold_stream_events
from schema import live
from schema.events import BroadcasterId, MessageId, StreamId, StreamOnline
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.client import budget_key
from schema.twitch.follows import ChannelName, Follower, follow
from streamfold.eventsub_sender import signed, stream_offline_body, stream_online_body
from tests.conftest import SECRET, eventually
from tests.connected import Connected, connected
from tests.live.rig import Subscriber, running_worker, worker_process

pytestmark = pytest.mark.usefixtures("redis")
KEY = SECRET.encode()


async def guild_follows(env: Connected, broadcaster_id: str, login: str, guild: str) -> None:
    async with TwitchClient(env.settings, None) as twitch, env.sessions.begin() as session:
        channel = ChannelName(broadcaster_id, login, login.title())
        await follow(session, twitch, env.settings, channel, Follower("guild", guild))


async def unpublished(env: Connected) -> int:
    return int(await env.scalar("SELECT count(*) FROM live_outbox WHERE published_at IS NULL"))


async def post(env: Connected, body: bytes, kind: str, message_id: str | None = None) -> float:
    message = signed(KEY, body, kind, sent_at=datetime.now(UTC), message_id=message_id)
    response = await env.browser.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204, response.text
    return asyncio.get_running_loop().time()


async def test_an_online_reaches_streams_online_batched_with_title_and_followers(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with (
        connected(settings, sessions) as env,
        Subscriber(settings) as subscriber,
        running_worker(env.settings),
    ):
        env.standin.add_user("4242", "farstreamer", "FarStreamer")
        env.standin.titles["4242"] = "speedrun any%"
        await guild_follows(env, "4242", "farstreamer", "111")
        await guild_follows(env, "4242", "farstreamer", "222")
        body = stream_online_body("4242", "s-1", datetime.now(UTC), login="farstreamer")
        accepted = await post(env, body, "stream.online", message_id="m-online")
        # How fast is the benchmarks' business; here: it arrives, once, in one message.
        await eventually(lambda: subscriber.about("4242"), within=15)
        [(channel, message, at)] = subscriber.about("4242")
        assert at >= accepted
        assert channel == subscriber.names.online
        assert message["IsOnline"] is True
        assert message["Platform"] == "twitch"
        [stream] = message["Streams"]
        assert stream["ChannelId"] == "4242"
        assert stream["VideoId"] == "s-1"
        assert stream["VideoTitle"] == "speedrun any%"
        assert stream["ChannelTitle"] == "Farstreamer"  # the webhook's broadcaster_user_name
        assert message["Metadata"]["followers"] == [111, 222]

        # The same message again (a redelivery) and a new id for the same online: nothing.
        await post(env, body, "stream.online", message_id="m-online")
        await post(env, body, "stream.online")
        await post(env, stream_offline_body("4242"), "stream.offline")
        await eventually(lambda: len(subscriber.about("4242")) == 2, within=5)
        names = subscriber.names
        assert [m[0] for m in subscriber.about("4242")] == [names.online, names.offline]
        # Rows are marked published just after the PUBLISH.
        await eventually(lambda: all_published(env), within=5)


async def all_published(env: Connected) -> bool:
    return await unpublished(env) == 0


async def test_a_worker_killed_between_commit_and_publish_publishes_once_after_restart(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env, Subscriber(settings) as sub:
        env.standin.add_user("4242", "farstreamer")
        env.standin.titles["4242"] = "after the crash"
        await guild_follows(env, "4242", "farstreamer", "111")
        # The first worker folds at once but holds publication for its 60 s batch window:
        # the change is committed and not yet published when it is killed.
        first = await worker_process(env.settings, LIVE_BATCH_SECONDS="60")
        try:
            body = stream_online_body("4242", "s-k", datetime.now(UTC), login="farstreamer")
            await post(env, body, "stream.online")

            async def committed() -> bool:
                return await unpublished(env) == 1

            await eventually(committed, within=15)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert sub.about("4242") == []
        assert await unpublished(env) == 1

        second = await worker_process(env.settings, LIVE_BATCH_SECONDS="0.2")
        try:
            # The dead worker's publisher lock lapses (its TTL), then the new one publishes.
            await eventually(lambda: sub.about("4242"), within=30)
            # Anything published after the offline was published before it: one online.
            await post(env, stream_offline_body("4242"), "stream.offline")
            await eventually(lambda: len(sub.about("4242")) >= 2, within=15)
        finally:
            second.terminate()
            await second.wait()
        assert [m[0] for m in sub.about("4242")] == [sub.names.online, sub.names.offline]
        [stream] = sub.about("4242")[0][1]["Streams"]
        assert (stream["VideoId"], stream["VideoTitle"]) == ("s-k", "after the crash")
        # Rows are marked published just after the PUBLISH.
        await eventually(lambda: all_published(env), within=5)


def test_the_redis_names_are_the_tracker_formats_unless_prefixed() -> None:
    exact = live.Names.of(Settings(queue_name="one:queue"))
    assert (exact.follow, exact.unfollow) == ("stream.follow", "stream.unfollow")
    assert (exact.online, exact.offline) == ("streams.online", "streams.offline")
    other = live.Names.of(Settings(queue_name="two:queue", live_channel_prefix="two:"))
    assert other.online == "two:streams.online"
    assert exact.counters != other.counters
    assert budget_key(Settings(queue_name="one:queue")) != budget_key(
        Settings(queue_name="two:queue")
    )


def test_a_flap_inside_one_batch_is_published_once_in_its_final_state() -> None:
    def change(seq: int, online: bool) -> Change:
        return Change(seq, "1", online, "s", None, None, None, None, None)

    rows = [change(1, False), change(2, True)]
    assert final_changes(rows, {}) == [change(2, True)]
    assert final_changes(rows, {"1": (True, "s")}) == []  # already announced as online


async def test_redis_down_during_the_change_publishes_once_after_it_returns(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env, Subscriber(settings) as sub:
        env.standin.add_user("4242", "farstreamer")
        await guild_follows(env, "4242", "farstreamer", "111")
        now = datetime.now(UTC)
        online = StreamOnline(
            MessageId("m1"), now, BroadcasterId("4242"), "farstreamer", "Far", StreamId("s-9"), now
        )
        async with env.sessions.begin() as session:
            await fold_stream_events(session, [online], [])
        now_due = Settings(**(env.settings.model_dump() | {"live_batch_seconds": 0}))
        dead = Settings(**(now_due.model_dump() | {"redis_url": "redis://127.0.0.1:1/0"}))
        down = LivePublisher(dead, env.sessions, None)
        with pytest.raises((RedisError, OSError)):
            await down.publish_due()
        await down.redis.aclose()
        assert await env.scalar("SELECT count(*) FROM live_outbox WHERE published_at IS NULL") == 1
        up = LivePublisher(now_due, env.sessions, None)
        assert await up.publish_due() == 1
        assert await up.publish_due() == 0
        await up.redis.aclose()
        await eventually(lambda: len(sub.about("4242")) == 1, within=5)


async def test_reconciliation_finding_a_live_channel_publishes_it_online(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async with (
        connected(settings, sessions) as env,
        Subscriber(settings) as subscriber,
        running_worker(env.settings),
    ):
        env.standin.add_user("4242", "farstreamer")
        await guild_follows(env, "4242", "farstreamer", "111")
        env.standin.go_live("4242", stream_id="s-r")
        async with TwitchClient(env.settings, Redis.from_url(env.settings.redis_url or "")) as tw:
            result = await reconcile_once(env.settings, engine, env.sessions, tw)
        assert result.outcome == "success"
        await eventually(lambda: subscriber.about("4242"), within=5)
        [(channel, message, _)] = subscriber.about("4242")
        assert channel == subscriber.names.online
        assert message["Streams"][0]["VideoId"] == "s-r"
        assert message["Streams"][0]["VideoTitle"] == "stand-in stream"
