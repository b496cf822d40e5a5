"""End to end: a steady stream of signed chat through uvicorn and an arq worker.

The load generator sends on a fixed schedule (an open loop, as Twitch does) and records
when each 2xx arrived; this process polls PostgreSQL every ``POLL_S`` seconds for newly
committed ledger rows, so a message's lag is "first seen committed" minus "2xx
received" (it over-states the true lag by at most one poll interval). The queue length
is sampled at every poll to show whether it stays bounded. The baseline is the same lag
for messages sent one at a time into an idle pipeline: the floor load adds to.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.fold_bench import workers
from bench.services import SECRET, Environment, cpu_seconds, libpq, uvicorn
from bench.stats import Row, percentile
from receiver.queue import connect_redis

POLL_S = 0.1
RATE = 1_000
CHANNELS = 100
_SEEN = """
    SELECT message_id, extract(epoch FROM folded_at) FROM folded_messages
    WHERE folded_at >= to_timestamp(%s)
"""
# Rows are stamped when their transaction began and appear when it commits; looking this
# far behind the newest stamp catches transactions that took up to this long.
_LOOKBACK_S = 3.0


@dataclass
class Observation:
    seen: dict[str, float] = field(default_factory=dict)
    queue_lengths: list[int] = field(default_factory=list)


async def observe(env: Environment, obs: Observation, stop: asyncio.Event) -> None:
    redis = connect_redis(env.redis_url)
    watermark = time.time() - 60
    try:
        async with await psycopg.AsyncConnection.connect(
            libpq(env.database_url), autocommit=True
        ) as conn:
            while not stop.is_set():
                began = time.time()
                cur = await conn.execute(_SEEN, (watermark - _LOOKBACK_S,))
                now = time.time()
                for message_id, stamped in await cur.fetchall():
                    if message_id not in obs.seen:
                        obs.seen[message_id] = now
                    watermark = max(watermark, float(stamped))
                obs.queue_lengths.append(int(await redis.zcard(env.queue_name)))
                await asyncio.sleep(max(0.0, POLL_S - (time.time() - began)))
    finally:
        await redis.aclose()


async def one_run(
    env: Environment, port: int, seconds: float, rate: float, concurrency: int
) -> tuple[list[float], Observation, dict[str, object]]:
    obs = Observation()
    stop = asyncio.Event()
    poller = asyncio.create_task(observe(env, obs, stop))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        config = {
            "secret": SECRET,
            "port": port,
            "seconds": seconds,
            "rate": rate,
            "concurrency": concurrency,
            "count": int(rate * seconds) + 1,
            "channels": CHANNELS,
            "out": out.name,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", json.dumps(config)
        )
        if await proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode or 1, "bench.loadgen")
        result = json.loads(await asyncio.to_thread(Path(out.name).read_text))
    acks: dict[str, float] = dict(result.pop("acks"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not acks.keys() <= obs.seen.keys():  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)  # the poller fills obs.seen; nothing to wait on
    stop.set()
    await poller
    end = time.time()
    # Anything never seen counts with the time we gave up: an honest upper bound.
    lags = [obs.seen.get(mid, end) - acked for mid, acked in acks.items()]
    result["missing"] = len(acks.keys() - obs.seen.keys())
    return lags, obs, result


async def _reset(env: Environment) -> None:
    async with await psycopg.AsyncConnection.connect(
        libpq(env.database_url), autocommit=True
    ) as conn:
        await conn.execute("TRUNCATE chat_messages, chatter_hours, channel_hours, folded_messages")


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    seconds = 4.0 if quick else 60.0
    idle: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    maxes: list[float] = []
    queue_max: list[float] = []
    accepted: list[float] = []
    missing = 0
    web_cpu: list[float] = []
    worker_cpu: list[float] = []
    with (
        uvicorn("receiver.app:from_environment", env.process_env(), "e2e-web") as (port, web),
        workers(env, 1) as (worker,),
    ):
        asyncio.run(one_run(env, port, 1.0, RATE, 64))  # warm-up
        for _ in range(repetitions):
            asyncio.run(_reset(env))
            lags, _, _ = asyncio.run(one_run(env, port, 1.0, 10, 1))
            idle.append(percentile(lags, 50))
            before = cpu_seconds(web), cpu_seconds(worker)
            lags, obs, result = asyncio.run(one_run(env, port, seconds, RATE, 64))
            web_cpu.append((cpu_seconds(web) - before[0]) / seconds)
            worker_cpu.append((cpu_seconds(worker) - before[1]) / seconds)
            p50s.append(percentile(lags, 50))
            p99s.append(percentile(lags, 99))
            maxes.append(max(lags))
            queue_max.append(max(obs.queue_lengths, default=0))
            accepted.append(int(result["accepted"]) / seconds)  # type: ignore[call-overload]
            missing += int(result["missing"])  # type: ignore[call-overload]
    floor = sorted(idle)[len(idle) // 2]
    p99 = Row(
        "e2e",
        f"lag 2xx -> committed, p99 ({RATE:,}/s, {seconds:.0f} s)",
        "s",
        p99s,
        floor,
        "idle p50",
        "< 2 s",
        note=(
            f"{CHANNELS} channels, 1 web + 1 worker; lag = first seen committed by a "
            f"{POLL_S * 1000:.0f} ms poll minus 2xx time; never seen: {missing}; CPU "
            f"(share of one core, median): web {sorted(web_cpu)[1]:.2f}, worker "
            f"{sorted(worker_cpu)[1]:.2f}"
        ),
    )
    p99.met = (p99.median or 99) < 2.0 and missing == 0
    return [
        Row("e2e", "accepted/s offered 1,000/s", "req/s", accepted),
        Row("e2e", "lag p50", "s", p50s, floor, "idle p50"),
        p99,
        Row("e2e", "lag max", "s", maxes, floor, "idle p50"),
        Row("e2e", "idle pipeline lag p50 (baseline)", "s", idle),
        Row(
            "e2e",
            "queue length max (jobs)",
            "jobs",
            queue_max,
            note="sampled every poll; bounded if it stays small and returns to 0",
        ),
    ]
