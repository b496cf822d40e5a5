"""Read queries over a year of realistic hourly data, timed at the caller.

The data is generated inside PostgreSQL (``INSERT … SELECT`` over ``generate_series``,
faster still than COPY because nothing crosses the wire): every channel streams two
hours a day, its chatters per hour drawn from a log-normal distribution (median 6) and a
few of the busiest channels at a fixed large size, each chatter drawn from a pool of
regulars four times that size so that uniques over a window are fewer than the sum of
the hours. Viewer samples every 30 minutes. ``receiver/reads/queries.py`` is called directly
with one connection; the baseline is a primary-key read through the same session.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.chatter_rollup import roll_up
from bench.services import Environment
from bench.stats import Row, percentile
from receiver.reads import queries
from receiver.reads.windows import floor_hour
from schema.db import create_engine, create_sessionmaker

FIRST_ID = 100_000
_GENERATE = [
    """TRUNCATE chat_messages, chatter_hours, channel_hours, folded_messages,
                stream_sessions, viewer_samples, viewer_hours, chatter_sets, chatter_keys""",
    """CREATE TEMP TABLE sizes AS
       SELECT (:first + i)::text AS b, :first + i AS n,
              CASE WHEN i < :big THEN :big_size
                   ELSE greatest(2, least(400, round(6 * exp(1.2 * sqrt(-2 * ln(1 - random()))
                                                     * cos(2 * pi() * random())))))::int
              END AS size
       FROM generate_series(0, :channels - 1) AS i""",
    """INSERT INTO channels (broadcaster_id, login, display_name, connected)
       SELECT b, 'channel_' || b, 'Channel_' || b, true FROM sizes
       ON CONFLICT (broadcaster_id) DO UPDATE SET connected = true""",
    """INSERT INTO stream_sessions (id, broadcaster_id, started_at, ended_at, started_by,
                                    ended_by, title, game_name)
       SELECT b || '-' || d, b, t, t + interval '2 hours', 'eventsub', 'eventsub',
              'stream ' || d, 'Just Chatting'
       FROM sizes, generate_series(1, :days) AS d,
            LATERAL (SELECT date_trunc('day', :now) - d * interval '1 day'
                            + (n % 20) * interval '1 hour' + interval '10 minutes' AS t) AS x""",
    """INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, viewer_count,
                                   interval_seconds)
       SELECT s.broadcaster_id, s.started_at + k * interval '30 minutes', s.id,
              z.size * 3 + k, 1800
       FROM stream_sessions s JOIN sizes z ON z.b = s.broadcaster_id,
            generate_series(0, 3) AS k""",
    """CREATE TEMP TABLE live_hours AS
       SELECT s.broadcaster_id AS b, z.n, z.size,
              date_trunc('hour', s.started_at) + h * interval '1 hour' AS hour,
              CASE WHEN h = 1 THEN z.size ELSE greatest(1, z.size / 3) END AS chatters
       FROM stream_sessions s JOIN sizes z ON z.b = s.broadcaster_id,
            generate_series(0, 2) AS h""",
    """INSERT INTO chatter_hours (broadcaster_id, hour, chatter_id, messages)
       SELECT b, hour,
              (5000000 + n * 10000
               + (j + (extract(epoch FROM hour)::bigint / 3600) * 7) % (4 * size))::text,
              1 + j % 5
       FROM live_hours, generate_series(0, chatters - 1) AS j""",
    """INSERT INTO channel_hours (broadcaster_id, hour, chat_messages, unique_chatters)
       SELECT broadcaster_id, hour, sum(messages), count(*)
       FROM chatter_hours GROUP BY 1, 2""",
    # The filled tables only: a database-wide ANALYZE would also take the shared catalogs'
    # lock until commit, and wait for any other database's run doing the same.
    """ANALYZE channels, stream_sessions, viewer_samples, chatter_hours, channel_hours""",
]


async def generate(
    session: AsyncSession, *, channels: int, days: int, big: int, big_size: int, now: datetime
) -> dict[str, int]:
    params = {
        "first": FIRST_ID,
        "channels": channels,
        "days": days,
        "big": big,
        "big_size": big_size,
        "now": now,
    }
    for statement in _GENERATE:
        needed = {k: v for k, v in params.items() if f":{k}" in statement}
        await session.execute(text(statement), needed)
    # The chatter sets the rollup cron keeps, for every period that is over.
    await roll_up(session, ended_after=now - timedelta(days=days + 40), until=floor_hour(now))
    await session.execute(text("ANALYZE chatter_keys, chatter_sets, span_chat"))
    counts = {}
    for table in (
        "stream_sessions",
        "channel_hours",
        "chatter_hours",
        "viewer_samples",
        "chatter_sets",
    ):
        count = text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        counts[table] = int((await session.execute(count)).scalar_one())
    return counts


Query = Callable[[AsyncSession, str], Awaitable[Any]]


def _queries(now: datetime) -> dict[str, Query]:
    until = now.replace(minute=0, second=0, microsecond=0)
    return {
        "hourly, 30 days": lambda s, b: queries.hourly(
            s, b, until - timedelta(days=30), until, now=now
        ),
        "summary, 90 days, exact uniques": lambda s, b: queries.summary(
            s, b, until - timedelta(days=90), until, now=now
        ),
        "summary, 366 days, exact uniques": lambda s, b: queries.summary(
            s, b, until - timedelta(days=366), until, now=now
        ),
        "sessions page (100), 90 days": lambda s, b: queries.sessions(
            s, b, until - timedelta(days=90), until, now=now
        ),
    }


# Targets at the server for the busiest channel (1,500 chatters an hour), a year of data.
BUSIEST_TARGETS = {
    "summary, 90 days, exact uniques": 20,
    "summary, 366 days, exact uniques": 40,
    "sessions page (100), 90 days": 20,
    "hourly, 30 days": 10,
}


async def _baseline(session: AsyncSession, b: str) -> None:
    await session.execute(
        text("SELECT chat_messages FROM channel_hours WHERE broadcaster_id = :b AND hour = :h"),
        {"b": b, "h": datetime(2020, 1, 1, tzinfo=UTC)},
    )


async def _time(session: AsyncSession, query: Query, targets: list[str]) -> list[float]:
    timings = []
    for b in targets:
        began = time.perf_counter()
        await query(session, b)
        timings.append(time.perf_counter() - began)
    return timings


async def measure(
    env: Environment, quick: bool, repetitions: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    channels, days, big, big_size = (50, 30, 2, 300) if quick else (1_000, 368, 5, 1_500)
    per_rep = 50 if quick else 200
    now = datetime.now(UTC)
    # No idle-in-transaction limit either: the rollup of a generated year holds its
    # transaction while it builds bitmaps, minutes under a loaded machine.
    engine = create_engine(
        env.database_url, pool_size=1, statement_timeout=None, idle_in_transaction_timeout=None
    )
    try:
        sessions = create_sessionmaker(engine)
        began = time.perf_counter()
        async with sessions.begin() as session:
            counts = await generate(
                session, channels=channels, days=days, big=big, big_size=big_size, now=now
            )
        info: dict[str, Any] = {"generate_s": time.perf_counter() - began, **counts}
        ids = [str(FIRST_ID + i) for i in range(channels)]
        named = dict(_queries(now), baseline=_baseline)
        results: dict[str, list[list[float]]] = {name: [] for name in named}
        busiest: dict[str, list[float]] = {name: [] for name in named}
        async with sessions() as session:
            for query in named.values():  # warm-up: caches, plans
                await _time(session, query, ids[: min(20, channels)])
            for _ in range(repetitions):
                targets = [random.choice(ids) for _ in range(per_rep)]
                for name, query in named.items():
                    results[name].append(await _time(session, query, targets))
                    busiest[name] += await _time(session, query, [ids[0]] * 5)
                await session.rollback()
        return info, {"uniform": results, "busiest": busiest}
    finally:
        await engine.dispose()


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    info, timings = asyncio.run(measure(env, quick, repetitions))
    uniform, busiest = timings["uniform"], timings["busiest"]
    base_p50 = sorted(percentile(r, 50) for r in uniform["baseline"])[1] * 1000
    rows = []
    for name in uniform:
        if name == "baseline":
            continue
        p99 = Row(
            "queries",
            f"{name}: p99",
            "ms",
            [percentile(r, 99) * 1000 for r in uniform[name]],
            base_p50,
            "PK read p50",
            "< 50 ms",
        )
        p99.met = (p99.median or 1e9) < 50
        rows.append(
            Row(
                "queries",
                f"{name}: p50",
                "ms",
                [percentile(r, 50) * 1000 for r in uniform[name]],
                base_p50,
                "PK read p50",
            )
        )
        rows.append(p99)
        rows.append(
            Row(
                "queries",
                f"{name}: busiest channel",
                "ms",
                [t * 1000 for t in busiest[name]],
                base_p50,
                "PK read p50",
            )
        )
    for name, target in BUSIEST_TARGETS.items():
        row = Row(
            "queries",
            f"{name}: busiest channel p99",
            "ms",
            [percentile(busiest[name], 99) * 1000],
            base_p50,
            "PK read p50",
            f"< {target} ms",
        )
        row.met = (row.median or 1e9) < target
        rows.append(row)
    rows.append(
        Row(
            "queries",
            "primary-key read (baseline) p50",
            "ms",
            [percentile(r, 50) * 1000 for r in uniform["baseline"]],
            note=(
                f"generated in {info['generate_s']:.0f} s: {info['stream_sessions']:,} sessions, "
                f"{info['channel_hours']:,} channel-hours, {info['chatter_hours']:,} "
                f"chatter-hours, {info['viewer_samples']:,} viewer samples; channels picked "
                "uniformly at random, plus the busiest channel on its own"
            ),
        )
    )
    return rows
