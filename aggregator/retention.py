"""Retention: once a day, make the coming partitions and remove what is no longer kept.

Raw rows only: day partitions of ``chat_messages`` older than ``RETENTION_DAYS`` and of
``folded_messages`` older than ``LEDGER_RETENTION_DAYS``, and month partitions of
``viewer_samples`` that ended before the month ``RETENTION_DAYS`` ago began, are dropped
whole (their rows left in the default partition are deleted); ``job_runs`` older than
``RETENTION_DAYS``, expired or ended login sessions and API tokens revoked
``RETENTION_DAYS`` ago are deleted. Aggregates (``channel_hours``, ``chatter_hours``,
chatter sets, sessions, ``viewer_hours``, rollups) are never touched. Every step is its
own short transaction: one partition made or dropped, or at most ``DELETE_BATCH`` rows
deleted, with a lock timeout on the DDL so a drop never holds the fold behind it for
long. A run is one ``job_runs`` row (``recorded_run``); what it did not finish before its
deadline the next run does. ``retention_marks`` records from when each partitioned table
is complete, for the reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from arq.cron import CronJob, cron
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aggregator.context import state
from aggregator.metrics import count_retention_removed
from aggregator.reconcile import RECONCILE_TIMEOUT_SECONDS, RunResult, recorded_run, utcnow
from schema.logs import get_logger
from schema.partitions import (
    LIST_PARTITIONS,
    PARTITIONED_TABLES,
    SCHEMES,
    PartitionStep,
    create_partition,
    day_of_name,
    default_name,
    drop_partition,
    partition_name,
)
from schema.settings import Settings

log = get_logger("aggregator.retention")

JOB = "retention"
DELETE_BATCH = 10_000
# The periodic worker's jobs share one arq timeout (a killed job stays "in progress" for
# the largest of them): retention's deadline is reconciliation's, and what a run leaves
# undone the next one does.
# A drop waits at most this long for its lock (folds queue behind a waiting drop), and
# is tried again a few times, then left to the next run.
LOCK_TIMEOUT = "2s"
LOCK_TRIES = 5
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class Removal:
    """Rows that go: a whole partition (``partition`` set) or a bounded delete's target."""

    table: str
    rows: int
    partition: str | None = None
    day: date | None = None  # the first day of the partition's period


@dataclass(slots=True)
class RetentionPlan:
    now: datetime
    # Per partitioned table, the first day kept: partitions of periods before it go, and
    # so do the default partition's rows before it. It begins a period, so the table
    # holds every row from then on (``retention_marks``).
    cutoffs: dict[str, date]
    create: list[PartitionStep] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What this plan would do, for ``streamfold retention --dry-run``."""
        out = [f"would create partition {partition_name(s.table, s.day)}" for s in self.create]
        for r in self.removals:
            what = f"partition {r.partition}" if r.partition else r.table
            out.append(f"would remove {what}: {r.rows} rows")
        total = sum(r.rows for r in self.removals)
        out.append(f"would remove {total} rows in all")
        return out


def cutoffs(settings: Settings, now: datetime) -> dict[str, date]:
    today = now.astimezone(UTC).date()
    days = {
        "chat_messages": settings.retention_days,
        "folded_messages": settings.ledger_retention_days,
        "viewer_samples": settings.retention_days,
    }
    return {t: SCHEMES[t].start(today - timedelta(days=days[t])) for t in PARTITIONED_TABLES}


def _expired(settings: Settings, now: datetime) -> dict[str, tuple[str, dict[str, Any]]]:
    """The plainly deleted tables: a WHERE clause on ``t`` and its parameters."""
    kept = now - timedelta(days=settings.retention_days)
    return {
        "job_runs": ("t.finished_at < :kept AND t.outcome <> 'running'", {"kept": kept}),
        "login_sessions": ("t.expires_at < :now OR t.ended_at < :now", {"now": now}),
        "api_tokens": ("t.revoked_at < :kept", {"kept": kept}),
    }


async def _partitions(session: AsyncSession, table: str) -> dict[date, str]:
    names = (await session.execute(text(LIST_PARTITIONS), {"table": table})).scalars()
    return {d: n for n in names if (d := day_of_name(table, n)) is not None}


async def plan(session: AsyncSession, settings: Settings, now: datetime) -> RetentionPlan:
    """What a run would do now: the partitions to make, the rows to remove."""
    result = RetentionPlan(now, cutoffs(settings, now))
    today = now.astimezone(UTC).date()
    for table in PARTITIONED_TABLES:
        scheme, existing = SCHEMES[table], await _partitions(session, table)
        cutoff = result.cutoffs[table]
        # The recent past too: a period whose partition was missing has its rows in the
        # default partition, and making the partition moves them.
        first = max(today - scheme.around, cutoff)
        for day in scheme.periods(first, today + scheme.around):
            if day not in existing:
                result.create.append(create_partition(table, day))
        for day, name in sorted(existing.items()):
            if day < cutoff:
                rows = await session.scalar(text(f"SELECT count(*) FROM {name}"))  # noqa: S608
                result.removals.append(Removal(table, int(rows or 0), name, day))
        default = default_name(table)
        old = await session.scalar(
            text(f"SELECT count(*) FROM {default} WHERE {scheme.column} < :cutoff"),  # noqa: S608
            {"cutoff": scheme.key(cutoff)},
        )
        if old:
            result.removals.append(Removal(default, int(old)))
    for table, (where, params) in _expired(settings, now).items():
        rows = await session.scalar(
            text(f"SELECT count(*) FROM {table} t WHERE {where}"),  # noqa: S608
            params,
        )
        if rows:
            result.removals.append(Removal(table, int(rows)))
    return result


_MARK = text("""
    INSERT INTO retention_marks (table_name, removed_before, updated_at)
    VALUES (:table, :before, now())
    ON CONFLICT (table_name) DO UPDATE
        SET removed_before = greatest(retention_marks.removed_before, excluded.removed_before),
            updated_at = now()
