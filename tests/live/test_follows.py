"""Follows: a followed channel is tracked (online/offline subscriptions at Twitch with
the app token), the last follower out deletes them unless the streamer connected it, and
concurrent follows from several web processes end with exactly the right subscriptions."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema import live
from schema.settings import Settings
from streamfold.channels_cli import describe_follows
from tests.conftest import eventually
from tests.connected import connected
from tests.live.rig import follower, running_worker, subscription_types, web_process

pytestmark = pytest.mark.usefixtures("redis")


async def test_follow_creates_online_offline_and_last_unfollow_deletes_them(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        env.standin.add_user("4242", "farstreamer")
        viewer = await follower(env, "77", "viewer")
        other = await follower(env, "78", "other")
        made = await env.browser.post("/api/follows", json={"login": "FarStreamer"}, headers=viewer)
        assert made.status_code == 201, made.text
        assert made.json()["broadcaster_id"] == "4242"
        again = await env.browser.post(
            "/api/follows", json={"broadcaster_id": "4242"}, headers=viewer
        )
        assert again.status_code == 200
        assert await subscription_types(env, "4242") == ["stream.offline", "stream.online"]
        # Created with the app token; nobody authorised the app for this channel: cost 1.
        assert all(
            s["cost"] == 1
            for s in env.standin.live_subscriptions()
            if s["condition"].get("broadcaster_user_id") == "4242"
        )
        assert (await env.browser.post("/api/follows", json={"login": "farstreamer"},
                                       headers=other)).status_code == 201  # fmt: skip
        listed = (await env.browser.get("/api/follows", headers=viewer)).json()
        assert [f["broadcaster_id"] for f in listed["follows"]] == ["4242"]
        report = await describe_follows(env.settings)
        [line] = [line for line in report.splitlines() if line.startswith("farstreamer ")]
        assert "followed (2u/0g)" in line
        assert "stream.offline=enabled, stream.online=enabled" in line
        assert "followers: user:77, user:78" in report
        assert "subscription budget: total_cost 2 of max_total_cost" in report

        assert (await env.browser.delete("/api/follows/4242", headers=viewer)).status_code == 204
        assert await subscription_types(env, "4242") == ["stream.offline", "stream.online"]
        assert (await env.browser.delete("/api/follows/4242", headers=other)).status_code == 204
        assert (await env.browser.delete("/api/follows/4242", headers=other)).status_code == 204
        assert await subscription_types(env, "4242") == []


async def test_unknown_login_is_404_and_bad_bodies_are_422(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        viewer = await follower(env, "77", "viewer")
        missing = await env.browser.post("/api/follows", json={"login": "nobody"}, headers=viewer)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        for body in ({}, {"login": "a", "broadcaster_id": "1"}, {"login": "bad login!"}):
            refused = await env.browser.post("/api/follows", json=body, headers=viewer)
            assert refused.status_code == 422, body
        assert (await env.browser.post("/api/follows", json={"login": "x"})).status_code == 401


async def test_follow_limit_and_spent_budget_are_refused_clearly(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    limited = Settings(**(settings.model_dump() | {"follow_limit": 1}))
    async with connected(limited, sessions) as env:
        env.standin.max_total_cost = 2
        for user_id in ("501", "502"):
            env.standin.add_user(user_id, f"chan{user_id}")
        viewer = await follower(env, "77", "viewer")
        other = await follower(env, "78", "other")
        first = await env.browser.post("/api/follows", json={"login": "chan501"}, headers=viewer)
        assert first.status_code == 201
        over = await env.browser.post("/api/follows", json={"login": "chan502"}, headers=viewer)
        assert over.status_code == 422
        assert over.json()["error"] == "follow_limit_reached"
        spent = await env.browser.post("/api/follows", json={"login": "chan502"}, headers=other)
        assert spent.status_code == 503
        assert spent.json()["error"] == "subscription_budget_spent"
        assert await subscription_types(env, "502") == []


async def test_a_connected_channels_subscriptions_survive_its_last_follower(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        assert (await env.login("streamer", env.streamer)).status_code == 200
        viewer = await follower(env, "77", "viewer")
        made = await env.browser.post("/api/follows", json={"broadcaster_id": "1337"},
                                      headers=viewer)  # fmt: skip
        assert made.status_code == 201
        assert (await env.browser.delete("/api/follows/1337", headers=viewer)).status_code == 204
        assert "stream.online" in await subscription_types(env, "1337")
        assert "stream.offline" in await subscription_types(env, "1337")


async def test_concurrent_follows_across_two_web_processes_end_right(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        env.standin.add_user("4242", "farstreamer")
        users = [await follower(env, str(100 + i), f"user{i}") for i in range(5)]
        rng = random.Random(14)
        async with (
            web_process(env.settings) as second_url,
            httpx.AsyncClient(base_url=second_url, timeout=30) as second,
        ):
            clients = [env.browser, second]

            async def one(i: int) -> None:
                client, who = clients[i % 2], users[rng.randrange(len(users))]
                if rng.random() < 0.5:
                    r = await client.post("/api/follows", json={"broadcaster_id": "4242"},
                                          headers=who)  # fmt: skip
                    assert r.status_code in (200, 201), r.text
                else:
                    r = await client.delete("/api/follows/4242", headers=who)
                    assert r.status_code == 204, r.text

            await asyncio.gather(*(one(i) for i in range(50)))
        followers = await env.scalar("SELECT count(*) FROM follows WHERE broadcaster_id = '4242'")
        types = await subscription_types(env, "4242")
        assert types == (["stream.offline", "stream.online"] if followers else [])
        # Everyone leaves: nothing is left behind.
        for who in users:
            await env.browser.delete("/api/follows/4242", headers=who)
        assert await subscription_types(env, "4242") == []


async def test_outside_groups_follow_over_redis_and_bad_messages_are_dropped(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env, running_worker(env.settings):
        env.standin.add_user("4242", "farstreamer")
        redis = Redis.from_url(env.settings.redis_url or "")
        names = live.Names.of(env.settings)
        await redis.delete(names.counters)
        for junk in (b"not json", b'{"platform": "twitch"}', b"[1, 2]"):
            await redis.publish(names.follow, junk)
        await redis.publish(
            names.follow,
            b'{"platform": "youtube", "stream_key": "x", "guild_id": 1, "channel_id": 2}',
        )
        await redis.publish(
            names.follow,
            b'{"platform": "twitch", "stream_key": "farstreamer", "guild_id": 123456789012,'
            b' "channel_id": 5, "user_id": 6, "timestamp": "2024-05-04T12:00:00Z",'
            b' "metadata": {}}',
        )

        async def tracked() -> bool:
            return bool(await env.scalar(
                "SELECT count(*) FROM follows WHERE broadcaster_id = '4242'"
                " AND follower_kind = 'guild' AND follower_id = '123456789012'"))  # fmt: skip

        await eventually(tracked, within=15)
        assert await subscription_types(env, "4242") == ["stream.offline", "stream.online"]
        counters = await redis.hgetall(names.counters)
        assert int(counters[live.FOLLOW_MALFORMED.encode()]) == 3
        assert int(counters[live.FOLLOW_IGNORED.encode()]) == 1
        await redis.publish(
            names.unfollow,
            b'{"platform": "twitch", "stream_key": "4242", "guild_id": 123456789012}',
        )

        async def untracked() -> bool:
            return await subscription_types(env, "4242") == []

        await eventually(untracked, within=15)
        await redis.aclose()
