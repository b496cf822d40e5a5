"""Every way a channel's authorization ends leads to a disconnected channel, its
subscriptions deleted at the stand-in, its tokens purged, its sessions ended and its
API tokens revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.context import WorkerContext
from aggregator.token_upkeep import upkeep_tokens
from schema.settings import Settings
from schema.twitch import TwitchClient
from schema.twitch.channels import disconnect_channel
from streamfold.eventsub_sender import authorization_revoke_body, revocation_body, signed
from tests.conftest import SECRET
from tests.connected import Connected, connected

pytestmark = pytest.mark.usefixtures("redis")


async def _connect_both(env: Connected) -> dict[str, str]:
    """Both connected; returns headers with an API token the streamer created."""
    assert (await env.login("bot", env.bot)).status_code == 200
    assert (await env.login("streamer", env.streamer)).status_code == 200
    await env.standin.settled()
    assert len(_of(env, env.streamer.id)) == 3
    created = await env.browser.post("/api/tokens", json={"name": "dashboard"})
    assert created.status_code == 201, created.text
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    summary = await env.browser.get(f"/api/channels/{env.streamer.id}/summary", headers=bearer)
    assert summary.status_code == 200, summary.text
    return bearer


def _of(env: Connected, user_id: str) -> list[dict[str, Any]]:
    """Live subscriptions at the stand-in whose condition names ``user_id``."""
    return [s for s in env.standin.live_subscriptions() if user_id in s["condition"].values()]


async def _post(env: Connected, body: bytes, sub_type: str, message_type: str) -> None:
    message = signed(
        SECRET.encode(), body, sub_type, sent_at=datetime.now(UTC), message_type=message_type
    )
    answer = await env.browser.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert answer.status_code == 204, answer.text


async def _assert_disconnected(
    env: Connected, user_id: str, bearer: dict[str, str] | None = None
) -> None:
    assert _of(env, user_id) == []
    if bearer is not None:  # the API token stopped working with the authorization
        env.browser.cookies.clear()
        answer = await env.browser.get(f"/api/channels/{user_id}/summary", headers=bearer)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "not_authenticated"
    assert (
        await env.scalar(
            "SELECT count(*) FROM api_tokens WHERE user_id = :u AND revoked_at IS NULL", u=user_id
        )
        == 0
    )
    assert not await env.scalar(
        "SELECT connected FROM channels WHERE broadcaster_id = :u", u=user_id
    )
    assert await env.scalar("SELECT count(*) FROM oauth_tokens WHERE user_id = :u", u=user_id) == 0
    assert (
        await env.scalar(
            "SELECT count(*) FROM login_sessions WHERE user_id = :u AND ended_at IS NULL",
            u=user_id,
        )
        == 0
    )
    assert (
        await env.scalar(
            "SELECT count(*) FROM eventsub_subscriptions WHERE broadcaster_id = :u", u=user_id
        )
        == 0
    )


async def test_user_authorization_revoke_notification_disconnects_the_channel(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        bearer = await _connect_both(env)
        env.standin.revoke_user(env.streamer.id)
        body = authorization_revoke_body("test-client-id", env.streamer.id)
        await _post(env, body, "user.authorization.revoke", "notification")
        await env.drain()  # folds, then runs the disconnect job the fold enqueued
        await _assert_disconnected(env, env.streamer.id, bearer)
        # The bot is untouched.
        assert await env.scalar("SELECT count(*) FROM oauth_tokens WHERE user_id = '9001'") == 1


@pytest.mark.parametrize("reason", ["authorization_revoked", "user_removed"])
async def test_a_revocation_for_lost_authorization_disconnects_the_channel(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], reason: str
) -> None:
    async with connected(settings, sessions) as env:
        bearer = await _connect_both(env)
        online = next(s for s in _of(env, env.streamer.id) if s["type"] == "stream.online")
        body = revocation_body("stream.online", online["condition"], reason, online["id"])
        await _post(env, body, "stream.online", "revocation")
        await env.drain()
        await _assert_disconnected(env, env.streamer.id, bearer)


async def test_a_chat_revocation_by_the_bot_disconnects_the_bot_not_the_channel(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with connected(settings, sessions) as env:
        await _connect_both(env)
        chat = next(s for s in _of(env, env.streamer.id) if s["type"] == "channel.chat.message")
        env.standin.revoke_user(env.bot.id)  # the bot's tokens die at Twitch
        body = revocation_body(
            "channel.chat.message", chat["condition"], "authorization_revoked", chat["id"]
        )
        await _post(env, body, "channel.chat.message", "revocation")
        await env.drain()
        assert (
            await env.scalar("SELECT count(*) FROM oauth_tokens WHERE user_id = :u", u="9001") == 0
        )
        assert env.standin.subscriptions.get(chat["id"]) is None  # deleted, not just dead
        assert await env.scalar("SELECT connected FROM channels WHERE broadcaster_id = '1337'")
        assert sorted(s["type"] for s in _of(env, env.streamer.id)) == [
            "stream.offline",
            "stream.online",
        ]


async def _upkeep(env: Connected, redis: ArqRedis) -> dict[str, int]:
    work = WorkerContext.open(env.settings, redis)
    try:
        return await upkeep_tokens(work.attach({}))
    finally:
        await work.close()


async def test_a_refresh_failing_as_invalid_disconnects_the_channel(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: ArqRedis
) -> None:
    async with connected(settings, sessions) as env:
        bearer = await _connect_both(env)
        env.standin.revoke_user(env.streamer.id)
        async with sessions.begin() as session:
            await session.execute(
                text("UPDATE oauth_tokens SET expires_at = now() WHERE user_id = '1337'")
            )
        counts = await _upkeep(env, redis)
        assert counts["disconnected"] == 1
        await env.drain()
        await _assert_disconnected(env, env.streamer.id, bearer)
        run = (await env.rows("SELECT job, outcome, counts FROM job_runs"))[0]
        assert (run.job, run.outcome) == ("token_upkeep", "success")
        assert run.counts["disconnected"] == 1


async def test_upkeep_refreshes_tokens_near_expiry_and_validates_hourly(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: ArqRedis
) -> None:
    async with connected(settings, sessions) as env:
        await _connect_both(env)
        first = env.standin.grants[env.streamer.id]
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "UPDATE oauth_tokens SET expires_at = now() + interval '5 minutes'"
                    " WHERE user_id = '1337'"
                )
            )
            await session.execute(
                text(
                    "UPDATE oauth_tokens SET validated_at = now() - interval '2 hours'"
                    " WHERE user_id = '9001'"
                )
            )
        counts = await _upkeep(env, redis)
        assert counts == {"refreshed": 1, "validated": 1, "tokens": 2}
        # Rotation: Twitch handed out a new refresh token, and we kept it.
        assert env.standin.grants[env.streamer.id].refresh_token != first.refresh_token
        counts = await _upkeep(env, redis)
        assert counts == {"fresh": 2, "tokens": 2}
        assert await env.scalar("SELECT count(*) FROM job_runs WHERE outcome = 'success'") == 2


@pytest.mark.parametrize("purge", [False, True])
async def test_disconnect_channel_keeps_aggregates_unless_purged(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], purge: bool
) -> None:
    async with connected(settings, sessions) as env:
        await _connect_both(env)
        async with sessions.begin() as session:
            await session.execute(
                text("""INSERT INTO channel_hours (broadcaster_id, hour, chat_messages)
                        VALUES ('1337', date_trunc('hour', now()), 5)""")
            )
        async with TwitchClient(env.settings, None) as twitch, sessions.begin() as session:
            result = await disconnect_channel(session, twitch, "1337", purge=purge)
        assert result.was_connected
        assert result.subscriptions_deleted == 3
        assert not result.subscriptions_pending
        assert _of(env, env.streamer.id) == []
        hours = await env.scalar("SELECT count(*) FROM channel_hours")
        assert hours == (0 if purge else 1)
        # The access token was revoked at Twitch, not only forgotten here.
        assert env.standin.grants.get(env.streamer.id) is None
        assert env.standin.token_grants.get("client_credentials", 0) >= 1