""")


async def _ddl(sessions: async_sessionmaker[AsyncSession], statements: tuple[str, ...]) -> bool:
    """Run one DDL step in its own transaction; False if its lock stayed taken."""
    for _ in range(LOCK_TRIES):
        try:
            async with sessions.begin() as session:
                await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                for statement in statements:
                    await session.execute(text(statement))
            return True
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.warning("retention.lock_timeout", statement=statements[0][:80])
    return False


async def _delete(
    sessions: async_sessionmaker[AsyncSession],
    table: str,
    where: str,
    params: dict[str, Any],
) -> int:
    """Delete matching rows ``DELETE_BATCH`` at a time; how many went."""
    removed = 0
    statement = text(
        f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} t"  # noqa: S608
        f" WHERE {where} LIMIT {DELETE_BATCH})"
    )
    while True:
        async with sessions.begin() as session:
            n = (await session.execute(statement, params)).rowcount  # type: ignore[attr-defined]
        removed += int(n)
        if n:
            count_retention_removed(table.removesuffix("_default"), int(n))
        if n < DELETE_BATCH:
            return removed


def _tally(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n


async def apply(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    todo: RetentionPlan,
    counts: dict[str, int],
) -> None:
    """Carry ``todo`` out step by step; ``counts`` tallies what was done, as it goes."""
    for step in todo.create:
        if await _ddl(sessions, step.statements):
            _tally(counts, "partitions_created", 1)
    for removal in todo.removals:
        if removal.partition is None or removal.day is None:
            continue
        if await _ddl(sessions, drop_partition(removal.table, removal.day).statements):
            _tally(counts, "partitions_dropped", 1)
            _tally(counts, removal.table, removal.rows)
            count_retention_removed(removal.table, removal.rows)
        else:
            _tally(counts, "drops_postponed", 1)
    for table in PARTITIONED_TABLES:
        scheme = SCHEMES[table]
        removed = await _delete(
            sessions,
            default_name(table),
            f"t.{scheme.column} < :cutoff",
            {"cutoff": scheme.key(todo.cutoffs[table])},
        )
        _tally(counts, table, removed)
    for table, (where, params) in _expired(settings, todo.now).items():
        _tally(counts, table, await _delete(sessions, table, where, params))
    async with sessions.begin() as session:
        for table in PARTITIONED_TABLES:
            before = datetime.combine(todo.cutoffs[table], time(), tzinfo=UTC)
            await session.execute(_MARK, {"table": table, "before": before})


async def retention_once(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    *,
    clock: Callable[[], datetime] = utcnow,
    dry_run: bool = False,
) -> tuple[RunResult, RetentionPlan]:
    """One run (or with ``dry_run`` only its plan, recorded nowhere)."""
    if dry_run:
        async with sessions() as session:
            return RunResult("success"), await plan(session, settings, clock())
    todo = RetentionPlan(clock(), {})

    async def body(result: RunResult) -> None:
        nonlocal todo
        async with sessions() as session:
            todo = await plan(session, settings, clock())
        await apply(sessions, settings, todo, result.counts)

    result = await recorded_run(JOB, engine, sessions, clock, body)
    return result, todo


async def retention_job(ctx: dict[str, Any]) -> str:
    work = state(ctx)
    result, _ = await retention_once(work.settings, work.engine, work.sessions)
    return result.outcome


def retention_cron() -> CronJob:
    # Once a day, at a quiet minute; a run that could not finish continues the next day,
    # and partitions are made a week ahead, so a missed day costs nothing.
    return cron(
        retention_job,
        name=f"cron:{JOB}",
        hour={3},
        minute={41},
        second={0},
        unique=True,
        run_at_startup=False,
        timeout=RECONCILE_TIMEOUT_SECONDS,
        max_tries=1,
        keep_result=0,
    )
