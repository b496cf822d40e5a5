"""Redis goes away under the receiver and comes back: nothing answered 2xx is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.worker import create_worker
from receiver.app import create_app
from schema.settings import Settings
from streamfold.eventsub_sender import Message, chat_message_body, signed
from tests.conftest import SECRET, Clock, free_port, serve
from tests.faults.rig import redis_server

KEY = SECRET.encode()


async def post(client: httpx.AsyncClient, messages: list[Message]) -> list[int]:
    responses = await asyncio.gather(
        *(client.post("/eventsub/callback", content=m.body, headers=m.headers()) for m in messages)
    )
    return [r.status_code for r in responses]


async def test_redis_restart_mid_stream_loses_nothing_answered_2xx(
    settings: Settings,
    clock: Clock,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    port = free_port()
    ours = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    messages = [
        signed(
            KEY,
            chat_message_body("5", f"u{i % 7}", f"outage-{i}"),
            "channel.chat.message",
            sent_at=clock.now,
        )
        for i in range(150)
    ]
    async with (
        serve(create_app(ours, clock=clock)) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        async with redis_server(port, tmp_path) as process:
            assert await post(client, messages[:100]) == [204] * 100
            # Keep what Redis holds across the restart, as production persistence would.
            admin = aioredis.Redis(host="127.0.0.1", port=port)
            await admin.save()
            await admin.aclose()
            process.terminate()
            process.wait()
            refused = await post(client, messages[100:])
            assert refused == [503] * 50  # Twitch will retry these
        async with redis_server(port, tmp_path):
            # Twitch's retries of the refused ones, and a retry of one already accepted.
            assert await post(client, [*messages[100:], messages[0]]) == [204] * 51
            worker = create_worker(ours, burst=True, handle_signals=False)
            try:
                await worker.main()
            finally:
                await worker.close()
    async with sessions() as session:
        counted = await session.scalar(text("SELECT sum(chat_messages) FROM channel_hours"))
        chatters = await session.scalar(text("SELECT sum(unique_chatters) FROM channel_hours"))
    assert counted == 150
    assert chatters == 7
