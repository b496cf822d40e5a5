"""``streamfold status``: the pipeline at a glance, each line with a plain verdict.

Everything is read from PostgreSQL and Redis, so it works from any machine that can
reach them, whichever processes are running. A line says ``ok`` or ``look at this``;
the command exits 1 when any line asks for a look, so it also serves as a cron check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.job_runs import outcomes
from aggregator.token_upkeep import UPKEEP_JOB
from schema.db import create_engine, create_sessionmaker
from schema.jobs import failed_batches_key
from schema.settings import Settings
from schema.shards import queue_totals
from streamfold.jobs import TARGET, WINDOW

OK = "ok"
LOOK = "look at this"
# A queued notification older than this means the workers do not keep up (or are down).
QUEUE_AGE_LIMIT = timedelta(minutes=1)
# A database beyond this deserves a look at retention and disk.
DATABASE_SIZE_LIMIT = 100 * 1024**3
LARGEST_TABLES = 5


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    @property
    def verdict(self) -> str:
        return OK if self.ok else LOOK


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    return f"{_duration((now - then).total_seconds())} ago"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


async def oldest_age(redis: Redis, settings: Settings) -> float:
    """Seconds since the oldest queued job became due (0 for an empty queue)."""
    _, due = await queue_totals(redis, settings.queue_name, settings.fold_shards)
    return 0.0 if due is None else max(0.0, time.time() - due / 1000)


async def queue_checks(redis: Redis, settings: Settings, age: float) -> list[Check]:
    depth, _ = await queue_totals(redis, settings.queue_name, settings.fold_shards)
    parked = int(await redis.llen(failed_batches_key(settings.queue_name)))  # type: ignore[misc]
    limit = QUEUE_AGE_LIMIT.total_seconds()
    return [
        Check(
            "queue",
            age < limit,
            f"{depth} job(s) waiting, the oldest due {_duration(age)} ago"
            + ("" if age < limit else f" (more than {_duration(limit)}: are workers running?)"),
        ),
        Check(
            "parked batches",
            parked == 0,
            f"{parked}" + ("" if parked == 0 else " ran out of retries: streamfold requeue-failed"),
        ),
    ]


async def fold_check(session: AsyncSession, queue_age: float, now: datetime) -> Check:
    """An acknowledged notification waits in the queue, then folds within seconds: the
    oldest queued job bounds the lag (the worker's ``streamfold_fold_lag_seconds`` has
    the distribution). The last commit says whether folding happens at all."""
    last = await session.scalar(text("SELECT max(folded_at) FROM folded_messages"))
    limit = QUEUE_AGE_LIMIT.total_seconds()
    return Check(
        "fold lag",
        queue_age < limit,
        f"at most {_duration(queue_age)} plus a fold; last fold committed {_ago(last, now)}",
    )


def _expected_every(settings: Settings) -> dict[str, timedelta]:
    return {
        "reconcile": timedelta(seconds=settings.reconcile_interval_seconds),
        UPKEEP_JOB: timedelta(minutes=5),
    }


async def job_checks(session: AsyncSession, settings: Settings, now: datetime) -> list[Check]:
    rows = await session.execute(
        text("""SELECT DISTINCT ON (job) job, started_at, outcome, error FROM job_runs
                ORDER BY job, started_at DESC, id DESC""")
    )
    last = {r.job: r for r in rows}
    periodic = settings.twitch_client_secret is not None
    checks = []
    every = _expected_every(settings)
    for job in sorted(set(every) | set(last)):
        row = last.get(job)
        if row is None:
            detail = "never ran" + ("" if periodic else " (no Twitch credentials: not scheduled)")
            checks.append(Check(f"job {job}", not periodic, detail))
            continue
        # Three missed periods (a day for jobs this command does not know) is late.
        late = now - row.started_at > 3 * every.get(job, timedelta(hours=8))
        good = row.outcome in ("success", "skipped", "running")
        detail = f"last run {_ago(row.started_at, now)}: {row.outcome}"
        if row.error and not good:
            detail += f" ({row.error.splitlines()[0][:120]})"
        if late:
            detail += ", overdue"
        checks.append(Check(f"job {job}", good and not late, detail))
    totals = await outcomes(session, None, now, WINDOW)
    rate = totals.success_rate
    checks.append(
        Check(
            "job success 24 h",
            rate is None or rate >= TARGET,
            "no finished runs"
            if rate is None
            else f"{rate:.1%} of {totals.success + totals.failed} runs (target {TARGET:.0%})",
        )
    )
    return checks


async def subscription_check(session: AsyncSession) -> Check:
    rows = (
        await session.execute(
            text("SELECT status, count(*) AS n FROM eventsub_subscriptions GROUP BY 1 ORDER BY 1")
        )
    ).all()
    states = {r.status: int(r.n) for r in rows}
    others = sum(n for status, n in states.items() if status != "enabled")
    detail = ", ".join(f"{n} {status}" for status, n in states.items()) or "none"
    return Check("subscriptions", others == 0, detail)


async def gap_check(session: AsyncSession) -> Check:
    open_gaps = int(
        await session.scalar(text("SELECT count(*) FROM chat_gaps WHERE ended_at IS NULL")) or 0
    )
    return Check(
        "chat gaps open",
        open_gaps == 0,
        f"{open_gaps}" + ("" if open_gaps == 0 else ": chat may be missing (streamfold channels)"),
    )


async def dead_letter_check(session: AsyncSession) -> Check:
    day = int(
        await session.scalar(
            text("SELECT count(*) FROM dead_letters WHERE created_at > now() - interval '1 day'")
        )
        or 0
    )
    return Check("dead letters 24 h", day == 0, f"{day} notification(s) could not be folded")


async def size_check(session: AsyncSession) -> Check:
    size = int(await session.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    rows = await session.execute(
        # A partitioned table counts as the sum of its partitions.
        text("""SELECT coalesce(p.relname, c.relname) AS name,
                       sum(pg_total_relation_size(c.oid)) AS bytes
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
                LEFT JOIN pg_class p ON p.oid = i.inhparent
                WHERE c.relkind = 'r' AND n.nspname = current_schema()
                GROUP BY 1 ORDER BY 2 DESC LIMIT :n"""),
        {"n": LARGEST_TABLES},
    )
    largest = ", ".join(f"{r.name} {_bytes(int(r.bytes))}" for r in rows)
    return Check(
        "database size",
        size < DATABASE_SIZE_LIMIT,
        f"{_bytes(size)}; largest: {largest}",
    )


async def gather(settings: Settings, now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(UTC)
    redis = Redis.from_url(settings.redis_url or "", socket_connect_timeout=2, socket_timeout=5)
    engine = create_engine(settings.database_url or "", pool_size=1)
    try:
        age = await oldest_age(redis, settings)
        queue = await queue_checks(redis, settings, age)
        async with create_sessionmaker(engine)() as session:
            return [
                *queue,
                await fold_check(session, age, now),
                *await job_checks(session, settings, now),
                await subscription_check(session),
                await gap_check(session),
                await dead_letter_check(session),
                await size_check(session),
            ]
    finally:
        await engine.dispose()
        await redis.aclose()


def render(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.verdict:<12}  {c.name:<{width}}  {c.detail}" for c in checks)
