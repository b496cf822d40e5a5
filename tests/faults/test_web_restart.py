"""The web process restarted (SIGTERM, then a new one) during a burst: every delivery the
sender saw answered 2xx is folded, and the sender's retries get the rest in."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from tests.conftest import SECRET, eventually, free_port
from tests.faults.report import report
from tests.faults.rig import Sender, chat_counts, start_web
from tests.processes import stop

BURST = 1_500


@pytest.mark.slow
async def test_web_restarted_mid_burst_loses_nothing_acknowledged(
    settings: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    drain: Callable[..., Any],
) -> None:
    port = free_port()
    now = datetime.now(UTC)
    messages = [
        signed(
            SECRET.encode(),
            chat_message_body("77", f"u{i % 31}", f"restart-{i}"),
            "channel.chat.message",
            sent_at=now,
        )
        for i in range(BURST)
    ]
    web = await start_web(settings, port)
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=5, limits=limits
    ) as client:
        sender = Sender(client)
        sending = asyncio.ensure_future(sender.burst(messages))
        await eventually(lambda: len(sender.acknowledged) >= BURST // 3, within=60)
        web.send_signal(signal.SIGTERM)
        # uvicorn finishes the requests in flight, then re-raises the signal on exit.
        assert await web.wait() in (0, -signal.SIGTERM)
        restarted = await start_web(settings, port)
        try:
            async with asyncio.timeout(120):
                await sending
        finally:
            await stop(restarted)
    await drain()
    folded, counted = await chat_counts(sessions)
    report(
        "web restarted mid-burst",
        BURST,
        len(sender.acknowledged),
        folded,
        attempts=sender.tally["attempts"],
        no_answer=sender.tally["no_answer"],
    )
    assert len(sender.acknowledged) == BURST
    assert folded == counted == BURST
