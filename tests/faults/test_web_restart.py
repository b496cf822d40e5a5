"""The web process restarted (SIGTERM, then a new one) during a burst: every delivery the
sender saw answered 2xx is folded, and the sender's retries get the rest in."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from streamfold.eventsub_sender import Message, chat_message_body, signed
from tests.conftest import ROOT, SECRET, eventually, free_port
from tests.faults.report import report

BURST = 1_500


async def _web(settings: Settings, port: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "QUEUE_NAME": settings.queue_name,
        "EVENTSUB_SECRET": SECRET,
        "EVENTSUB_ENSURE_AT_STARTUP": "false",
        "PORT": str(port),
        "LOG_FORMAT": "console",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamfold",
        "web",
        "--host",
        "127.0.0.1",
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def up() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(up, within=30)
    return process


async def _deliver(client: httpx.AsyncClient, message: Message, tally: dict[str, int]) -> None:
    """Twitch's behaviour: retry the same message until it is answered 2xx."""
    while True:
        tally["attempts"] += 1
        try:
            answer = await client.post(
                "/eventsub/callback", content=message.body, headers=message.headers()
            )
        except httpx.HTTPError:
            tally["no_answer"] += 1
        else:
            if answer.is_success:
                tally["acknowledged"] += 1
                return
            tally[f"status_{answer.status_code}"] = tally.get(f"status_{answer.status_code}", 0) + 1
        await asyncio.sleep(0.05)


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
    tally = {"attempts": 0, "acknowledged": 0, "no_answer": 0}
    web = await _web(settings, port)
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=5, limits=limits
    ) as client:
        gate = asyncio.Semaphore(32)

        async def one(message: Message) -> None:
            async with gate:
                await _deliver(client, message, tally)

        burst = asyncio.gather(*(one(m) for m in messages))
        sending = asyncio.ensure_future(burst)
        await eventually(lambda: tally["acknowledged"] >= BURST // 3, within=60)
        web.send_signal(signal.SIGTERM)
        # uvicorn finishes the requests in flight, then re-raises the signal on exit.
        assert await web.wait() in (0, -signal.SIGTERM)
        restarted = await _web(settings, port)
        try:
            async with asyncio.timeout(120):
                await sending
        finally:
            restarted.send_signal(signal.SIGTERM)
            await restarted.wait()
    await drain()
    async with sessions() as session:
        folded = int(await session.scalar(text("SELECT count(*) FROM chat_messages")) or 0)
        counted = int(
            await session.scalar(text("SELECT sum(chat_messages) FROM channel_hours")) or 0
        )
    report(
        "web restarted mid-burst",
        BURST,
        tally["acknowledged"],
        folded,
        attempts=tally["attempts"],
        no_answer=tally["no_answer"],
    )
    assert tally["acknowledged"] == BURST
    assert folded == counted == BURST
