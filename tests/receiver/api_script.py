"""A small history folded through the real pipeline for the API tests.

Channel 1337 (alice): s1 on 2024-05-04 11:40-12:11 with 30 messages across noon, s2 on
05-05 10:00-10:30, s3 live since 05-06 09:00. Channel 4242 (bob): one stream. Viewer
samples are written as reconciliation writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from streamfold.eventsub_sender import (
    Message,
    chat_message_body,
    signed,
    stream_offline_body,
    stream_online_body,
)
from tests.conftest import SECRET, Clock

KEY = SECRET.encode()
ALICE, BOB, VIEWER = "1337", "4242", "501"
S1 = datetime(2024, 5, 4, 11, 40, tzinfo=UTC)
S2 = datetime(2024, 5, 5, 10, 0, tzinfo=UTC)
S3 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 6, 10, 30, tzinfo=UTC)
# chatters a..f of the story, as Twitch user ids; "a" is VIEWER
A, B, C, D, E, F, Z = "501", "502", "503", "504", "505", "506", "507"


def online(at: datetime, stream_id: str, broadcaster: str = ALICE) -> Message:
    body = stream_online_body(broadcaster, stream_id, at)
    return signed(KEY, body, "stream.online", sent_at=at)


def offline(at: datetime, broadcaster: str = ALICE) -> Message:
    return signed(KEY, stream_offline_body(broadcaster), "stream.offline", sent_at=at)


def chat(at: datetime, chatter: str, chat_id: str, broadcaster: str = ALICE) -> Message:
    body = chat_message_body(broadcaster, chatter, chat_id)
    return signed(KEY, body, "channel.chat.message", sent_at=at)


def script() -> list[Message]:
    messages = [online(S1, "s1")]
    for minute in range(30):  # 11:40:07 .. 12:09:07; a,b,c before noon, b,c,d after
        at = S1 + timedelta(minutes=minute, seconds=7)
        chatters = [A, B, C] if at.hour == 11 else [B, C, D]
        messages.append(chat(at, chatters[minute % 3], f"c1-{minute}"))
    messages.append(offline(S1 + timedelta(minutes=31)))
    messages.append(online(S2, "s2"))
    for i, chatter in enumerate([A, A, A, E, E]):
        messages.append(chat(S2 + timedelta(minutes=5 + i), chatter, f"c2-{i}"))
    messages.append(offline(S2 + timedelta(minutes=30)))
    messages.append(online(S2 + timedelta(minutes=1), "b1", BOB))
    messages.append(chat(S2 + timedelta(minutes=2), Z, "cb-1", BOB))
    messages.append(offline(S2 + timedelta(minutes=20), BOB))
    messages.append(online(S3, "s3"))
    messages.append(chat(S3 + timedelta(minutes=10), F, "c3-0"))
    messages.append(chat(S3 + timedelta(minutes=70), A, "c3-1"))
    return sorted(messages, key=lambda m: m.timestamp)


async def post_in_time(
    client: httpx.AsyncClient, clock: Clock, messages: Sequence[Message]
) -> None:
    for m in messages:
        clock.now = datetime.fromisoformat(m.timestamp)
        response = await client.post("/eventsub/callback", content=m.body, headers=m.headers())
        assert response.status_code == 204, response.text


SAMPLES = [  # (minutes after S1, viewers): s1's reconciliation samples, 5 minutes apart
    (5, 10),
    (10, 20),
    (25, 30),
]


async def fold_history(
    receiver: httpx.AsyncClient,
    clock: Clock,
    drain: Callable[[], Any],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await post_in_time(receiver, clock, script())
    await drain()
    async with sessions.begin() as session:
        for minutes, viewers in SAMPLES:
            await session.execute(
                text("""INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id,
                            viewer_count, interval_seconds, title, game_name)
                        VALUES (:b, :at, 's1', :v, 300, 'Speedrun', 'Celeste')"""),
                {"b": ALICE, "at": S1 + timedelta(minutes=minutes), "v": viewers},
            )
    clock.now = NOW
