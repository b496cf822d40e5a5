"""Fold shards: channels routed to shard queues, shards held by one worker at a time.

Workers come and go while jobs are queued and running; every acknowledged message is
folded exactly once, and a channel's jobs never run on two workers at once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.shards import ShardedFold
from aggregator.worker import worker_options
from receiver.queue import NotificationQueue
from schema.events import Delivery, parse_instant
from schema.settings import Settings
from schema.shards import channel_of, lease_key, shard_of, shard_queue, workers_key
from streamfold.eventsub_sender import chat_message_body, rfc3339
from tests import processes
from tests.conftest import eventually

SHARDS = 4
T0 = datetime(2024, 5, 4, 11, 40, tzinfo=UTC)

Truth = tuple[Counter[tuple[str, datetime]], set[tuple[str, datetime, str]]]


@pytest.fixture
def sharded(settings: Settings) -> Settings:
    return settings.model_copy(update={"fold_shards": SHARDS, "fold_shard_lease_seconds": 2.0})


@pytest.fixture
async def shard_keys(sharded: Settings, redis: ArqRedis) -> AsyncIterator[None]:
    yield
    queue = sharded.queue_name
    keys = [workers_key(queue)]
    for shard in range(SHARDS):
        keys += [
            shard_queue(queue, shard),
            lease_key(queue, shard),
            f"{shard_queue(queue, shard)}:health-check",
        ]
        keys += [
            f"arq:job:{j.decode()}" for j in await redis.zrange(shard_queue(queue, shard), 0, -1)
        ]
    await redis.delete(*keys)


def chat(count: int, start: int = 0) -> list[Delivery]:
    """Chat over 16 channels and 40 minutes (crossing 12:00) from 50 chatters."""
    rng = random.Random(start)
    items = []
    for n in range(start, start + count):
        at = T0 + timedelta(seconds=(n * 7) % 2400)
        body = chat_message_body(str(200 + n % 16), f"u{rng.randrange(50)}", f"shard-chat-{n}")
        items.append(Delivery(f"shard-delivery-{n}", rfc3339(at), "channel.chat.message", body))
    return items


def truth(items: Sequence[Delivery]) -> Truth:
    import msgspec

    hours: Counter[tuple[str, datetime]] = Counter()
    chatters = set()
    for d in items:
        event = msgspec.json.decode(d.body)["event"]
        hour = parse_instant(d.timestamp).replace(minute=0, second=0, microsecond=0)
        hours[(event["broadcaster_user_id"], hour)] += 1
        chatters.add((event["broadcaster_user_id"], hour, event["chatter_user_id"]))
    return hours, chatters


async def accept_all(redis: ArqRedis, settings: Settings, items: Sequence[Delivery]) -> int:
    """Through the receiver's queue, 32 requests at a time; how many Redis acknowledged."""
    queue = NotificationQueue(redis, settings.queue_name, settings.fold_shards)
    pending = iter(items)
    acknowledged = 0

    async def submitter() -> None:
        nonlocal acknowledged
        for item in pending:
            await queue.accept(item)
            acknowledged += 1

    await asyncio.gather(*(submitter() for _ in range(32)))
    return acknowledged


async def folded_state(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, Truth]:
    async with sessions() as session:
        chat_rows = int(await session.scalar(text("SELECT count(*) FROM chat_messages")) or 0)
        ledger = int(await session.scalar(text("SELECT count(*) FROM folded_messages")) or 0)
        hours = await session.execute(
            text("SELECT broadcaster_id, hour, chat_messages FROM channel_hours")
        )
        chatters = await session.execute(
            text("SELECT broadcaster_id, hour, chatter_id FROM chatter_hours")
        )
        return (
            chat_rows,
            ledger,
            (Counter({(b, h): n for b, h, n in hours.all()}), {tuple(r) for r in chatters.all()}),
        )


async def folded_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    return (await folded_state(sessions))[0]


async def lease_owners(redis: ArqRedis, settings: Settings) -> list[str | None]:
    values = await redis.mget([lease_key(settings.queue_name, s) for s in range(SHARDS)])
    return [None if v is None else v.decode() for v in values]


def test_a_channel_always_goes_to_the_same_shard() -> None:
    body = chat_message_body("12345", "u1", "m1")
    assert channel_of(body) == "12345"
    assert {shard_of(channel_of(body), 8) for _ in range(3)} == {shard_of("12345", 8)}
    assert shard_of("12345", 1) == 0
    assert channel_of(b"not json") is None
    assert shard_of(None, 8) == 0
    spread = Counter(shard_of(str(100_000 + i), 8) for i in range(1_000))
    assert len(spread) == 8
    assert min(spread.values()) > 80


