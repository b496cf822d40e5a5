"""Deliveries the receiver refused (queue down) become a chat gap for every channel."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.app import create_app
from receiver.reads import queries
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from tests.conftest import SECRET, Clock, free_port, serve


async def test_refused_deliveries_open_one_gap_per_minute_for_every_channel(
    settings: Settings, clock: Clock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    first_at = clock.now
    async with serve(create_app(down, clock=clock)) as base, httpx.AsyncClient(base_url=base) as c:
        for n in range(3):
            clock.now = first_at + timedelta(seconds=10 * n)
            body = chat_message_body("1337", "42", f"chat-{n}")
            message = signed(SECRET.encode(), body, "channel.chat.message", sent_at=clock.now)
            response = await c.post(
                "/eventsub/callback", content=message.body, headers=message.headers()
            )
            assert response.status_code == 503

    async with sessions.begin() as session:
        # A stream that was live meanwhile (the refused messages were its chat).
        await session.execute(
            text("""INSERT INTO stream_sessions (id, broadcaster_id, started_at, started_by)
                    VALUES ('s1', '1337', :at, 'eventsub')"""),
            {"at": first_at - timedelta(minutes=30)},
        )
    since, until = first_at - timedelta(hours=1), first_at + timedelta(minutes=5)
    async with sessions() as session:
        gaps = (
            await session.execute(
                text("SELECT broadcaster_id, started_at, ended_at, reason FROM chat_gaps")
            )
        ).all()
        [row] = await queries.sessions(session, "1337", since, until, now=until)
        hours = await queries.hourly(session, "1337", since, until, now=until)
    # Written once: the later refusals fall in the minute the first write covers.
    assert gaps == [(None, first_at, first_at + timedelta(minutes=1), "receiver_refused")]
    # No chat was counted, and the session and hour say so instead of looking quiet.
    assert row.chat_messages == 0
    assert row.chat_complete is False
    assert [h.chat_complete for h in hours if h.hour == queries.floor_hour(first_at)] == [False]
