"""Chat revocations that need a person (the bot banned from a channel's chat, a lost
moderator status): recorded, the gap kept open, and chat not re-created on every sync
until the streamer connects again or an operator retries. Against the Twitch stand-in,
the real receiver, PostgreSQL and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schema.settings import Settings
from schema.twitch.channels import connect_channel
from streamfold.channels_cli import describe_channels, sync
from streamfold.eventsub_sender import revocation_body, signed
from tests.aggregator.reconcile_rig import BOT_ID, Rig
from tests.conftest import SECRET, eventually
from tests.receiver.people import add_user, sign_in

CHAT = "channel.chat.message"
SUBSCRIPTIONS = "/helix/eventsub/subscriptions"


def chat_subscription(rig: Rig) -> dict[str, Any]:
    [sub] = [s for s in rig.standin.subscriptions.values() if s["type"] == CHAT]
    return sub


async def revoke(receiver: httpx.AsyncClient, sub: dict[str, Any], status: str) -> datetime:
    """Twitch's revocation of ``sub`` with ``status``, through the real receiver."""
    sub["status"] = status
    at = datetime.now(UTC)
    body = revocation_body(sub["type"], sub["condition"], status, sub["id"])
    message = signed(SECRET.encode(), body, sub["type"], sent_at=at, message_type="revocation")
    response = await receiver.post(
        "/eventsub/callback", content=message.body, headers=message.headers()
    )
    assert response.status_code == 204, response.text
    return at


def chat_creates(rig: Rig) -> int:
    return sum(
        1 for method, path, _ in rig.standin.requests if method == "POST" and path == SUBSCRIPTIONS
    )


async def chat_gaps(rig: Rig) -> list[Any]:
    return await rig.rows(
        "SELECT started_at, ended_at, reason FROM chat_gaps WHERE broadcaster_id = '100'"
        " AND reason <> 'chat_subscription_missing' ORDER BY id"
    )


async def subscribed_with_chat(rig: Rig, receiver: httpx.AsyncClient) -> None:
    """Channel 100 connected with a bot, every subscription enabled by real challenges."""
    rig.settings = rig.settings.model_copy(
        update={"public_base_url": str(receiver.base_url).rstrip("/")}
    )
    await rig.connect(["100"])
    await rig.connect_bot(["100"])
    await rig.run()
    await rig.standin.settled()
    await rig.run()
    assert chat_subscription(rig)["status"] == "enabled"


async def test_a_banned_bot_is_not_resubscribed_until_an_operator_retries(
    rig: Rig, receiver: httpx.AsyncClient, settings: Settings
) -> None:
    await subscribed_with_chat(rig, receiver)
    rig.standin.ban_from_chat("100", BOT_ID)
    banned_at = await revoke(receiver, chat_subscription(rig), "chat_user_banned")

    first = await rig.run()
    creates = chat_creates(rig)
    assert creates >= 4  # online, offline, chat and the app's revoke, at the start
    second = await rig.run()
    # The revoked subscription is cleared away, and no new one is asked for (Twitch would
    # refuse it on every run): nothing failed, one chat subscription is blocked.
    assert (first.counts["subscriptions_deleted"], first.counts["subscriptions_created"]) == (1, 0)
    for run in (first, second):
        assert (run.counts["subscriptions_failed"], run.counts["subscriptions_blocked"]) == (0, 1)
    assert chat_creates(rig) == creates
    assert not [s for s in rig.standin.subscriptions.values() if s["type"] == CHAT]
    # The gap stays open from the revocation, named for its reason.
    [gap] = await chat_gaps(rig)
    assert gap.reason == "chat_subscription_chat_user_banned"
    assert gap.ended_at is None
    assert banned_at - timedelta(seconds=1) <= gap.started_at <= banned_at + timedelta(seconds=1)

    # Where the streamer and the operator look.
    await add_user(rig.sessions, "100", "channel_100", streamer=True)
    me = await receiver.get("/api/me", headers=await sign_in(rig.sessions, settings, "100"))
    [channel] = me.json()["channels"]
    assert channel["chat_blocked_reason"] == "chat_user_banned"
    metrics = (await receiver.get("/metrics")).text
    assert 'streamfold_chat_blocked_channels{reason="chat_user_banned"} 1.0' in metrics
    assert 'streamfold_chat_blocked_channels{reason="moderator_removed"} 0.0' in metrics
    listing = await describe_channels(rig.settings)
    assert "chat BLOCKED: chat_user_banned" in listing
    assert "--retry-blocked" in listing

    # The streamer unbans the bot; the operator retries.
    rig.standin.unban_from_chat("100", BOT_ID)
    report = await sync(rig.settings, retry_blocked=True)
    assert (report.created, report.failed, report.blocked) == (
        [f"{CHAT} broadcaster_user_id=100 user_id={BOT_ID}"],
        [],
        [],
    )
    await rig.standin.settled()
    await rig.run()
    assert chat_subscription(rig)["status"] == "enabled"
    [gap] = await chat_gaps(rig)
    assert gap.ended_at is not None
    me = await receiver.get("/api/me", headers=await sign_in(rig.sessions, settings, "100"))
    assert me.json()["channels"][0]["chat_blocked_reason"] is None

    async def unblocked() -> bool:  # the gauges are read at most once a second
        metrics = (await receiver.get("/metrics")).text
        return 'streamfold_chat_blocked_channels{reason="chat_user_banned"} 0.0' in metrics

    await eventually(unblocked, within=10)


async def test_connecting_the_channel_again_lifts_the_block(
    rig: Rig, receiver: httpx.AsyncClient
) -> None:
    await subscribed_with_chat(rig, receiver)
    rig.standin.ban_from_chat("100", BOT_ID)
    await revoke(receiver, chat_subscription(rig), "chat_user_banned")
    assert (await rig.run()).counts["subscriptions_blocked"] == 1
    rig.standin.unban_from_chat("100", BOT_ID)
    async with rig.sessions.begin() as session:  # what the OAuth callback does
        await connect_channel(session, "100", "channel_100", "Channel_100")
    again = await rig.run()
    assert (again.counts["subscriptions_created"], again.counts["subscriptions_blocked"]) == (1, 0)


@pytest.mark.parametrize(
    ("status", "blocked"),
    [("moderator_removed", True), ("a_status_twitch_adds_later", False)],
)
async def test_every_chat_revocation_is_recorded_and_only_known_blocking_ones_block(
    rig: Rig, receiver: httpx.AsyncClient, status: str, blocked: bool
) -> None:
    await subscribed_with_chat(rig, receiver)
    await revoke(receiver, chat_subscription(rig), status)
    [channel] = await rig.rows(
        "SELECT chat_revocation, chat_revoked_at, chat_blocked FROM channels"
        " WHERE broadcaster_id = '100'"
    )
    assert (channel.chat_revocation, channel.chat_blocked) == (status, blocked)
    assert channel.chat_revoked_at is not None
    run = await rig.run()
    # An unknown reason is treated like notification_failures_exceeded: re-created.
    assert run.counts["subscriptions_created"] == (0 if blocked else 1)
    assert run.counts["subscriptions_blocked"] == (1 if blocked else 0)
    [gap] = await chat_gaps(rig)
    assert gap.reason == f"chat_subscription_{status}"
