"""Faults at the worker: a SIGKILL mid-batch and a database outage leave exact counts."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.worker import create_worker
from schema.events import Delivery
from schema.jobs import FOLD_JOB, encode_batch, fold_job_id
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, rfc3339
from tests.conftest import _libpq, eventually
from tests.faults.report import report
from tests.processes import service_env, start

T0 = datetime(2024, 5, 4, 11, 50, tzinfo=UTC)
# The kill test's burst (about 30 s on a 2-core machine); STREAMFOLD_KILL_BURST changes it.
KILL_BURST = int(os.environ.get("STREAMFOLD_KILL_BURST", "10000"))


def chat_deliveries(count: int) -> tuple[list[Delivery], Counter[tuple[str, datetime]]]:
    """``count`` chat messages over 3 channels and 20 minutes (crossing 12:00), plus the
    truth: messages per (channel, hour)."""
    deliveries, truth = [], Counter[tuple[str, datetime]]()
    for n in range(count):
        channel = str(100 + n % 3)
        at = T0 + timedelta(seconds=1200 * n / count)
        body = chat_message_body(channel, f"u{n % 97}", f"kill-chat-{n}")
        deliveries.append(Delivery(f"kill-delivery-{n}", rfc3339(at), "channel.chat.message", body))
        truth[(channel, at.replace(minute=0, second=0, microsecond=0))] += 1
    return deliveries, truth


def chatter_hour_truth(deliveries: list[Delivery]) -> set[tuple[str, str, str]]:
    """Distinct (channel, hour, chatter) triples in the input, read back from the bodies."""
    import msgspec

    triples = set()
    for d in deliveries:
        event = msgspec.json.decode(d.body)["event"]
        triples.add((event["broadcaster_user_id"], d.timestamp[:13], event["chatter_user_id"]))
    return triples


async def enqueue(
    redis: ArqRedis, settings: Settings, deliveries: list[Delivery], size: int
) -> int:
    """Enqueue in jobs of ``size``; return how many deliveries Redis acknowledged."""
    acknowledged = 0
    for i in range(0, len(deliveries), size):
        batch = deliveries[i : i + size]
        job = await redis.enqueue_job(
            FOLD_JOB,
            encode_batch(batch),
            _job_id=fold_job_id(batch),
            _queue_name=settings.queue_name,
        )
        acknowledged += len(batch) if job is not None else 0
    return acknowledged


async def expire_in_progress(redis: ArqRedis, settings: Settings) -> None:
    """A killed job stays "in progress" until its key expires (fold timeout + 10 s); expire
    those keys now instead of waiting, as Redis would a little later."""
    left = await redis.zrange(settings.queue_name, 0, -1)
    if left:
        await redis.delete(*(f"arq:in-progress:{job_id.decode()}" for job_id in left))


async def folded(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy")) or 0
        )


async def _at_least(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    return await folded(sessions) >= count


async def hour_rows(sessions: async_sessionmaker[AsyncSession]) -> Counter[tuple[str, datetime]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT broadcaster_id, hour, chat_messages FROM channel_hours")
        )
        return Counter({(b, h): n for b, h, n in rows.all()})


@pytest.mark.slow
async def test_worker_killed_mid_batch_three_times_leaves_exact_counts(
    settings: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    drain: Callable[..., Any],
) -> None:
    deliveries, truth = chat_deliveries(KILL_BURST)
    acknowledged = await enqueue(redis, settings, deliveries, size=100)
    kills = 0
    for threshold in (KILL_BURST // 10, KILL_BURST * 4 // 10, KILL_BURST * 7 // 10):
        worker = await start(service_env(settings), "worker")
        try:
            # Generous: a worker starting on a busy machine takes seconds before its first fold.
            await eventually(lambda t=threshold: _at_least(sessions, t), within=120)
        finally:
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            kills += 1
        await expire_in_progress(redis, settings)
    await drain()
    report(
        "worker SIGKILLed 3 times mid-burst",
        len(deliveries),
        acknowledged,
        await folded(sessions),
        kills=kills,
    )
    assert acknowledged == len(deliveries)
    assert await folded(sessions) == len(deliveries)
    assert await hour_rows(sessions) == truth
    async with sessions() as session:
        ledger = await session.scalar(
            text("SELECT count(DISTINCT message_id) FROM folded_messages")
        )
        chatter_rows = await session.scalar(text("SELECT count(*) FROM chatter_hours"))
    assert ledger == len(deliveries)
    assert chatter_rows == len(chatter_hour_truth(deliveries))
    assert await redis.zcard(settings.queue_name) == 0


async def test_database_outage_retries_the_job_and_loses_nothing(
    settings: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    admin_url: str,
) -> None:
    deliveries, truth = chat_deliveries(300)
    await enqueue(redis, settings, deliveries, size=100)
    database = make_url(settings.database_url or "").database

    def set_connections(allowed: bool) -> None:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )

    set_connections(False)
    worker = create_worker(settings, burst=True, handle_signals=False)
    run = asyncio.create_task(worker.main())
    try:
        await eventually(lambda: worker.jobs_retried > 0)
        assert worker.jobs_failed == 0
    finally:
        set_connections(True)
    async with asyncio.timeout(60):
        await run
    await worker.close()
    assert worker.jobs_failed == 0
    assert await hour_rows(sessions) == truth
