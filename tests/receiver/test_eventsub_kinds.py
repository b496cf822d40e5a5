"""What a signed message is comes from its signed body, through real HTTP (uvicorn), Redis
and PostgreSQL: malformed bodies, replays under another Message-Type, redeliveries,
subscriptions streamfold does not know, and timestamps that are not RFC 3339."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.app import create_app
from receiver.reads import queries
from receiver.signature import sign
from schema.settings import Settings
from streamfold.eventsub_sender import (
    Message,
    challenge_body,
    chat_message_body,
    revocation_body,
    signed,
    stream_offline_body,
    stream_online_body,
)
from tests.conftest import SECRET, Clock, serve

KEY = SECRET.encode()
T0 = datetime(2024, 5, 4, 8, 0, tzinfo=UTC)


async def post(client: httpx.AsyncClient, message: Message, **headers: str) -> httpx.Response:
    """POST ``message``; keyword arguments replace Twitch-Eventsub-<Name> headers."""
    sent = message.headers()
    for name, value in headers.items():
        sent[f"Twitch-Eventsub-{name.replace('_', '-')}"] = value
    return await client.post("/eventsub/callback", content=message.body, headers=sent)


def with_subscription_id(body: bytes, sub_id: str) -> bytes:
    decoded = msgspec.json.decode(body)
    decoded["subscription"]["id"] = sub_id
    return msgspec.json.encode(decoded)


async def queued(redis: ArqRedis, settings: Settings) -> int:
    return int(await redis.zcard(settings.queue_name))


async def subscription_rows(sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    text("SELECT id, status, revoked_at FROM eventsub_subscriptions ORDER BY id")
                )
            ).all()
        )


async def enabled_subscription(
    sessions: async_sessionmaker[AsyncSession], sub_id: str, sub_type: str, condition: str
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO eventsub_subscriptions "
                "(id, type, version, condition, broadcaster_id, status) VALUES "
                "(:id, :type, '1', CAST(:condition AS jsonb), '1337', 'enabled') "
                "ON CONFLICT (id) DO UPDATE SET status = 'enabled', revoked_at = NULL"
            ),
            {"id": sub_id, "type": sub_type, "condition": condition},
        )


# -- a notification must be one JSON object with a subscription and an event ---------------


MALFORMED_NOTIFICATIONS = [
    b"{not json",
    b"",
    b"null",
    b"[]",
    b'"text"',
    b'{"event":{}}',  # no subscription
    b'{"subscription":{"type":"channel.chat.message","status":"enabled"}}',  # no event
    b'{"subscription":"channel.chat.message","event":{}}',
    b'{"subscription":{"type":"channel.chat.message","status":"enabled"},"event":{}} {}',
    b'{"subscription":{"type":"channel.chat.message","status":"enabled"},"event":{"a":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}}",
]


@pytest.mark.parametrize("body", MALFORMED_NOTIFICATIONS, ids=range(len(MALFORMED_NOTIFICATIONS)))
async def test_a_signed_body_that_is_not_an_eventsub_object_is_refused_and_never_queued(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings, body: bytes
) -> None:
    message = signed(KEY, body, "channel.chat.message", sent_at=clock.now)
    response = await post(receiver, message)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "detail"}
    assert await queued(redis, settings) == 0


async def test_an_eventsub_object_with_the_wrong_event_shape_is_still_acknowledged(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings
) -> None:
    # The worker dead-letters it (tests/test_webhook_to_row.py); Twitch must not retry it.
    body = b'{"subscription":{"type":"channel.chat.message","status":"enabled"},"event":[1]}'
    response = await post(receiver, signed(KEY, body, "channel.chat.message", sent_at=clock.now))
    assert response.status_code == 204
    assert await queued(redis, settings) == 1


# -- a redelivery never replaces the queued first delivery ---------------------------------


async def test_a_redelivery_while_the_first_is_queued_keeps_the_first_event_time(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock.now = T0
    online = signed(KEY, stream_online_body("1337", "s1", T0), "stream.online", sent_at=T0)
    assert (await post(receiver, online)).status_code == 204
    await drain()
    first_at = T0 + timedelta(hours=1, microseconds=695982)
    retry_at = first_at + timedelta(seconds=7, microseconds=14451)
    offline = stream_offline_body("1337")
    for sent_at in (first_at, retry_at):  # two deliveries of one id, the worker not running
        clock.now = sent_at
        delivery = signed(KEY, offline, "stream.offline", sent_at=sent_at, message_id="off-1")
        assert (await post(receiver, delivery)).status_code == 204
    await drain()
    async with sessions() as session:
        end = T0 + timedelta(days=1)
        [row] = await queries.sessions(session, "1337", T0 - timedelta(days=1), end, now=end)
    assert row.ended_at == first_at


# -- the signed body decides; unsigned headers may only agree ---------------------------------


async def test_a_notification_replayed_as_another_message_type_is_refused_and_writes_nothing(
    receiver: httpx.AsyncClient,
    clock: Clock,
    redis: ArqRedis,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    condition = '{"broadcaster_user_id": "1337", "user_id": "9"}'
    await enabled_subscription(sessions, "sub-chat", "channel.chat.message", condition)
    body = with_subscription_id(chat_message_body("1337", "42", "chat-1", bot_id="9"), "sub-chat")
    captured = signed(KEY, body, "channel.chat.message", sent_at=clock.now)
    assert (await post(receiver, captured)).status_code == 204
    before = await subscription_rows(sessions)
    for headers in (
        {"Message_Type": "revocation"},
        {"Message_Type": "webhook_callback_verification"},
        {"Message_Type": "something_new"},
        {"Subscription_Type": "stream.offline"},
    ):
        response = await post(receiver, captured, **headers)
        assert response.status_code == 400, (headers, response.text)
        assert response.json()["error"] == "malformed_headers"
    assert await subscription_rows(sessions) == before
    assert [row.status for row in before] == ["enabled"]
    assert await queued(redis, settings) == 1


async def test_a_body_that_is_neither_notification_challenge_nor_revocation_is_refused(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bodies = [
        # no event and no challenge, yet enabled: not a revocation either
        revocation_body("stream.online", {"broadcaster_user_id": "1337"}, "enabled", "sub-1"),
        # both an event and a challenge
        b'{"challenge":"x","subscription":{"type":"stream.online","status":"enabled"},"event":{}}',
    ]
    for body in bodies:
        for message_type in ("notification", "revocation", "webhook_callback_verification"):
            message = signed(
                KEY, body, "stream.online", sent_at=clock.now, message_type=message_type
            )
            response = await post(receiver, message)
            assert response.status_code == 400, (body, message_type, response.text)
    assert await subscription_rows(sessions) == []


async def test_a_replayed_revocation_is_a_duplicate_acted_on_once(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    condition = {"broadcaster_user_id": "1337"}
    await enabled_subscription(
        sessions, "sub-on", "stream.online", '{"broadcaster_user_id": "1337"}'
    )
    body = revocation_body("stream.online", condition, "notification_failures_exceeded", "sub-on")
    revocation = signed(KEY, body, "stream.online", sent_at=clock.now, message_type="revocation")
    assert (await post(receiver, revocation)).status_code == 204
    [row] = await subscription_rows(sessions)
    assert (row.status, row.revoked_at is not None) == ("notification_failures_exceeded", True)
    # The subscription is created again and enabled; the old revocation comes back.
    await enabled_subscription(
        sessions, "sub-on", "stream.online", '{"broadcaster_user_id": "1337"}'
    )
    clock.now += timedelta(minutes=9)
    assert (await post(receiver, revocation, Message_Retry="1")).status_code == 204
    [row] = await subscription_rows(sessions)
    assert (row.status, row.revoked_at) == ("enabled", None)


async def test_a_replayed_challenge_gets_the_same_answer(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await enabled_subscription(
        sessions, "sub-c", "stream.online", '{"broadcaster_user_id": "1337"}'
    )
    body = challenge_body(
        "the-challenge", "stream.online", {"broadcaster_user_id": "1337"}, "sub-c"
    )
    message = signed(
        KEY, body, "stream.online", sent_at=clock.now, message_type="webhook_callback_verification"
    )
    for _ in range(2):
        response = await post(receiver, message)
        assert (response.status_code, response.text) == (200, "the-challenge")


# -- subscriptions streamfold does not know ---------------------------------------------------


async def test_a_revocation_of_an_unknown_subscription_is_acknowledged_and_stores_nothing(
    receiver: httpx.AsyncClient,
    clock: Clock,
    redis: ArqRedis,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = revocation_body(
        "stream.online", {"broadcaster_user_id": "1337"}, "authorization_revoked", "not-ours"
    )
    message = signed(KEY, body, "stream.online", sent_at=clock.now, message_type="revocation")
    assert (await post(receiver, message)).status_code == 204
    assert await subscription_rows(sessions) == []
    assert await queued(redis, settings) == 0  # no disconnect of anyone either


async def test_a_revocation_carrying_an_event_as_the_twitch_cli_sends_it_is_a_revocation(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    condition = '{"broadcaster_user_id": "1337"}'
    await enabled_subscription(sessions, "sub-cli", "stream.online", condition)
    decoded = msgspec.json.decode(stream_online_body("1337", "s1", clock.now))
    decoded["subscription"].update(id="sub-cli", status="user_removed")
    body = msgspec.json.encode(decoded)
    as_notification = signed(KEY, body, "stream.online", sent_at=clock.now)
    assert (await post(receiver, as_notification)).status_code == 400
    revocation = signed(KEY, body, "stream.online", sent_at=clock.now, message_type="revocation")
    assert (await post(receiver, revocation)).status_code == 204
    [row] = await subscription_rows(sessions)
    assert row.status == "user_removed"


def invented_challenge(clock: Clock) -> Message:
    """What `twitch event verify-subscription` sends: a subscription nobody created."""
    body = challenge_body("cli-challenge", "stream.online", {"broadcaster_user_id": "555"}, "cli")
    return signed(
        KEY, body, "stream.online", sent_at=clock.now, message_type="webhook_callback_verification"
    )


async def test_a_challenge_for_an_unknown_subscription_is_refused_in_production(
    receiver: httpx.AsyncClient, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await post(receiver, invented_challenge(clock))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert await subscription_rows(sessions) == []


async def test_the_local_run_answers_any_challenge_as_the_twitch_cli_expects(
    settings: Settings, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    local = settings.model_copy(update={"eventsub_accept_any_challenge": True})
    async with serve(create_app(local, clock=clock)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await post(c, invented_challenge(clock))
    assert response.status_code == 200
    assert response.content == b"cli-challenge"
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert await subscription_rows(sessions) == []


# -- signed timestamps are RFC 3339 only -------------------------------------------------------


TUESDAY_OF_WEEK_49 = datetime.fromisocalendar(2026, 49, 2).replace(hour=10, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-W49-2T10:00:00Z",  # ISO week date
        "2026-W49-2T10:00:00.123456789Z",
        "2026-335T10:00:00Z",  # ordinal date
        "20261201T100000Z",  # basic format
        "2026-12-01T10Z",  # hour only
        "2026-12-01T10:00Z",  # no seconds
        "2026-12-01 10:00:00Z",  # space for T
        "2026-12-01T10:00:00.1234567890Z",  # ten fractional digits
        "2026-12-01T10:00:00+0000",  # offset without a colon
    ],
)
async def test_a_signed_timestamp_that_is_not_rfc_3339_is_refused(
    receiver: httpx.AsyncClient, clock: Clock, redis: ArqRedis, settings: Settings, timestamp: str
) -> None:
    clock.now = TUESDAY_OF_WEEK_49
    body = chat_message_body("1337", "42", "chat-1")
    message = Message(
        "ts-1",
        timestamp,
        "notification",
        "channel.chat.message",
        body,
        sign(KEY, "ts-1", timestamp, body),
    )
    response = await post(receiver, message)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_headers"
    assert await queued(redis, settings) == 0
