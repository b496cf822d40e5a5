"""Fold throughput of real worker processes against a raw batched upsert.

The queue is filled first, through the receiver's own ``NotificationQueue`` with 64
concurrent submitters (so jobs carry what the receiver batches under load), into a
staging key; it is renamed onto the worker's queue in one step, and the clock runs until
the channel-hour totals hold every message. The baseline writes the same per-message
increments with ``executemany`` of 1,000 upserts per transaction: no ledger, no
exactly-once, no unique chatters, i.e. what PostgreSQL does with no guarantees at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.loadgen import CHAT, chat_body
from bench.services import Environment, cpu_seconds, libpq, log_file, process, worker_args
from bench.stats import Row
from receiver.queue import NotificationQueue, connect_redis
from schema.events import Delivery
from schema.shards import lease_key, shard_queue
from streamfold.eventsub_sender import rfc3339

CASES = {"hot": (1, 5_000), "spread": (1_000, 50_000)}  # channels, chatters
SUBMITTERS = 64
_RESET = "TRUNCATE chat_messages, chatter_hours, channel_hours, folded_messages"
_UPSERT = """
    INSERT INTO channel_hours (broadcaster_id, hour, chat_messages) VALUES (%s, %s, 1)
    ON CONFLICT (broadcaster_id, hour)
        DO UPDATE SET chat_messages = channel_hours.chat_messages + 1
"""


def deliveries(count: int, channels: int, chatters: int) -> list[Delivery]:
    timestamp = rfc3339(datetime.now(UTC))
    return [
        Delivery(str(uuid.uuid4()), timestamp, CHAT, chat_body(i, channels, chatters))
        for i in range(count)
    ]


async def prefill(env: Environment, items: list[Delivery], queue_name: str, shards: int = 1) -> int:
    """Enqueue ``items`` as the receiver would under load; return the number of jobs."""
    redis = connect_redis(env.redis_url)
    try:
        queue = NotificationQueue(redis, queue_name, shards)
        pending = iter(items)

        async def submitter() -> None:
            for item in pending:
                await queue.accept(item)

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        return sum([int(await redis.zcard(shard_queue(queue_name, s))) for s in range(shards)])
    finally:
        await redis.aclose()


async def _wait_for_workers(env: Environment, logs: list[Path]) -> None:
    """Until every worker has started its poll loop (its log says so) and one has
    written the health key: importing and starting a worker costs a second of CPU that
    must not land inside a measurement."""
    redis = connect_redis(env.redis_url)
    try:
        deadline = time.monotonic() + 30
        while not (
            all(b"Starting worker" in path.read_bytes() for path in logs)
            and await redis.exists(f"{env.queue_name}:health-check")
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not start polling")
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def fold_once(
    env: Environment, count: int, channels: int, chatters: int, shards: int = 1
) -> tuple[float, int]:
    """Fill, release to the running workers, wait until folded: (seconds, jobs)."""
    staging = f"{env.queue_name}:staging"
    items = deliveries(count, channels, chatters)
    async with await psycopg.AsyncConnection.connect(libpq(env.database_url)) as conn:
        await conn.execute(_RESET)
        await conn.commit()
        jobs = await prefill(env, items, staging, shards)
        redis = connect_redis(env.redis_url)
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for shard in range(shards):
                    if await redis.exists(shard_queue(staging, shard)):
                        pipe.rename(shard_queue(staging, shard), shard_queue(env.queue_name, shard))
                await pipe.execute()
            started = time.perf_counter()
            while True:
                cur = await conn.execute(
                    "SELECT coalesce(sum(chat_messages), 0) FROM channel_hours"
                )
                row = await cur.fetchone()
                await conn.commit()
                if row is not None and int(row[0]) >= count:
                    return time.perf_counter() - started, jobs
                if time.perf_counter() - started > 300:
                    raise TimeoutError(f"folded {row} of {count} after 300 s")
                await asyncio.sleep(0.02)
        finally:
            await redis.aclose()


async def raw_upsert(env: Environment, count: int, channels: int) -> float:
    """The baseline: messages/s of plain batched upserts, one connection."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    keys = [(str(100_000 + i % channels), hour) for i in range(count)]
    async with await psycopg.AsyncConnection.connect(libpq(env.database_url)) as conn:
        await conn.execute(_RESET)
        await conn.commit()
        started = time.perf_counter()
        for start in range(0, count, 1_000):
            async with conn.cursor() as cur:
                await cur.executemany(_UPSERT, sorted(keys[start : start + 1_000]))
            await conn.commit()
        return count / (time.perf_counter() - started)


