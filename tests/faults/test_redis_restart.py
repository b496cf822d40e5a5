"""Redis killed during a burst and started again from its append-only file: while it is
down the receiver answers 503 and nothing else, what it answered 2xx is in Redis after the
restart, and the worker folds exactly that; the sender's retries then get the rest in.

Redis runs with ``appendonly yes`` and ``appendfsync always``: it writes and fsyncs the
append-only file before it replies to a command, so the receiver's 2xx (sent only after
Redis replied to the enqueue) comes after the job is on disk, and even a SIGKILL of Redis
(no shutdown, nothing flushed at exit) or a power cut loses no acknowledged job. With
``everysec`` a SIGKILL of Redis alone would lose nothing either (the file is written
before the reply; only its fsync waits), but an operating-system crash could take the
last second of acknowledged jobs.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.worker import create_worker
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from tests.conftest import SECRET, eventually, free_port
from tests.faults.report import report
from tests.faults.rig import Sender, chat_counts, folded_ids, redis_server, start_web
from tests.processes import stop

BURST = 1_000
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")


async def fold_all(settings: Settings) -> None:
    worker = create_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


@pytest.mark.slow
async def test_redis_killed_mid_burst_keeps_every_acknowledged_job(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    redis_port, web_port = free_port(), free_port()
    ours = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_port}/0"})
    now = datetime.now(UTC)
    messages = [
        signed(
            SECRET.encode(),
            chat_message_body("88", f"u{i % 23}", f"redis-kill-{i}"),
            "channel.chat.message",
            sent_at=now,
        )
        for i in range(BURST)
    ]
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{web_port}", timeout=5, limits=limits
    ) as client:
        sender = Sender(client)
        async with redis_server(redis_port, tmp_path, *AOF) as first:
            web = await start_web(ours, web_port)
            sending = asyncio.ensure_future(sender.burst(messages))
            await eventually(lambda: len(sender.acknowledged) >= BURST // 3, within=60)
            first.kill()
            first.wait()
            down_at = time.monotonic()
            # Retries land on a receiver whose Redis is gone.
            await eventually(lambda: sum(sender.statuses_since(down_at).values()) >= 200)
            sender.hold()
            await eventually(lambda: sender.in_flight == 0)
            while_down = sender.statuses_since(down_at)
            acknowledged_before = set(sender.acknowledged)
        try:
            async with redis_server(redis_port, tmp_path, *AOF):
                # What Redis kept: every acknowledged job. A job Redis took in the instant
                # it was killed, before it could reply, may be there too (answered 503,
                # Twitch sends it again, the ledger folds it once).
                await fold_all(ours)
                kept = await folded_ids(sessions)
                assert acknowledged_before <= kept
                unanswered_but_kept = len(kept - acknowledged_before)
                assert unanswered_but_kept <= sender.concurrency
                sender.resume()
                async with asyncio.timeout(120):
                    await sending
                await fold_all(ours)
        finally:
            await stop(web)
    folded, counted = await chat_counts(sessions)
    report(
        "redis killed mid-burst (AOF, appendfsync always)",
        BURST,
        len(sender.acknowledged),
        folded,
        acknowledged_before_kill=len(acknowledged_before),
        folded_after_restart=len(kept),
        answers_while_down=dict(sorted(while_down.items())),
    )
    assert set(while_down) <= {503, 0}  # 503, or no answer for one cut mid-request
    assert while_down[503] >= 200 - sender.concurrency
    assert len(sender.acknowledged) == BURST
    assert folded == counted == BURST
    assert await folded_ids(sessions) == sender.acknowledged
