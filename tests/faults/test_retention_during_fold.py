"""The retention job running while chat is folded: partitions are made and dropped under
the fold (a drop locks the partitioned table for a moment), and no message is lost or
counted twice. Real web and worker processes; retention runs in the test, again and
again, each time with an old day partition to drop and a missing day ahead to make."""

from __future__ import annotations

import asyncio
import time as clock
from datetime import UTC, datetime, time, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.retention import retention_once
from schema.partitions import DAYS_AHEAD, create_partition, partition_name
from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, signed
from tests.conftest import SECRET, eventually, free_port
from tests.faults.report import report
from tests.faults.rig import Sender, chat_counts, folded_ids, start_web, start_worker
from tests.processes import stop

BURST = 1_500
ROTATED = 150  # chat messages also delivered by a second subscription (another id)


async def _old_day_with_rows(sessions: async_sessionmaker[AsyncSession], days_ago: int) -> str:
    """A day partition past retention holding a few rows, as a year-old install has."""
    day = datetime.now(UTC).date() - timedelta(days=days_ago)
    at = datetime.combine(day, time(12), tzinfo=UTC)
    async with sessions.begin() as session:
        for statement in create_partition("chat_messages", day).statements:
            await session.execute(text(statement))
        await session.execute(
            text("""INSERT INTO chat_messages (message_id, day, broadcaster_id, chatter_id,
                                               sent_at)
                    SELECT 'old-' || :d || '-' || i, :day, 'old', 'u', :at
                    FROM generate_series(1, 50) AS i"""),
            {"d": days_ago, "day": day, "at": at},
        )
        # The farthest day ahead goes, so the run has one to make.
        far = datetime.now(UTC).date() + timedelta(days=DAYS_AHEAD)
        await session.execute(text(f"DROP TABLE IF EXISTS {partition_name('chat_messages', far)}"))
    return partition_name("chat_messages", day)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_retention_while_chat_is_folded_loses_and_doubles_nothing(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    messages = [
        signed(
            SECRET.encode(),
            chat_message_body("88", f"u{i % 47}", f"retained-{i}"),
            "channel.chat.message",
            sent_at=now,
        )
        for i in range(BURST)
    ]
    rotated = [
        signed(
            SECRET.encode(),
            chat_message_body("88", f"u{i % 47}", f"retained-{i}"),
            "channel.chat.message",
            sent_at=now + timedelta(seconds=1),
        )
        for i in range(0, BURST, BURST // ROTATED)
    ]
    port = free_port()
    web = await start_web(settings, port)
    worker = await start_worker(settings)
    runs: list[str] = []
    dropped = created = 0
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=5, limits=httpx.Limits(max_connections=32)
        ) as client:
            sender = Sender(client)
            began = clock.monotonic()
            sending = asyncio.ensure_future(sender.burst(messages + rotated))
            days_ago = 100
            while not sending.done() or not runs:
                old = await _old_day_with_rows(sessions, days_ago)
                result, _ = await retention_once(settings, engine, sessions)
                runs.append(result.outcome)
                dropped += result.counts.get("partitions_dropped", 0)
                created += result.counts.get("partitions_created", 0)
                async with sessions() as session:
                    left = await session.scalar(
                        text("SELECT count(*) FROM pg_class WHERE relname = :n"), {"n": old}
                    )
                assert left == 0, f"{old} was not dropped: {result}"
                days_ago += 1
            await sending
            sent_in = clock.monotonic() - began

            async def all_folded() -> bool:
                return (await chat_counts(sessions))[0] == BURST

            await eventually(all_folded, within=120)
            folded_in = clock.monotonic() - began
            # Quiet: the rotated deliveries are folded too (the ledger has every id).
            acknowledged = {m.message_id for m in messages + rotated}
            await eventually(lambda: _ledgered(sessions, acknowledged), within=60, interval=0.2)
    finally:
        await stop(worker)
        await stop(web)
    folded, counted = await chat_counts(sessions)
    report(
        "retention during a chat burst",
        len(messages) + len(rotated),
        len(sender.acknowledged),
        folded,
        unique_chat_messages=BURST,
        retention_runs=len(runs),
        partitions_dropped=dropped,
        partitions_created=created,
        seconds_to_send=round(sent_in),
        seconds_to_fold=round(folded_in),
    )
    assert set(runs) == {"success"}
    assert len(sender.acknowledged) == len(messages) + len(rotated)
    assert folded == counted == BURST
    assert dropped >= len(runs)
    assert created >= len(runs)


async def _ledgered(sessions: async_sessionmaker[AsyncSession], ids: set[str]) -> bool:
    return ids <= await folded_ids(sessions)
