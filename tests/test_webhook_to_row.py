"""A signed webhook becomes rows: uvicorn receiver -> Redis -> real arq worker -> PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.reads import queries
from streamfold.eventsub_sender import (
    Message,
    chat_message_body,
    signed,
    stream_offline_body,
    stream_online_body,
)
from tests.conftest import SECRET, Clock

KEY = SECRET.encode()
T0 = datetime(2024, 5, 4, 11, 40, tzinfo=UTC)  # a stream that crosses 12:00 UTC


async def post_all(client: httpx.AsyncClient, messages: Sequence[Message]) -> None:
    """Post concurrently (all inside the replay window of the receiver's clock)."""
    responses = await asyncio.gather(
        *(client.post("/eventsub/callback", content=m.body, headers=m.headers()) for m in messages)
    )
    assert [r.status_code for r in responses] == [204] * len(messages)


async def post_in_time(
    client: httpx.AsyncClient, clock: Clock, messages: Sequence[Message], retries: int = 0
) -> None:
    """Post one by one with the receiver's clock at each message's send time; optionally
    send every message ``retries`` more times right away, as Twitch does when unsure."""
    for m in messages:
        clock.now = datetime.fromisoformat(m.timestamp)
        for attempt in range(retries + 1):
            response = await client.post(
                "/eventsub/callback", content=m.body, headers=m.headers(retry=attempt)
            )
            assert response.status_code == 204, response.text


def online(clock: Clock, at: datetime, stream_id: str = "s1", broadcaster: str = "1337") -> Message:
    clock.now = at
    return signed(KEY, stream_online_body(broadcaster, stream_id, at), "stream.online", sent_at=at)


def offline(clock: Clock, at: datetime, broadcaster: str = "1337") -> Message:
    clock.now = at
    return signed(KEY, stream_offline_body(broadcaster), "stream.offline", sent_at=at)


def chat(at: datetime, chatter: str, chat_id: str, broadcaster: str = "1337") -> Message:
    return signed(
        KEY, chat_message_body(broadcaster, chatter, chat_id), "channel.chat.message", sent_at=at
    )


def chat_script() -> list[Message]:
    """30 messages from 11:40 to 12:09: chatters a,b,c before noon; b,c,d after."""
    messages = []
    for minute in range(30):
        at = T0 + timedelta(minutes=minute, seconds=7)
        chatters = ["a", "b", "c"] if at.hour == 11 else ["b", "c", "d"]
        messages.append(chat(at, chatters[minute % 3], f"chat-{minute}"))
    return messages


async def fold_script(
    receiver: httpx.AsyncClient, clock: Clock, drain: Callable[[], Any], duplicate: bool = False
) -> list[Message]:
    script = [online(clock, T0), *chat_script(), offline(clock, T0 + timedelta(minutes=31))]
    await post_in_time(receiver, clock, script, retries=2 if duplicate else 0)
    await drain()
    return script


async def test_live_session_with_chat_across_an_hour_boundary(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await fold_script(receiver, clock, drain)
    now = T0 + timedelta(hours=3)
    async with sessions() as session:
        [row] = await queries.sessions(session, "1337", T0 - timedelta(days=1), now, now=now)
        hours = await queries.hourly(session, "1337", T0 - timedelta(hours=1), now, now=now)
        total = await queries.summary(session, "1337", T0 - timedelta(days=1), now, now=now)
    assert (row.id, row.started_at, row.ended_at) == ("s1", T0, T0 + timedelta(minutes=31))
    assert (row.started_by, row.ended_by, row.duration_seconds) == ("eventsub", "eventsub", 1860)
    assert (row.chat_messages, row.unique_chatters) == (30, 4)
    assert [(h.hour.hour, h.live_seconds, h.chat_messages, h.unique_chatters) for h in hours] == [
        (11, 1200, 20, 3),
        (12, 660, 10, 3),
    ]
    assert (total.sessions, total.chat_messages, total.unique_chatters) == (1, 30, 4)
    assert total.hours_streamed == round(1860 / 3600, 4)


async def test_duplicates_and_redeliveries_change_nothing(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    script = await fold_script(receiver, clock, drain, duplicate=True)
    # A late redelivery after everything was folded, and the same chat message delivered
    # by a second subscription under another message id (secret rotation).
    again = script[-6:-1]
    clock.now = T0 + timedelta(minutes=35)
    rotated = [signed(KEY, m.body, "channel.chat.message", sent_at=clock.now) for m in again]
    await post_all(receiver, again + rotated)
    await drain()
    async with sessions() as session:
        counts = (
            await session.execute(
                text(
                    "SELECT (SELECT sum(chat_messages) FROM channel_hours) AS messages, "
                    "(SELECT count(*) FROM chat_messages WHERE NOT is_copy) AS ledger, "
                    "(SELECT count(*) FROM chatter_hours) AS chatter_hours, "
                    "(SELECT count(*) FROM stream_sessions) AS sessions, "
                    "(SELECT count(DISTINCT message_id) FROM folded_messages) AS deliveries"
                )
            )
        ).one()
    assert (counts.messages, counts.ledger, counts.chatter_hours, counts.sessions) == (30, 30, 6, 1)
    assert counts.deliveries == 32 + 5  # every distinct delivery id, the rotated ones too


async def test_offline_before_online_still_closes_one_session(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    end = T0 + timedelta(hours=2)
    late_online = online(clock, T0)
    clock.now = end
    late_online = signed(KEY, late_online.body, "stream.online", sent_at=end)
    await post_all(receiver, [offline(clock, end)])
    await drain()
    await post_all(receiver, [late_online])
    await drain()
    async with sessions() as session:
        rows = await queries.sessions(
            session,
            "1337",
            T0 - timedelta(days=1),
            end + timedelta(days=1),
            now=end + timedelta(days=1),
        )
    assert [(r.started_at, r.ended_at, r.ended_by) for r in rows] == [(T0, end, "eventsub")]


async def test_new_stream_closes_the_open_one_at_its_start(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    second = T0 + timedelta(minutes=50)
    first = online(clock, T0, "s1")
    clock.now = second
    first = signed(KEY, first.body, "stream.online", sent_at=second)
    await post_all(receiver, [online(clock, second, "s2"), first])
    await drain()
    async with sessions() as session:
        rows = await queries.sessions(
            session,
            "1337",
            T0 - timedelta(days=1),
            second + timedelta(hours=1),
            now=second + timedelta(hours=1),
        )
    assert [(r.id, r.ended_at) for r in rows] == [("s2", None), ("s1", second)]


async def test_unfoldable_body_with_valid_signature_is_acknowledged_and_dead_lettered(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # (A body that is not JSON, or whose type differs from the header's, is refused
    # before it is queued: tests/receiver/test_eventsub.py.)
    bad = [
        signed(
            KEY,
            b'{"subscription":{"id":"x","type":"channel.chat.message","version":"1",'
            b'"status":"enabled","condition":{}},"event":{"chatter_user_id":"1"}}',
            "channel.chat.message",
            sent_at=clock.now,
        ),
        # an id no Twitch payload has
        signed(
            KEY, chat_message_body("1" * 500, "2", "3"), "channel.chat.message", sent_at=clock.now
        ),
    ]
    good = chat(clock.now, "a", "fine")
    await post_all(receiver, [*bad, good])
    await drain()
    async with sessions() as session:
        letters = (
            await session.execute(text("SELECT message_id, reason FROM dead_letters ORDER BY id"))
        ).all()
        folded = await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy"))
    assert sorted(m for m, _ in letters) == sorted(m.message_id for m in bad)
    assert folded == 1
    assert all("hello chat" not in reason for _, reason in letters)


async def test_a_delivery_the_database_refuses_is_dead_lettered_once_and_spares_its_batch(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
    redis: Any,
    settings: Any,
) -> None:
    # Valid JSON, valid signature, but PostgreSQL text cannot hold a NUL character.
    poison = chat(clock.now, "bad\u0000id", "poison-1")
    good = [chat(clock.now, f"c{i}", f"fine-{i}") for i in range(20)]
    await post_all(receiver, [*good, poison])
    await drain()
    # The same batch again, as after a worker died before arq recorded the job's end.
    from schema.events import Delivery
    from schema.jobs import FOLD_JOB, encode_batch

    again = [
        Delivery(m.message_id, m.timestamp, m.subscription_type, m.body) for m in [poison, *good]
    ]
    await redis.enqueue_job(FOLD_JOB, encode_batch(again), _queue_name=settings.queue_name)
    await drain()
    async with sessions() as session:
        letters = (await session.execute(text("SELECT message_id FROM dead_letters"))).all()
        folded = await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy"))
    assert [m for (m,) in letters] == [poison.message_id]
    assert folded == 20
