"""Where a fold batch's time goes, step by step, in this process.

``python -m bench --only foldsteps``: batches of 1,000 chat deliveries go through the
fold path's own functions (decode, ledger, plan, chat statement, commit) on one
connection, each step timed; then the chat statement is run cut down to its first rows
(``chat_messages`` alone, then with ``chatter_hours``) on fresh batches, so the cost of
each of the four rows per message is the difference. The worker's Python CPU is the
decode and plan steps plus the client side of each statement (the ``cpu`` figures:
``time.process_time`` of this process around the same calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text

from aggregator import store
from aggregator.fold import plan
from bench.fold_bench import CASES, deliveries
from bench.services import Environment
from bench.stats import Row
from schema.db import create_engine, create_sessionmaker
from schema.events import Delivery, decode
from schema.partitions import utc_day

BATCH = 1_000
_RESET = text("TRUNCATE chat_messages, chatter_hours, channel_hours, folded_messages")

# The chat statement cut down: each variant stops after one more of its writes.
_INSERT_CHAT = """
    INSERT INTO chat_messages (message_id, day, broadcaster_id, chatter_id, sent_at)
    SELECT * FROM unnest(CAST(:message_ids AS text[]), CAST(:days AS date[]),
                         CAST(:broadcaster_ids AS text[]), CAST(:chatter_ids AS text[]),
                         CAST(:sent_ats AS timestamptz[]))
    ORDER BY 1, 2
    ON CONFLICT (message_id, day) DO NOTHING
"""
_CHAT_ONLY = text(_INSERT_CHAT)
_CHAT_AND_CHATTERS = text(f"""
    WITH new AS ({_INSERT_CHAT} RETURNING broadcaster_id, chatter_id, sent_at)
    INSERT INTO chatter_hours (broadcaster_id, hour, chatter_id, messages)
    SELECT broadcaster_id, date_trunc('hour', sent_at, 'UTC'), chatter_id, count(*)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (broadcaster_id, hour, chatter_id)
        DO UPDATE SET messages = chatter_hours.messages + excluded.messages
""")  # noqa: S608 - a fixed fragment


class Clock:
    """Wall and CPU seconds per named step, summed over batches."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


def _chat_params(items: list[Delivery]) -> dict[str, Any]:
    """The chat statement's arrays, each message in its own day only (no copies near
    midnight: the variants compare the writes, not the dedupe across days)."""
    rows = plan([decode(d) for d in items]).chat
    return {
        "message_ids": store.text_array(r.chat_message_id for r in rows),
        "days": store.text_array(utc_day(r.sent_at).isoformat() for r in rows),
        "copies": store.text_array("f" for _ in rows),
        "broadcaster_ids": store.text_array(r.broadcaster_id for r in rows),
        "chatter_ids": store.text_array(r.chatter_id for r in rows),
        "sent_ats": store.text_array(r.sent_at.isoformat() for r in rows),
    }


async def _steps(env: Environment, items: list[Delivery], clock: Clock) -> None:
    engine = create_engine(env.database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions.begin() as session:
            await session.execute(_RESET)
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            async with sessions() as session:
                with clock.step("begin"):
                    await session.begin()
                with clock.step("decode"):
                    notifications = [decode(d) for d in batch]
                with clock.step("ledger (folded_messages)"):
                    fresh = await store.claim_ids(session, batch)
                with clock.step("plan"):
                    folded = plan(notifications, folded_before=set())
                with clock.step("chat statement (3 tables)"):
                    await store.write_plan(session, folded, {})
                with clock.step("commit"):
                    await session.commit()
                assert len(fresh) == len(batch)
    finally:
        await engine.dispose()


async def _ablation(env: Environment, items: list[Delivery], clock: Clock) -> None:
    """The chat statement and its cut-down variants, each on its own fresh tables."""
    engine = create_engine(env.database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    variants = {
        "chat_messages": _CHAT_ONLY,
        "+ chatter_hours": _CHAT_AND_CHATTERS,
        "+ channel_hours": store._FOLD_CHAT_SIMPLE,
    }
    try:
        for name, statement in variants.items():
            async with sessions.begin() as session:
                await session.execute(_RESET)
            for start in range(0, len(items), BATCH):
                params = _chat_params(items[start : start + BATCH])
                async with sessions.begin() as session:
                    with clock.step(name):
                        await session.execute(statement, params)
    finally:
        await engine.dispose()


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    count = 4_000 if quick else 20_000
    rows: list[Row] = []
    for case, (channels, chatters) in CASES.items():
        steps: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        for _ in range(repetitions):
            for runner in (_steps, _ablation):
                clock = Clock()
                asyncio.run(runner(env, deliveries(count, channels, chatters), clock))
                for name, seconds in clock.wall.items():
                    steps.setdefault(name, []).append(seconds / count * 1e6)
                    cpus.setdefault(name, []).append(clock.cpu[name] / count * 1e6)
        for name, values in steps.items():
            cpu = sorted(cpus[name])[len(cpus[name]) // 2]
            rows.append(
                Row(
                    "foldsteps",
                    f"{case}: {name}",
                    "us/msg",
                    values,
                    note=f"this process's CPU {cpu:.1f} us/msg; batches of {BATCH:,}",
                )
            )
    return rows