async def _wait_for_balance(env: Environment, n: int, shards: int) -> None:
    """Until every shard is leased and each of the ``n`` workers holds its share."""
    redis = connect_redis(env.redis_url)
    try:
        deadline = time.monotonic() + 60
        keys = [lease_key(env.queue_name, s) for s in range(shards)]
        while True:
            owners = await redis.mget(keys)
            held: Counter[bytes | None] = Counter(owners)
            if None not in held and len(held) == n and max(held.values()) <= -(-shards // n):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"shards not balanced over {n} workers: {held}")
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


@contextlib.contextmanager
def workers(env: Environment, n: int, shards: int = 1) -> Iterator[list[int]]:
    """``n`` worker processes polling the queue; yields their pids."""
    with contextlib.ExitStack() as stack:
        logs = []
        pids = []
        for i in range(n):
            name = f"fold-worker-{i}"
            log_file(name).write_bytes(b"")
            logs.append(log_file(name))
            environ = env.process_env(FOLD_SHARDS=str(shards))
            pids.append(stack.enter_context(process(worker_args(), environ, name)).pid)
        asyncio.run(_wait_for_workers(env, logs))
        if shards > 1:
            asyncio.run(_wait_for_balance(env, n, shards))
        yield pids


def _size(quick: bool) -> int:
    return 8_000 if quick else 60_000


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    count = _size(quick)
    rows: list[Row] = []
    with workers(env, 1) as (pid,):
        asyncio.run(fold_once(env, count // 5, *CASES["spread"]))  # warm-up
        for case, (channels, chatters) in CASES.items():
            asyncio.run(raw_upsert(env, count // 5, channels))  # warm-up
            folded: list[float] = []
            drains: list[float] = []
            raw: list[float] = []
            jobs: list[int] = []
            cpu: list[float] = []
            for _ in range(repetitions):
                before = cpu_seconds(pid)
                seconds, n_jobs = asyncio.run(fold_once(env, count, channels, chatters))
                cpu.append((cpu_seconds(pid) - before) / count * 1e6)
                folded.append(count / seconds)
                drains.append(seconds)
                jobs.append(n_jobs)
                raw.append(asyncio.run(raw_upsert(env, count, channels)))
            baseline = sorted(raw)[len(raw) // 2]
            row = Row(
                "fold",
                f"{case}: messages/s, 1 worker",
                "msg/s",
                folded,
                baseline,
                "raw executemany",
                ">= 5,000 and >= 0.25 x",
                note=(
                    f"{count:,} messages on {channels:,} channel(s), {chatters:,} chatters, "
                    f"~{count / max(1, sorted(jobs)[len(jobs) // 2]):.0f} per job; "
                    f"worker CPU {sorted(cpu)[len(cpu) // 2]:.0f} us per message"
                ),
            )
            row.met = (row.median or 0) >= 5_000 and (row.ratio or 0) >= 0.25
            rows.append(row)
            rows.append(Row("fold", f"{case}: time to drain", "s", drains))
            rows.append(Row("fold", f"{case}: raw upsert baseline", "msg/s", raw))
    return rows


# Shards of the scaling runs: 1, 2 and 4 workers each get an equal share, and the
# receiver's batches (split per shard) stay large enough for arq's cost per job.
SCALING_SHARDS = 4


def run_scaling(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    """1, 2 and 4 worker processes on the spread case, interleaved, over 4 fold shards."""
    count = _size(quick)
    channels, chatters = CASES["spread"]
    counts = (1, 2, 4)
    results: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(repetitions):
        for n in counts:
            with workers(env, n, SCALING_SHARDS) as pids:
                before = sum(cpu_seconds(pid) for pid in pids)
                seconds, _ = asyncio.run(fold_once(env, count, channels, chatters, SCALING_SHARDS))
                cpu[n].append((sum(cpu_seconds(pid) for pid in pids) - before) / count * 1e6)
                results[n].append(count / seconds)
    one = sorted(results[1])[len(results[1]) // 2]
    rows = [
        Row(
            "scaling",
            "fold, 1 worker (spread)",
            "msg/s",
            results[1],
            note=f"{SCALING_SHARDS} shards; workers' CPU {_median(cpu[1]):.0f} us per message",
        )
    ]
    for n in counts[1:]:
        rows.append(
            Row(
                "scaling",
                f"fold, {n} workers (spread)",
                "msg/s",
                results[n],
                one,
                "1 worker",
                note=(
                    f"each worker a separate process holding {SCALING_SHARDS // n} shards; "
                    f"workers' CPU {_median(cpu[n]):.0f} us per message; "
                    "2 cores shared with PostgreSQL"
                ),
            )
        )
    return rows


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0
