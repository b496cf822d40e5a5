"""Start and stop: an unreachable service fails fast in one line; SIGTERM to a worker lets
its jobs finish or go back to the queue, and nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from tests.aggregator.test_worker_faults import chat_deliveries, enqueue, folded, hour_rows
from tests.conftest import ROOT, eventually, free_port
from tests.processes import service_env, start


@pytest.mark.parametrize(
    ("command", "broken", "named"),
    [
        ("worker", "DATABASE_URL", "PostgreSQL"),
        ("worker", "REDIS_URL", "Redis"),
        ("web", "REDIS_URL", "Redis"),
    ],
)
def test_an_unreachable_service_at_start_fails_fast_in_one_line(
    settings: Settings, command: str, broken: str, named: str
) -> None:
    closed = free_port()
    url = (
        f"postgresql://postgres@127.0.0.1:{closed}/x"
        if broken == "DATABASE_URL"
        else f"redis://127.0.0.1:{closed}/0"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamfold", command],
        env=service_env(settings, **{broken: url, "PORT": str(free_port())}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert time.monotonic() - started < 20
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert named in lines[0]
    assert "Traceback" not in lines[0]


async def test_sigterm_lets_the_worker_finish_or_requeue_and_loses_nothing(
    settings: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    drain: Callable[..., Any],
) -> None:
    deliveries, truth = chat_deliveries(4_000)
    await enqueue(redis, settings, deliveries, size=20)
    worker = await start(service_env(settings), "worker")
    await eventually(lambda: _at_least(sessions, 500), within=60)
    worker.send_signal(signal.SIGTERM)
    async with asyncio.timeout(40):
        assert await worker.wait() == 0
    # Whatever it had not done is still queued, not in progress: a new worker finishes it.
    left = await redis.zrange(settings.queue_name, 0, -1)
    assert left  # SIGTERM came mid-burst
    assert not [j for j in left if await redis.exists(f"arq:in-progress:{j.decode()}")]
    await drain()
    assert await folded(sessions) == len(deliveries)
    assert await hour_rows(sessions) == truth


async def _at_least(sessions: async_sessionmaker[AsyncSession], n: int) -> bool:
    return await folded(sessions) >= n
