"""Receiver throughput against its ceiling, both measured in this run.

The ceiling is ``baseline_app`` (verify, 204); the receiver additionally answers only
after Redis acknowledged the job holding the notification. Repetitions alternate
between the two servers so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq.jobs import deserialize_job
from redis.asyncio import Redis

from bench.services import SECRET, Environment, cpu_seconds, uvicorn
from bench.stats import Row, percentile
from schema.jobs import decode_batch

CONCURRENCY = 64


@dataclass(frozen=True)
class Load:
    accepted_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    accepted: int
    refused: int


def load(port: int, pid: int, seconds: float, *, count: int, **config: Any) -> dict[str, Any]:
    """Run the load generator against ``port``; add the server's CPU time to its result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        config.update(secret=SECRET, port=port, seconds=seconds, count=count, out=out.name)
        before = cpu_seconds(pid)
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "bench.loadgen", json.dumps(config)], check=True
        )
        cpu = cpu_seconds(pid) - before
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    result["server_cpu_s"] = cpu
    return result


def summarise(result: dict[str, Any]) -> Load:
    latencies = result["latencies"]
    requests = max(1, result["requests"])
    return Load(
        accepted_per_s=result["accepted"] / result["seconds"],
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        cpu_us_per_request=result["server_cpu_s"] / requests * 1e6,
        accepted=result["accepted"],
        refused=result["requests"] - result["accepted"],
    )


async def queued_deliveries(redis_url: str, queue_name: str) -> tuple[int, int]:
    """(jobs, deliveries) on the queue, then empty it: proof the 2xx were durable."""
    redis = Redis.from_url(redis_url)
    try:
        ids = [i.decode() for i in await redis.zrange(queue_name, 0, -1)]
        deliveries = 0
        for start in range(0, len(ids), 500):
            keys = [f"arq:job:{i}" for i in ids[start : start + 500]]
            for raw in await redis.mget(keys):
                if raw is not None:
                    deliveries += len(decode_batch(deserialize_job(raw).args[0]))
            await redis.delete(*keys)
        await redis.delete(queue_name)
        return len(ids), deliveries
    finally:
        await redis.aclose()


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    import asyncio

    seconds = 1.5 if quick else 5.0
    count = int(14_000 * seconds)
    process_env = env.process_env()
    runs: dict[str, list[Load]] = {"baseline": [], "receiver": []}
    jobs_seen: list[tuple[int, int, int]] = []
    with (
        uvicorn("bench.baseline_app:create", process_env, "baseline-web") as bare,
        uvicorn("receiver.app:from_environment", process_env, "receiver-web") as real,
    ):
        for port, pid in (bare, real):
            load(port, pid, 1.0, count=count, concurrency=CONCURRENCY)  # warm-up
        asyncio.run(queued_deliveries(env.redis_url, env.queue_name))
        for _ in range(repetitions):
            for name, (port, pid) in (("baseline", bare), ("receiver", real)):
                result = summarise(load(port, pid, seconds, count=count, concurrency=CONCURRENCY))
                runs[name].append(result)
                if name == "receiver":
                    jobs, deliveries = asyncio.run(queued_deliveries(env.redis_url, env.queue_name))
                    jobs_seen.append((result.accepted, jobs, deliveries))
    lost = [(a, d) for a, _, d in jobs_seen if d < a]
    per_job = sum(d for _, _, d in jobs_seen) / max(1, sum(j for _, j, _ in jobs_seen))
    base = runs["baseline"]
    real_runs = runs["receiver"]

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    throughput = Row(
        "receiver",
        "accepted/s, signed chat, c=64",
        "req/s",
        [r.accepted_per_s for r in real_runs],
        med([r.accepted_per_s for r in base]),
        "bare verify+204",
        ">= 0.60 x baseline",
        note=(
            f"2xx only after Redis acknowledged; {per_job:.0f} deliveries per job on "
            f"average; every 2xx found in Redis: {'yes' if not lost else f'NO {lost}'}; "
            f"non-2xx: {sum(r.refused for r in real_runs)}"
        ),
    )
    ratio = throughput.ratio or 0.0
    throughput.met = ratio >= 0.6 and not lost
    rows = [
        throughput,
        Row(
            "receiver",
            "baseline accepted/s",
            "req/s",
            [r.accepted_per_s for r in base],
        ),
    ]
    for label, attr, unit in (
        ("p50 latency", "p50_ms", "ms"),
        ("p99 latency", "p99_ms", "ms"),
        ("server CPU per request", "cpu_us_per_request", "us"),
    ):
        rows.append(
            Row(
                "receiver",
                label,
                unit,
                [getattr(r, attr) for r in real_runs],
                med([getattr(r, attr) for r in base]),
                "bare",
            )
        )
    return rows