class Recorder:
    """Wraps a runner's real fold to note when it folded which channels."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, frozenset[str], float, float]] = []

    def attach(self, runner: ShardedFold) -> None:
        assert runner.work is not None
        fold = runner.work.folder.fold

        async def recorded(deliveries: Sequence[Delivery]) -> Any:
            began = time.monotonic()
            try:
                return await fold(deliveries)
            finally:
                channels = frozenset(c for d in deliveries if (c := channel_of(d.body)))
                self.spans.append((runner.name, channels, began, time.monotonic()))

        runner.work.folder.fold = recorded  # type: ignore[method-assign]

    def overlaps(self) -> list[tuple[str, str, str]]:
        found = []
        for i, (a, chans_a, a0, a1) in enumerate(self.spans):
            for b, chans_b, b0, b1 in self.spans[i + 1 :]:
                if a != b and a0 < b1 and b0 < a1:
                    found += [(a, b, c) for c in chans_a & chans_b]
        return found


async def start(settings: Settings, name: str, recorder: Recorder) -> tuple[ShardedFold, Any]:
    runner = ShardedFold(settings, worker_options, name=name, live=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.work is not None, within=30)
    recorder.attach(runner)
    return runner, task


async def test_workers_joining_and_leaving_move_shards_and_fold_each_message_once(
    sharded: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    shard_keys: None,
) -> None:
    recorder = Recorder()
    items = chat(2_400)
    waves = [items[:800], items[800:1_600], items[1_600:]]
    first, first_task = await start(sharded, "worker-a", recorder)
    second: ShardedFold | None = None
    second_task = first_task
    try:
        await eventually(lambda: len(first.shards) == SHARDS, within=30)
        acknowledged = await accept_all(redis, sharded, waves[0])
        # A second worker joins while the first is folding: the first hands two over.
        second, second_task = await start(sharded, "worker-b", recorder)
        acknowledged += await accept_all(redis, sharded, waves[1])
        await eventually(lambda: len(first.shards) == len(second.shards) == 2, within=60)
        owners = await lease_owners(redis, sharded)
        assert sorted(owners) == sorted([first.name] * 2 + [second.name] * 2)
        # The first leaves (SIGTERM's path): its shards go to the second.
        await first.stop(grace=20)
        first_task.cancel()
        acknowledged += await accept_all(redis, sharded, waves[2])
        await eventually(lambda: len(second.shards) == SHARDS, within=60)
        await eventually(lambda: _at_least(sessions, len(items)), within=120)
    finally:
        for runner in (first, second):
            if runner is not None:
                await runner.stop(grace=5)
        for task in (first_task, second_task):
            task.cancel()
    assert acknowledged == len(items)
    chat_rows, ledger, (hours, chatters) = await folded_state(sessions)
    assert (chat_rows, ledger) == (len(items), len(items))
    assert (hours, chatters) == truth(items)
    assert recorder.overlaps() == []
    assert {name for name, *_ in recorder.spans} == {"worker-a", "worker-b"}
    for shard in range(SHARDS):
        assert await redis.zcard(shard_queue(sharded.queue_name, shard)) == 0


async def _at_least(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    return await folded_count(sessions) >= count


@pytest.mark.slow
async def test_a_killed_workers_shards_are_taken_over_and_nothing_is_lost(
    sharded: Settings,
    redis: ArqRedis,
    sessions: async_sessionmaker[AsyncSession],
    shard_keys: None,
) -> None:
    items = chat(3_000)
    env = processes.service_env(sharded, FOLD_SHARDS=str(SHARDS), FOLD_SHARD_LEASE_SECONDS="2")
    env.pop("TWITCH_CLIENT_SECRET", None)
    workers = [await processes.start(env, "worker") for _ in range(2)]
    try:

        async def two_owners() -> bool:
            owners = await lease_owners(redis, sharded)
            return None not in owners and len(set(owners)) == 2

        await eventually(two_owners, within=120)
        acknowledged = await accept_all(redis, sharded, items)
        await eventually(lambda: _at_least(sessions, len(items) // 5), within=120)
        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        victim_name = f":{victim.pid}:"

        async def taken_over() -> bool:
            owners = await lease_owners(redis, sharded)
            return None not in owners and not any(victim_name in o for o in owners if o)

        # The victim's leases lapse (2 s), then the survivor claims its shards.
        await eventually(taken_over, within=60)
        # The victim's running jobs stay "in progress" for the fold timeout + 10 s; the
        # survivor runs them once that mark lapses.
        await eventually(lambda: _at_least(sessions, len(items)), within=120)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
                await worker.wait()
    assert acknowledged == len(items)
    chat_rows, ledger, (hours, chatters) = await folded_state(sessions)
    assert (chat_rows, ledger) == (len(items), len(items))
    assert (hours, chatters) == truth(items)
