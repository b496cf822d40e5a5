"""PostgreSQL stopped for a while under a running worker, then started again: the
receiver keeps answering 2xx (it needs only Redis for notifications), the worker's fold
jobs retry instead of failing, and once the database is back every acknowledged delivery
is folded exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.db import create_engine, create_sessionmaker
from schema.jobs import FOLD_JOB
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from streamfold.migrate import upgrade_head
from tests.conftest import SECRET, eventually, free_port
from tests.faults.report import report
from tests.faults.rig import (
    PrivatePostgres,
    Sender,
    chat_counts,
    folded_ids,
    job_outcomes,
    postgres_server,
    start_web,
    start_worker,
)
from tests.processes import stop

BURST = 1_000


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with postgres_server() as server:
        upgrade_head(server.url)
        yield server


@pytest.mark.slow
async def test_postgres_stopped_mid_burst_jobs_retry_and_counts_stay_exact(
    settings: Settings, redis: ArqRedis, private_postgres: PrivatePostgres
) -> None:
    ours = settings.model_copy(update={"database_url": private_postgres.url})
    engine: AsyncEngine = create_engine(private_postgres.url)
    sessions = create_sessionmaker(engine)
    web_port, metrics_port = free_port(), free_port()
    now = datetime.now(UTC)
    messages = [
        signed(
            SECRET.encode(),
            chat_message_body("99", f"u{i % 29}", f"pg-stop-{i}"),
            "channel.chat.message",
            sent_at=now,
        )
        for i in range(BURST)
    ]
    web, worker = await asyncio.gather(start_web(ours, web_port), start_worker(ours, metrics_port))
    limits = httpx.Limits(max_connections=16)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{web_port}", timeout=5, limits=limits
        ) as client:
            sender = Sender(client, concurrency=16)
            sending = asyncio.ensure_future(sender.burst(messages))

            async def some_folded() -> bool:
                return len(await folded_ids(sessions)) >= BURST // 4

            await eventually(some_folded, within=60)
            await engine.dispose()
            private_postgres.stop()
            down_at = time.monotonic()
            acknowledged_at_stop = len(sender.acknowledged)

            async def retrying() -> bool:
                return (await job_outcomes(metrics_port, FOLD_JOB))["retry"] > 0

            # "A while": the worker has felt it (its folds retry) and the receiver has
            # gone on acknowledging deliveries meanwhile.
            await eventually(retrying, within=60)
            await eventually(
                lambda: sending.done() or len(sender.acknowledged) >= acknowledged_at_stop + 200,
                within=60,
            )
            private_postgres.start()
            up_at = time.monotonic()
            down_for = up_at - down_at
            while_down = sender.statuses_since(down_at, up_at)
            async with asyncio.timeout(120):
                await sending

            async def all_folded() -> bool:
                return len(await folded_ids(sessions)) >= BURST

            # Retries back off (2 s, 4 s, 8 s, ... capped at 60 s): the longest wait is
            # the delay of the try that came due last before the restart.
            await eventually(all_folded, within=90)
            caught_up_in = time.monotonic() - up_at
            outcomes = await job_outcomes(metrics_port, FOLD_JOB)
    finally:
        await stop(worker)
        await stop(web)
    folded, counted = await chat_counts(sessions)
    ids = await folded_ids(sessions)
    await engine.dispose()
    report(
        "postgres stopped mid-burst",
        BURST,
        len(sender.acknowledged),
        folded,
        down_s=round(down_for, 1),
        caught_up_s=round(caught_up_in, 1),
        acknowledged_while_down=len(sender.acknowledged) - acknowledged_at_stop,
        fold_jobs=dict(sorted(outcomes.items())),
    )
    assert set(while_down) <= {204}  # the receiver never needed the database
    assert outcomes["failed"] == 0
    assert outcomes["retry"] > 0
    assert len(sender.acknowledged) == BURST
    assert folded == counted == BURST
    assert ids == sender.acknowledged
